"""A stand-in vendor: a threaded HTTP server on 127.0.0.1 that records every request,
checks the relay's webhook wire format, and answers as the test tells it to.

The wire format checked (``relay.destinations.webhook``)::

    POST <path>   Content-Type: application/json   User-Agent: relay/<version>
    one event per request:   body = the event object, Idempotency-Key: <event_id>
    batch: true:             body = {"batch": [event, ...]}
    with a secret:           X-Relay-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256("t." + body)>

Anything else is recorded in ``problems`` (a test asserts it stays empty) and answered 400
(401 for a bad signature), so a wire-format bug cannot pass as a delivery.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SIGNATURE_TOLERANCE = 300.0
HANG_LIMIT = 60.0  # a hanging answer is released after this long at the latest


@dataclass(frozen=True, slots=True)
class Answer:
    status: int = 200
    delay: float = 0.0
    body: bytes = b'{"ok":true}'
    hang: bool = False  # wait until released (``StandInVendor.release``) or HANG_LIMIT
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Received:
    at: float  # time.monotonic() when the request was read
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    json: Any
    events: list[dict[str, Any]]
    status: int  # what the stand-in answered
    problems: tuple[str, ...]
    peer_port: int = 0  # the sender's port: which relay process sent it (tests/e2e/procs.py)
    answered_at: float = 0.0  # time.monotonic() when the answer was decided

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


Plan = Callable[[int, float], Answer]  # (request number from 0, seconds since the plan was set)


@dataclass
class _Shared:
    lock: threading.Lock = field(default_factory=threading.Lock)
    received: list[Received] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of every request
    problems: list[str] = field(default_factory=list)
    plan: Plan = field(default_factory=lambda: (lambda n, t: Answer()))
    plan_started: float = field(default_factory=time.monotonic)
    plan_count: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    in_flight: collections.Counter[int] = field(default_factory=collections.Counter)
    most_in_flight: int = 0  # the most requests read and not yet answered at one time


class StandInVendor:
    """One vendor endpoint. ``url`` is what a webhook destination's ``settings.url`` takes."""

    def __init__(self, *, secret: str | None = None, batch: bool = False,
                 path: str = "/hook", name: str = "vendor", port: int = 0) -> None:
        self.secret = secret
        self.batch = batch
        self.path = path
        self.name = name
        self._s = _Shared()
        handler = _handler_class(self)
        # ``port``: a fixed one, for a vendor that starts where a relay already sends
        self._server = _Server(("127.0.0.1", port), handler, self._s.problems)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"stand-in {name}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def close(self) -> None:
        self._s.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- how to answer --------------------------------------------------------------------

    def set_plan(self, plan: Plan) -> None:
        with self._s.lock:
            self._s.plan = plan
            self._s.plan_started = time.monotonic()
            self._s.plan_count = 0
            self._s.release.clear()

    def respond(self, status: int = 200, *, delay: float = 0.0, body: bytes = b'{"ok":true}',
                headers: Iterable[tuple[str, str]] = ()) -> None:
        """Always answer ``status`` (after ``delay`` seconds)."""
        answer = Answer(status, delay, body, headers=tuple(headers))
        self.set_plan(lambda n, t: answer)

    def respond_sequence(self, statuses: list[int], *, body: bytes = b'{"ok":false}') -> None:
        """Answer the statuses in turn; the last one repeats."""
        answers = [Answer(s, body=body if s >= 300 else b'{"ok":true}') for s in statuses]
        self.set_plan(lambda n, t: answers[min(n, len(answers) - 1)])

    def fail_for(self, seconds: float, status: int = 500) -> None:
        """Answer ``status`` for ``seconds`` from now, then 200."""
        failing = Answer(status, body=b'{"error":"stand-in failing on purpose"}')
        self.set_plan(lambda n, t: failing if t < seconds else Answer())

    def hang(self) -> None:
        """Never answer (until ``release`` or ``respond``): the relay's timeout must fire."""
        self.set_plan(lambda n, t: Answer(hang=True))

    def release(self) -> None:
        self._s.release.set()

    # -- what it saw ----------------------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        with self._s.lock:
            return list(self._s.received)

    @property
    def problems(self) -> list[str]:
        with self._s.lock:
            return list(self._s.problems)

    def delivered(self) -> collections.Counter[str]:
        """event_id -> how many times it arrived in a request the stand-in answered 2xx."""
        counts: collections.Counter[str] = collections.Counter()
        for r in self.received:
            if r.ok:
                counts.update(str(e.get("event_id")) for e in r.events)
        return counts

    def delivered_events(self) -> list[dict[str, Any]]:
        return [e for r in self.received if r.ok for e in r.events]

    def most_in_flight(self) -> int:
        """The most requests it held unanswered at one time (overlapping claims)."""
        with self._s.lock:
            return self._s.most_in_flight

    def in_flight_ports(self) -> set[int]:
        """The sender ports of the requests read and not yet answered."""
        with self._s.lock:
            return {port for port, n in self._s.in_flight.items() if n}

    def attempts(self) -> int:
        """Requests that arrived, answered or not (a hanging one is counted at once)."""
        with self._s.lock:
            return len(self._s.arrivals)

    # -- the request handling (called on the server's threads) ----------------------------

    def _next_answer(self) -> Answer:
        with self._s.lock:
            n = self._s.plan_count
            self._s.plan_count += 1
            return self._s.plan(n, time.monotonic() - self._s.plan_started)

    def _check(self, method: str, path: str, headers: dict[str, str], body: bytes,
               ) -> tuple[Any, list[dict[str, Any]], list[str], bool]:
        """(parsed JSON, events, wire-format problems, signature ok)."""
        problems: list[str] = []
        if method != "POST":
            problems.append(f"method {method}, expected POST")
        if path != self.path:
            problems.append(f"path {path}, expected {self.path}")
        ctype = headers.get("content-type", "").split(";")[0].strip()
        if ctype != "application/json":
            problems.append(f"content-type '{ctype}', expected application/json")
        if not headers.get("user-agent", "").startswith("relay/"):
            problems.append(f"user-agent '{headers.get('user-agent')}', expected relay/<version>")
        signed = True
        if self.secret is not None:
            signed = verify_signature(self.secret, headers.get("x-relay-signature"), body)
            if not signed:
                given = headers.get("x-relay-signature")
                problems.append(f"bad or missing X-Relay-Signature: {given}")
        try:
            data = json.loads(body)
        except ValueError as exc:
            problems.append(f"body is not JSON: {exc}")
            return None, [], problems, signed
        events: list[dict[str, Any]] = []
        if self.batch:
            batch = data.get("batch") if isinstance(data, dict) else None
            if not isinstance(batch, list) or not batch or set(data) != {"batch"}:
                problems.append("batch: expected a body {\"batch\": [event, ...]}")
            else:
                events = [e for e in batch if isinstance(e, dict)]
                if len(events) != len(batch):
                    problems.append("batch: every item must be an event object")
        elif isinstance(data, dict):
            events = [data]
            if headers.get("idempotency-key") != data.get("event_id"):
                problems.append(f"Idempotency-Key {headers.get('idempotency-key')!r} is not "
                                f"the event_id {data.get('event_id')!r}")
        else:
            problems.append("expected one event object as the body")
        for e in events:
            if not isinstance(e.get("event_id"), str) or not isinstance(e.get("event"), str):
                problems.append(f"event without a string event/event_id: {str(e)[:200]}")
        return data, events, problems, signed

    def _record(self, received: Received) -> None:
        with self._s.lock:
            self._s.received.append(received)
            self._s.problems.extend(f"{self.name}: {p}" for p in received.problems)


def verify_signature(secret: str, header: str | None, body: bytes,
                     tolerance: float = SIGNATURE_TOLERANCE) -> bool:
    """The receiving side of ``X-Relay-Signature`` (any ``v1`` may match)."""
    if not header:
        return False
    parts = [p.strip().partition("=") for p in header.split(",")]
    ts = [v for k, _, v in parts if k == "t"]
    sigs = [v for k, _, v in parts if k == "v1"]
    if len(ts) != 1 or not sigs or not ts[0].isdigit():
        return False
    if abs(time.time() - int(ts[0])) > tolerance:
        return False
    mac = hmac.new(secret.encode(), ts[0].encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(mac, s) for s in sigs)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # keep-alive connections from the relay must not block close()

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 problems: list[str]) -> None:
        super().__init__(address, handler)
        self.problems = problems

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return  # a relay that hung up mid-request (its timeout, or SIGKILL) is expected
        self.problems.append(f"stand-in handler crashed: {exc!r}")


def _handler_class(vendor: StandInVendor) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else header and body writes meet a 40 ms delayed ACK
        timeout = 30  # an idle keep-alive connection's thread ends after this

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            path = self.path.split("?", 1)[0]
            at = time.monotonic()
            with vendor._s.lock:
                vendor._s.arrivals.append(at)
                vendor._s.in_flight[self.client_address[1]] += 1
                vendor._s.most_in_flight = max(vendor._s.most_in_flight,
                                               vendor._s.in_flight.total())
            data, events, problems, signed = vendor._check(self.command, path, headers, body)
            answer = vendor._next_answer()
            if answer.hang:
                vendor._s.release.wait(HANG_LIMIT)
            elif answer.delay:
                time.sleep(answer.delay)
            status, out = answer.status, answer.body
            if problems:
                status = 401 if not signed else 400
                out = json.dumps({"problems": problems}).encode()
            vendor._record(Received(at, self.command, path, headers, body, data, events, status,
                                    tuple(problems), self.client_address[1], time.monotonic()))
            with vendor._s.lock:
                vendor._s.in_flight[self.client_address[1]] -= 1
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(out)
            except OSError:  # the relay gave up waiting (its timeout) and closed the connection
                self.close_connection = True

        def do_POST(self) -> None:
            self._handle()

        def do_GET(self) -> None:
            self._handle()

        def do_PUT(self) -> None:
            self._handle()

    return Handler
