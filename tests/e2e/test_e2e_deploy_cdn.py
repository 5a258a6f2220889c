"""deploy/cdn's nginx and Caddy recipes, for real: Debian's nginx and caddy on the recipes
(rendered with the test's ports) in front of two relay replicas sharing Redis state, as
deploy/compose.yaml runs them.

What the recipes promise, each checked through each server: the client address the relay uses is
the one the proxy saw (a client's own X-Forwarded-For is not believed), the correlation cookie's
Set-Cookie comes back and is honoured on the next request (by either replica), a proxied
vendor's cookies pass both ways, r.js keeps its caching headers (and its 304), and a proxied
vendor answer is streamed: the first chunk arrives before the upstream sends the last,
and so is an upload: its first part reaches the vendor before the client makes the rest.
(nginx also streams that with ``proxy_buffering on`` when the client reads as fast as it
arrives; the check fails when the answer is held back, e.g. by the relay, or by a proxy
that waits for the whole body.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from .conftest import REDIS_URL
from .fronts import Caddy, Front, Nginx
from .relayproc import RelayProcess
from .rulesdir import make_rules

CLIENT_ADDRESS = "127.0.0.5"  # the test client's source address: not the 127.0.0.1 proxies use
SPOOFED = "198.51.100.7"  # what a client writes into X-Forwarded-For itself
WAIT = 30.0  # the most the slow upstream waits for the test before sending its last chunk


@dataclass
class Seen:
    forwarded_for: list[str | None] = field(default_factory=list)
    cookies: list[str | None] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    last_sent: bool = False
    waited_out: bool = False
    first_part: threading.Event = field(default_factory=threading.Event)
    uploaded: bytes = b""


class _Vendor(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _VendorServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        seen = self.server.seen
        if self.path == "/slow":
            self._slow(seen)
            return
        seen.forwarded_for.append(self.headers.get("X-Forwarded-For"))
        seen.cookies.append(self.headers.get("Cookie"))
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Set-Cookie", "vid=v-42; Max-Age=600; Path=/")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        """A streamed upload: the body read chunk by chunk as it arrives, ``first_part``
        set as soon as the first chunk is in."""
        seen = self.server.seen
        body = b""
        length = self.headers.get("Content-Length")
        while length is None:  # chunked: as it comes
            size = int(self.rfile.readline().split(b";")[0], 16)
            data = self.rfile.read(size)
            self.rfile.readline()
            if size == 0:
                break
            body += data
            seen.first_part.set()
        if length is not None:  # a body someone held back until it was whole
            body = self.rfile.read(int(length))
        seen.uploaded = body
        answer = str(len(body)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def _slow(self, seen: Seen) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._chunk(b"first chunk\n")
        if not seen.release.wait(WAIT):
            seen.waited_out = True
        seen.last_sent = True
        self._chunk(b"last chunk\n")
        self._chunk(b"")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


class _VendorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Vendor)
        self.seen = Seen()


@dataclass
class Backends:
    replicas: list[RelayProcess]
    vendor: _VendorServer


@dataclass
class Setup(Backends):
    proxy: Front  # nginx or Caddy


FRONTS: dict[str, type[Nginx] | type[Caddy]] = {"nginx": Nginx, "caddy": Caddy}


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    """The vendor stand-in and two replicas on Redis state, started once for the module
    (each test puts a new nginx or Caddy in front and gets a fresh record of the vendor)."""
    import redis

    store = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        store.ping()
    except redis.RedisError as exc:
        store.close()
        pytest.fail(f"Redis is required for this test at {REDIS_URL}: {exc!r}", pytrace=False)
    store.flushdb()
    vendor = _VendorServer()
    threading.Thread(target=vendor.serve_forever, daemon=True).start()
    upstream = f"http://127.0.0.1:{vendor.server_address[1]}/"
    sections = {
        # what both recipes say the rules must say
        "relay": {"client_ip": {"header": "X-Forwarded-For", "trusted_hops": 1}},
        "proxy": {"vendor": {"path": "/v/", "upstream": upstream, "forward_ip": "keep",
                             "cookies": ["vid"], "timeout": "60s"}},
    }
    base = tmp_path_factory.mktemp("fronts")
    replicas = [RelayProcess(base / name, make_rules(base / name / "rules", **sections),
                             env={"RELAY_STATE": REDIS_URL}, name=name)
                for name in ("relay-1", "relay-2")]
    try:
        for relay in replicas:
            relay.start()
        yield Backends(replicas, vendor)
    finally:
        for relay in replicas:
            relay.close()
        vendor.shutdown()
        vendor.server_close()
        store.flushdb()
        store.close()


@pytest.fixture(params=sorted(FRONTS))
def front(request: pytest.FixtureRequest, backends: Backends) -> Iterator[Setup]:
    backends.vendor.seen = Seen()
    server = FRONTS[request.param]([r.port for r in backends.replicas])
    try:
        yield Setup(backends.replicas, backends.vendor, server.start())
    finally:
        server.close()


def _client(**kwargs: object) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=CLIENT_ADDRESS)
    return httpx.Client(transport=transport, timeout=60, trust_env=False, **kwargs)  # type: ignore[arg-type]


def _proxied(relay: RelayProcess) -> float:
    """How many requests this replica proxied on the ``vendor`` route (its /metrics)."""
    text = httpx.get(relay.admin_url("/metrics"), timeout=10, trust_env=False).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("relay_proxy_requests_total{") and 'route="vendor"' in line)


def test_the_relay_uses_the_address_the_proxy_saw_never_the_clients_header(front: Setup) -> None:
    before = [_proxied(r) for r in front.replicas]
    with _client() as http:
        for _ in range(2):  # round robin: one to each replica
            r = http.get(front.proxy.url("/v/ip"), headers={"X-Forwarded-For": SPOOFED})
            assert r.status_code == 200, r.text
    assert front.vendor.seen.forwarded_for == [CLIENT_ADDRESS, CLIENT_ADDRESS]
    after = [_proxied(r) for r in front.replicas]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1.0, 1.0]
    # The same request straight to a replica: the relay believes the rightmost entry, so
    # without the proxy setting the real address the client's own header would win.
    with _client() as http:
        r = http.get(front.replicas[0].url("/v/ip"), headers={"X-Forwarded-For": SPOOFED})
        assert r.status_code == 200
    assert front.vendor.seen.forwarded_for[-1] == SPOOFED


def test_the_correlation_cookie_comes_back_through_the_proxy(front: Setup) -> None:
    ids = f"evt_{front.proxy.name}"
    event = {"event": "page_view", "event_id": f"{ids}_1",
             "context": {"page": {"url": "http://127.0.0.1/"}}}
    with _client() as http:
        first = http.post(front.proxy.url("/e"), json=event)
        assert first.status_code == 202, first.text
        assert first.headers["cache-control"] == "no-store"
        issued = first.cookies["_rc"]
        assert "HttpOnly" in first.headers["set-cookie"]
        # The next answer comes from the other replica (round robin): it keeps the cookie
        # it was sent, as one signed with the shared secret.
        second = http.post(front.proxy.url("/e"), json={**event, "event_id": f"{ids}_2"})
        assert second.status_code == 202, second.text
        assert second.cookies["_rc"] == issued
    with _client() as fresh:  # control: no cookie sent, a new one issued
        third = fresh.post(front.proxy.url("/e"), json={**event, "event_id": f"{ids}_3"})
        assert third.status_code == 202 and third.cookies["_rc"] != issued


def test_a_proxied_vendors_cookie_passes_both_ways(front: Setup) -> None:
    with _client() as http:
        first = http.get(front.proxy.url("/v/c"))
        assert first.status_code == 200
        assert "vid=v-42" in first.headers["set-cookie"]
        assert "Path=/t/v/" in first.headers["set-cookie"]
        second = http.get(front.proxy.url("/v/c"))
        assert second.status_code == 200
    assert front.vendor.seen.cookies == [None, "vid=v-42"]


def test_rjs_keeps_its_caching_headers_and_its_304(front: Setup) -> None:
    with _client() as http:
        direct = http.get(front.replicas[0].url("/r.js"), headers={"Accept-Encoding": "gzip"})
        through = http.get(front.proxy.url("/r.js"), headers={"Accept-Encoding": "gzip"})
        assert through.status_code == 200 and direct.status_code == 200
        for name in ("cache-control", "etag", "vary", "content-encoding", "content-type"):
            assert through.headers.get(name) == direct.headers.get(name), name
        assert through.headers["cache-control"] == "public, max-age=300"
        assert through.content == direct.content
        again = http.get(front.proxy.url("/r.js"),
                         headers={"If-None-Match": through.headers["etag"]})
        assert again.status_code == 304


def test_a_proxied_answer_is_streamed_through_the_proxy(front: Setup) -> None:
    seen = front.vendor.seen
    with _client() as http, http.stream("GET", front.proxy.url("/v/slow")) as r:
        assert r.status_code == 200
        chunks = r.iter_bytes()
        got = b""
        for piece in chunks:
            got += piece
            if b"first chunk\n" in got:
                break
        first_before_last = not seen.last_sent
        seen.release.set()
        got += b"".join(chunks)
    assert first_before_last, "the first chunk only arrived once the upstream sent the last"
    assert not seen.waited_out
    assert got == b"first chunk\nlast chunk\n"


def test_a_request_body_is_streamed_through_the_proxy(front: Setup) -> None:
    seen = front.vendor.seen
    arrived_first: list[bool] = []

    def body() -> Iterator[bytes]:
        yield b"part one;"
        arrived_first.append(seen.first_part.wait(WAIT))  # before the rest is even made
        yield b"part two"

    with _client() as http:
        r = http.post(front.proxy.url("/v/upload"), content=body())
    assert r.status_code == 200, r.text
    assert arrived_first == [True], "the first part only reached the vendor with the rest"
    assert seen.uploaded == b"part one;part two" and r.text == str(len(seen.uploaded))
