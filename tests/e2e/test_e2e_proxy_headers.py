"""A real ``relay serve`` in front of a stand-in upstream that sends its own
``Date`` and ``Server``: every answer carries exactly one of each."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from .conftest import MakeRelay


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = b"hello"
        self.send_response(200)  # adds Server: BaseHTTP/... and Date
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_one_date_and_one_server_header(relays: MakeRelay, upstream: int) -> None:
    relay = relays(proxy={"up": {"path": "/up", "upstream": f"http://127.0.0.1:{upstream}/x"}})
    with httpx.Client(timeout=10, trust_env=False) as http:
        proxied = http.get(relay.url("/up"))
        assert proxied.status_code == 200 and proxied.text == "hello"
        assert proxied.headers.get_list("date") != []
        assert len(proxied.headers.get_list("date")) == 1
        (server,) = proxied.headers.get_list("server")
        assert server.startswith("BaseHTTP/")  # the upstream's, passed on as a proxy does
        for own in (http.get(relay.url("/healthz")), http.get(relay.admin_url("/metrics"))):
            assert len(own.headers.get_list("date")) == 1
            assert own.headers.get_list("server") == ["relay"]
