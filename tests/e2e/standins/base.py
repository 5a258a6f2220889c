"""``StandIn``: the shared part of every stand-in vendor server.

A subclass implements ``check(request) -> Reply``: it validates the request the way the real
vendor does, records what it found wrong with ``request.problem(...)`` (a wire-format bug in
the relay: the test asserts there is none) or refuses it as the vendor would (``Reply`` with
the vendor's status and error body), and returns the vendor's answer. ``accepted`` collects
what the subclass says the vendor took (its ``Request.accept(item)`` calls), so a test reads
the events as the vendor stored them. ``fail_next(n, reply)`` makes the next ``n`` requests
get ``reply`` instead (a 429, a 5xx), for retry tests.

    vendor = MetaStandIn(pixel_id="123", access_token="...")
    ... destination settings: {endpoint: vendor.endpoint, ...}
    wait_until(lambda: vendor.accepted, ...); assert vendor.problems == []
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True, slots=True)
class Reply:
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)

    @staticmethod
    def json(status: int, body: Any, *headers: tuple[str, str]) -> Reply:
        return Reply(status, json.dumps(body).encode(),
                     (("Content-Type", "application/json"), *headers))


@dataclass
class Request:
    """One request as the vendor saw it, and what the stand-in made of it."""

    at: float
    method: str
    path: str  # without the query
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names (the last of repeated headers)
    body: bytes  # decoded (gzip undone when Content-Encoding says so)
    problems: list[str] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)
    reply: Reply | None = None

    def json(self) -> Any:
        """The body as JSON, or None (with a problem recorded) when it is not."""
        try:
            return json.loads(self.body)
        except ValueError as exc:
            self.problem(f"body is not JSON: {exc}")
            return None

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def accept(self, item: Any) -> None:
        """The vendor took ``item`` (an event in its own format)."""
        self.items.append(item)


class StandIn:
    name = "vendor"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self._failures: list[Reply] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name=f"stand-in {self.name}")
        self._thread.start()

    # -- what subclasses implement --------------------------------------------------------

    def check(self, request: Request) -> Reply:
        raise NotImplementedError

    # -- what tests read ------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The base URL a destination's ``settings.endpoint`` takes."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def accepted(self) -> list[Any]:
        with self._lock:
            return [i for r in self.requests for i in r.items]

    @property
    def problems(self) -> list[str]:
        with self._lock:
            return [f"{r.method} {r.path}: {p}" for r in self.requests for p in r.problems]

    def fail_next(self, n: int, reply: Reply) -> None:
        """Answer the next ``n`` requests with ``reply``, without looking at them."""
        with self._lock:
            self._failures.extend([reply] * n)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- the server -----------------------------------------------------------------------

    def _serve(self, request: Request) -> Reply:
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            reply = failure
        else:
            try:
                reply = self.check(request)
            except Exception as exc:  # a bug in the stand-in: loud, never a silent pass
                request.problem(f"stand-in error: {type(exc).__name__}: {exc}")
                reply = Reply.json(500, {"error": "stand-in error"})
            if failure is None and not (200 <= reply.status < 300):
                request.items.clear()  # refused: the vendor kept nothing
        request.reply = reply
        with self._lock:
            self.requests.append(request)
        return reply


def _handler(standin: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            if headers.get("content-encoding", "").lower() == "gzip":
                raw = gzip.decompress(raw)
            url = urlsplit(self.path)
            request = Request(time.time(), self.command, url.path,
                              parse_qs(url.query, keep_blank_values=True), headers, raw)
            reply = standin._serve(request)
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

    return Handler
