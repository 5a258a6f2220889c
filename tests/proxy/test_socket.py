"""The proxy over real sockets: the relay under hypercorn, a stand-in vendor and an "evil"
server on 127.0.0.1 (nothing beyond loopback).

Streaming is proven by handshakes a buffering proxy could not complete: the vendor stops
after the first MiB of a response until the browser has received it, and the browser stops
after the first MiB of an upload until the vendor has received it.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette

from relay.app import create_app
from relay.proxy.state import ProxyState
from relay.runtime import Runtime
from tests.conftest import BACKEND_SECRET, SHIPPED_RULES, TEST_SECRET
from tests.e2e.relayproc import free_port

MIB = 1024 * 1024
BIG = 24 * MIB
GATE_AFTER = 1 * MIB
WAIT = 10.0
GZ_BODY = gzip.compress(b"window.vendorLoaded = true;\n" * 2000)


class Vendor(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    gate = threading.Event()  # set by the test once the browser has the first MiB
    got_first = threading.Event()  # set once the first MiB of an upload has arrived
    hits: list[str] = []
    connections: list[int] = []  # one entry per connection the relay opened
    evil_port = 0

    def log_message(self, format: str, *args: object) -> None:
        pass

    def setup(self) -> None:
        type(self).connections.append(1)
        super().setup()

    def do_GET(self) -> None:
        type(self).hits.append(self.path)
        try:
            if self.path == "/big":
                self._big()
            elif self.path == "/endless":
                self._endless()
            elif self.path == "/gz":
                self._send(200, GZ_BODY, {"content-encoding": "gzip",
                                          "content-type": "application/javascript"})
            elif self.path == "/redirect":
                self._send(302, b"", {"location": f"http://127.0.0.1:{self.evil_port}/stolen"})
            else:
                self._send(200, b"vendor", {"content-type": "text/plain"})
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self) -> None:
        type(self).hits.append(self.path)
        if self.path == "/hit":
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(204)
            self.end_headers()
            return
        length = int(self.headers["content-length"])
        digest, size = hashlib.sha256(), 0
        while size < length:
            chunk = self.rfile.read(min(64 * 1024, length - size))
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
            if size >= GATE_AFTER:
                type(self).got_first.set()
        body = json.dumps({"size": size, "sha256": digest.hexdigest()}).encode()
        self._send(200, body, {"content-type": "application/json"})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _big(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/octet-stream")
        self.send_header("content-length", str(BIG))
        self.end_headers()
        block = bytes(range(256)) * 256  # 64 KiB
        sent = 0
        while sent < BIG:
            if sent == GATE_AFTER and not type(self).gate.wait(WAIT):
                return  # the browser never got the first MiB: the proxy is buffering
            self.wfile.write(block)
            sent += len(block)

    def _endless(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/octet-stream")
        self.end_headers()  # no length: HTTP/1.1 close-delimited
        self.close_connection = True
        for _ in range(2000):
            self.wfile.write(b"x" * 65536)
            time.sleep(0.005)


class Evil(BaseHTTPRequestHandler):
    hits: list[str] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        type(self).hits.append(self.path)
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()


@dataclass
class Servers:
    relay: str  # base URL of the relay's prefix
    relay_port: int
    vendor_port: int
    runtime: Runtime
    proxy: ProxyState


def _serve_http(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    evil = _serve_http(Evil)
    Vendor.evil_port = evil.server_address[1]
    vendor = _serve_http(Vendor)
    vendor_port = vendor.server_address[1]
    tmp = tmp_path_factory.mktemp("proxy-socket")
    rules = tmp / "rules"
    rules.mkdir()
    for f in SHIPPED_RULES.glob("*.yaml"):
        (rules / f.name).write_text(f.read_text())
    (rules / "proxy.yaml").write_text(
        f"proxy:\n  up: {{path: /up/, upstream: 'http://127.0.0.1:{vendor_port}/', "
        f"max_body: {64 * MIB}, timeout: 5s}}\n")
    env = {"RELAY_SECRET": TEST_SECRET, "BACKEND_SIGNING_SECRET": BACKEND_SECRET,
           "RELAY_SPOOL": f"sqlite:///{tmp}/spool.db"}
    # The relay's own client (relay.transport: the proxy's AiohttpSender), which reads no
    # proxy from the environment: nothing between the relay and 127.0.0.1.
    relay_app = create_app(rules, var_dir=tmp / "var", env=env)
    outer = Starlette(lifespan=relay_app.router.lifespan_context)
    outer.mount("/t", relay_app)
    port = free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def run() -> None:
        loop.run_until_complete(serve(outer, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/t/healthz", trust_env=False).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    yield Servers(
        f"http://127.0.0.1:{port}/t", port, vendor_port, relay_app.state.relay,
        relay_app.state.proxy,
    )
    loop.call_soon_threadsafe(stop.set)
    thread.join(WAIT)
    loop.close()
    vendor.shutdown()
    evil.shutdown()
    vendor.server_close()
    evil.server_close()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    Vendor.gate.clear()
    Vendor.got_first.clear()
    Evil.hits.clear()
    with httpx.Client(trust_env=False, timeout=WAIT) as c:
        yield c
    assert Evil.hits == [], "the proxy reached a host other than the route's"


def raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_large_response_streams(servers: Servers, client: httpx.Client) -> None:
    digest, size = hashlib.sha256(), 0
    with client.stream("GET", f"{servers.relay}/up/big") as r:
        assert r.status_code == 200 and r.headers["content-length"] == str(BIG)
        for chunk in r.iter_raw():
            digest.update(chunk)
            size += len(chunk)
            if size >= GATE_AFTER:
                Vendor.gate.set()  # only now may the vendor send the rest
    expected = hashlib.sha256((bytes(range(256)) * 256) * (BIG // 65536)).hexdigest()
    assert size == BIG and digest.hexdigest() == expected


def test_large_request_streams(servers: Servers, client: httpx.Client) -> None:
    block = bytes(range(256)) * 4096  # 1 MiB
    total = 16

    def body() -> Iterator[bytes]:
        yield block
        # A buffering proxy would wait for the whole body before the vendor saw any of it.
        assert Vendor.got_first.wait(WAIT), "the vendor did not get the first MiB in time"
        for _ in range(total - 1):
            yield block

    r = client.post(f"{servers.relay}/up/upload", content=body(),
                    headers={"content-length": str(total * MIB)})
    assert r.status_code == 200
    assert r.json() == {"size": total * MIB, "sha256": hashlib.sha256(block * total).hexdigest()}


def test_gzip_passes_through(servers: Servers, client: httpx.Client) -> None:
    with client.stream("GET", f"{servers.relay}/up/gz", headers={"accept-encoding": "gzip"}) as r:
        raw = b"".join(r.iter_raw())
    assert r.headers["content-encoding"] == "gzip" and raw == GZ_BODY


def test_redirect_passed_to_the_browser(servers: Servers, client: httpx.Client) -> None:
    r = client.get(f"{servers.relay}/up/redirect")
    assert r.status_code == 302
    assert r.headers["location"] == f"http://127.0.0.1:{Vendor.evil_port}/stolen"


@pytest.mark.parametrize("target", [
    "http://evil.example/",
    "http://evil.example/t/up/x",
    "http://127.0.0.1:{evil}/t/up/x",
    "https://127.0.0.1:{evil}/",
    "//127.0.0.1:{evil}/t/up/x",
])
def test_absolute_form_targets(servers: Servers, client: httpx.Client, target: str) -> None:
    target = target.format(evil=Vendor.evil_port)
    host = target.split("//", 1)[1].split("/", 1)[0]
    before = list(Vendor.hits)
    answer = raw_exchange(servers.relay_port, (
        f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").encode())
    status = int(answer.split(b" ", 2)[1]) if answer else None
    assert status is None or status in (200, 400, 404)
    # whatever the server made of it, only the route's upstream could have been reached
    assert Evil.hits == []
    assert all(p.startswith("/x") for p in Vendor.hits[len(before):])


@pytest.mark.parametrize("path", [
    "/t/up/../../stolen", "/t/up/%2e%2e/%2e%2e/stolen", "/t/up/%2f%2f127.0.0.1/stolen",
    "/t/up/\\\\127.0.0.1\\stolen", "/t/up//127.0.0.1/stolen",
])
def test_path_tricks_over_the_wire(servers: Servers, client: httpx.Client, path: str) -> None:
    before = len(Vendor.hits)
    answer = raw_exchange(servers.relay_port, (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").encode())
    assert answer.split(b" ", 2)[1] in (b"400", b"404")
    assert len(Vendor.hits) == before


def test_browser_leaving_mid_stream_frees_the_slot(servers: Servers, client: httpx.Client) -> None:
    with client.stream("GET", f"{servers.relay}/up/endless") as r:
        received = 0
        for chunk in r.iter_raw():
            received += len(chunk)
            if received > MIB:
                break
    deadline = time.monotonic() + WAIT
    while servers.proxy.inflight.get("up") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert servers.proxy.inflight.get("up") == 0


def test_hits_keep_their_upstream_connection(servers: Servers, client: httpx.Client) -> None:
    """A small body goes with the request's head and the 204 ends the exchange: aiohttp never
    has a body still to write when the answer is complete (it would close the connection)."""
    before = len(Vendor.connections)
    for _ in range(20):
        r = client.post(f"{servers.relay}/up/hit", content=b"en=page_view&_et=5123")
        assert r.status_code == 204
    assert len(Vendor.connections) - before <= 1


def test_a_small_body_is_read_before_the_upstream_is_asked(servers: Servers,
                                                          client: httpx.Client) -> None:
    before = len(Vendor.hits)
    with socket.create_connection(("127.0.0.1", servers.relay_port), timeout=WAIT) as s:
        s.sendall(b"POST /t/up/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n"
                  b"Connection: close\r\n\r\nhello")
        time.sleep(0.3)  # time enough for a streaming proxy to have sent the head
        assert len(Vendor.hits) == before, "the upstream was asked before the body was in"
        s.sendall(b"world")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {
        "size": 10, "sha256": hashlib.sha256(b"helloworld").hexdigest()}
