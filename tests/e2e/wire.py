"""HTTP helpers for end-to-end tests: events, signed webhook posts, checked clients,
Prometheus text, waiting, and a background reader for the admin's SSE debug stream."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .relayproc import BACKEND_SECRET, RelayProcess

T = TypeVar("T")
CHROME_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/126.0.0.0 Safari/537.36")
US = {"CF-IPCountry": "US"}  # the shipped purposes grant analytics by default outside EU/UK

_seq = itertools.count()


def new_event_id(prefix: str = "e2e") -> str:
    return f"{prefix}-{next(_seq)}-{uuid.uuid4().hex[:12]}"


def page_view(event_id: str | None = None, **extra: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {"event": "page_view", "event_id": event_id or new_event_id(),
                          "context": {"page": {"url": "https://shop.example/p?utm_source=e2e"}}}
    ev.update(extra)
    return ev


def purchase(event_id: str | None = None, value: float = 10.0, **extra: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {"event": "purchase", "event_id": event_id or new_event_id("ord"),
                          "context": {"country": "US"},
                          "properties": {"order_id": "O-" + uuid.uuid4().hex[:8], "value": value,
                                         "currency": "USD"}}
    ev.update(extra)
    return ev


def _no_traceback(response: httpx.Response) -> None:
    response.read()
    assert b"Traceback" not in response.content, (
        f"{response.request.method} {response.request.url} answered a traceback:\n"
        f"{response.text[:2000]}")


def client(timeout: float = 10.0) -> httpx.Client:
    """A loopback client that fails the test if any answer carries a Python traceback."""
    return httpx.Client(timeout=timeout, trust_env=False,
                        event_hooks={"response": [_no_traceback]})


def signature(secret: str, body: bytes, t: int | None = None) -> str:
    t = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


_signed: set[tuple[bytes, int]] = set()  # (body, t) pairs post_backend has signed


def fresh_t(body: bytes) -> int:
    """A timestamp under which ``body`` was not signed yet: now, or a second or more before.
    A backend signs every attempt afresh, and the relay refuses a signed request it already
    received (a replay): a test that sends the same body twice within a second is a
    backend's retry, not a replay."""
    t = int(time.time())
    while (body, t) in _signed:
        t -= 1
    _signed.add((body, t))
    return t


def post_backend(c: httpx.Client, relay: RelayProcess, payload: Any, *,
                 secret: str = BACKEND_SECRET, t: int | None = None,
                 source: str = "backend") -> httpx.Response:
    """A signed webhook post, as the site's backend sends it (each one signed afresh)."""
    body = json.dumps(payload).encode()
    t = fresh_t(body) if t is None else t
    return c.post(relay.url(f"/hook/{source}"), content=body,
                  headers={"Content-Type": "application/json",
                           "X-Relay-Signature": signature(secret, body, t)})


def post_browser(c: httpx.Client, relay: RelayProcess, payload: Any,
                 headers: dict[str, str] | None = None) -> httpx.Response:
    return c.post(relay.url("/e"), json=payload, headers={**US, **(headers or {})})


# -- Prometheus ---------------------------------------------------------------------------

def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (0 if none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += float(sample.value)
    return total


def metric_names(text: str) -> set[str]:
    """Every family and sample name in a Prometheus text page."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(s.name for s in family.samples)
    for line in text.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            names.add(line.split()[2])
    return names


def scrape(c: httpx.Client, relay: RelayProcess) -> str:
    r = c.get(relay.admin_url("/metrics"))
    assert r.status_code == 200, r.text
    return r.text


# -- waiting ------------------------------------------------------------------------------

def wait_until(check: Callable[[], T | None], timeout: float, what: str,
               interval: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what} "
                                 f"(last: {value!r})")
        time.sleep(interval)


def archived(relay: RelayProcess) -> list[dict[str, Any]]:
    """What the shipped ``archive`` destination wrote (var/events.jsonl), parsed."""
    path = relay.archive_path
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- the admin debug stream ---------------------------------------------------------------

class DebugStream:
    """Reads ``GET /debug/stream`` (server-sent events) on a thread until closed.

    A raw HTTP/1.0 socket, so the body is close-delimited (no chunk framing) and the reader
    can stop at once between events (the stream only says something every 15 s when idle).
    """

    def __init__(self, relay: RelayProcess, query: str = "",
                 cookies: dict[str, str] | None = None, limit: float = 60.0) -> None:
        self.port = relay.admin_port
        self.target = "/debug/stream" + (f"?{query}" if query else "")
        self.cookies = cookies or {}
        self.limit = limit
        self.raw = b""
        self.connected = threading.Event()
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="debug-stream", daemon=True)

    def __enter__(self) -> DebugStream:
        self._thread.start()
        if not self.connected.wait(10) or self.error is not None:
            raise AssertionError(f"GET {self.target} did not start streaming: {self.error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        request = (f"GET {self.target} HTTP/1.0\r\nHost: 127.0.0.1:{self.port}\r\n"
                   f"Accept: text/event-stream\r\n")
        if self.cookies:
            request += "Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()) + "\r\n"
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                sock.sendall((request + "\r\n").encode())
                sock.settimeout(0.1)
                while not self._stop.is_set() and time.monotonic() < deadline:
                    try:
                        data = sock.recv(65536)
                    except TimeoutError:
                        continue
                    if not data:
                        break
                    self.raw += data
                    if b"\r\n\r\n" in self.raw and b": connected" in self.raw:
                        self.connected.set()
        except BaseException as exc:  # reported by the test through ``error``
            self.error = exc
        finally:
            self.connected.set()

    @property
    def head(self) -> str:
        return self.raw.partition(b"\r\n\r\n")[0].decode("latin-1")

    @property
    def text(self) -> str:
        return self.raw.partition(b"\r\n\r\n")[2].decode(errors="replace")

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        """Every server-sent event so far: (its name, ``message`` when unnamed; its data).
        A block still arriving (no blank line after it yet) is left for the next call."""
        out = []
        for block in self.text.replace("\r\n", "\n").split("\n\n")[:-1]:
            name, data = "message", None
            for line in block.split("\n"):
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
            if data is not None:
                out.append((name, data))
        return out

    def entries(self) -> list[dict[str, Any]]:
        """The feed's entries (the unnamed events; the first, ``viewer``, is not one)."""
        return [data for name, data in self.events() if name == "message"]


