"""A real ``relay serve`` proxying to a real upstream over the relay's own client
(``relay.transport.AiohttpSender``): large bodies stream both ways (proven by handshakes a
buffering proxy could not complete), with a length and chunked; small hits keep one upstream
connection, their bodies sent with the request's head.

The handshakes: the upstream stops after the first MiB of an answer until the browser has
it, and the browser stops after the first MiB of an upload until the upstream has it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from . import rawhttp
from .conftest import MakeRelay
from .relayproc import RelayProcess

MIB = 1024 * 1024
BIG = 24 * MIB
BLOCK = bytes(range(256)) * 4096  # 1 MiB
WAIT = 20.0


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    gate = threading.Event()  # set by the test once the browser has the first MiB
    got_first = threading.Event()  # set once the first MiB of an upload has arrived
    connections: list[int] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def setup(self) -> None:
        type(self).connections.append(1)
        super().setup()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/octet-stream")
        self.send_header("content-length", str(BIG))
        self.end_headers()
        block = bytes(range(256)) * 256  # 64 KiB
        for sent in range(0, BIG, len(block)):
            if sent == MIB and not type(self).gate.wait(WAIT):
                return  # the browser never got the first MiB: the relay is buffering
            self.wfile.write(block)

    def do_POST(self) -> None:
        if self.path == "/hit":
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(204)
            self.end_headers()
            return
        digest, size = hashlib.sha256(), 0
        for chunk in self._body():
            digest.update(chunk)
            size += len(chunk)
            if size >= MIB:
                type(self).got_first.set()
        body = json.dumps({"size": size, "sha256": digest.hexdigest(),
                           "chunked": "content-length" not in self.headers}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> Iterator[bytes]:
        if "content-length" in self.headers:
            left = int(self.headers["content-length"])
            while left and (chunk := self.rfile.read(min(65536, left))):
                left -= len(chunk)
                yield chunk
            return
        while size := int(self.rfile.readline().split(b";")[0], 16):  # chunked
            yield self.rfile.read(size)
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b""):  # trailers
            pass


@pytest.fixture
def relay(relays: MakeRelay) -> Iterator[RelayProcess]:
    _Upstream.gate.clear()
    _Upstream.got_first.clear()
    _Upstream.connections.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        yield relays(proxy={"up": {"path": "/up/", "upstream": f"http://127.0.0.1:{port}/",
                                   "max_body": 64 * MIB, "timeout": "10s"}})
    finally:
        server.shutdown()
        server.server_close()


def test_a_large_answer_streams(relay: RelayProcess) -> None:
    digest, size = hashlib.sha256(), 0
    with httpx.Client(timeout=WAIT, trust_env=False) as http, \
            http.stream("GET", relay.url("/up/big")) as r:
        assert r.status_code == 200 and r.headers["content-length"] == str(BIG)
        for chunk in r.iter_raw():
            digest.update(chunk)
            size += len(chunk)
            if size >= MIB:
                _Upstream.gate.set()  # only now may the upstream send the rest
    expected = hashlib.sha256((bytes(range(256)) * 256) * (BIG // 65536)).hexdigest()
    assert size == BIG and digest.hexdigest() == expected


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_large_upload_streams(relay: RelayProcess, chunked: bool) -> None:
    total = 16

    def body() -> Iterator[bytes]:
        yield BLOCK
        # A buffering relay would wait for the whole body before the upstream saw any of it.
        assert _Upstream.got_first.wait(WAIT), "the upstream did not get the first MiB in time"
        for _ in range(total - 1):
            yield BLOCK

    headers = {} if chunked else {"content-length": str(total * MIB)}
    with httpx.Client(timeout=WAIT, trust_env=False) as http:
        r = http.post(relay.url("/up/upload"), content=body(), headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"size": total * MIB, "sha256": hashlib.sha256(BLOCK * total).hexdigest(),
                        "chunked": chunked}


def test_hits_keep_one_upstream_connection(relay: RelayProcess) -> None:
    """A hit's small body goes out with the request's head, so aiohttp never has a body
    still to write when the upstream's 204 ends the exchange (it would close the
    connection, and the next hit would open another). Each hit is written in one piece on
    one keep-alive connection, as a browser (or the benchmark's client) sends it."""
    body = b"en=page_view&_et=5123"
    hit = rawhttp.request_head("POST", "/t/up/hit", [
        ("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]) + body
    with rawhttp.connect(relay.port) as sock:
        for _ in range(30):
            sock.sendall(hit)
            answer = rawhttp.read_answer(sock)
            assert answer.status == 204, answer.raw[:300]
    assert len(_Upstream.connections) == 1
