"""A real ``relay serve`` answering a ``cache:`` route: the fill through the full path, then
hits from memory (``ProxyRouter.from_memory``, before the relay's router) with the same
headers, gzip or plain, 304, HEAD, one ``Date`` and one ``Server``, and the hits counted."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from .conftest import MakeRelay

SCRIPT = b"/* vendor */ window.vendor = function (x) { return x + 1; };\n" * 50


class _Vendor(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fetches = 0

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        type(self).fetches += 1
        gz = "gzip" in self.headers.get("Accept-Encoding", "")
        body = gzip.compress(SCRIPT) if gz else SCRIPT
        self.send_response(200)
        self.send_header("Content-Type", "application/javascript")
        self.send_header("Cache-Control", "public, max-age=900")
        self.send_header("Set-Cookie", "vendor=1")
        if gz:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def upstream() -> Iterator[int]:
    _Vendor.fetches = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Vendor)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_cached_script_hits(relays: MakeRelay, upstream: int) -> None:
    relay = relays(proxy={"vendor": {"path": "/lib/vendor.js", "cache": "10m",
                                     "upstream": f"http://127.0.0.1:{upstream}/vendor.js"}})
    gz = {"accept-encoding": "gzip"}
    with httpx.Client(timeout=10, trust_env=False) as http:
        url = relay.url("/lib/vendor.js")
        fill, hit = http.get(url, headers=gz), http.get(url, headers=gz)
        for r in (fill, hit):
            assert r.status_code == 200 and r.content == SCRIPT  # httpx decompresses
            names = [k.decode().lower() for k, _ in r.headers.raw]
            assert sorted(names) == sorted(["cache-control", "etag", "vary", "content-type",
                                            "content-length", "content-encoding", "date",
                                            "server"])
            assert r.headers["server"] == "relay" and r.headers["vary"] == "accept-encoding"
            assert r.headers["cache-control"] == "public, max-age=600"
            assert r.headers["content-encoding"] == "gzip"
        assert {k: v for k, v in hit.headers.items() if k != "date"} == {
            k: v for k, v in fill.headers.items() if k != "date"}
        plain = http.get(url, headers={"accept-encoding": "identity"})
        assert plain.content == SCRIPT and "content-encoding" not in plain.headers
        assert plain.headers["etag"] != hit.headers["etag"]
        assert plain.headers["content-length"] == str(len(SCRIPT))
        held = http.get(url, headers={**gz, "if-none-match": hit.headers["etag"]})
        assert held.status_code == 304 and held.content == b""
        assert held.headers["etag"] == hit.headers["etag"] and "content-length" not in held.headers
        head = http.head(url, headers={"accept-encoding": "identity"})
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(SCRIPT))
        assert _Vendor.fetches == 1
        metrics = http.get(relay.admin_url("/metrics")).text
    assert 'relay_proxy_requests_total{route="vendor",status="200"} 4.0' in metrics
    assert 'relay_proxy_requests_total{route="vendor",status="304"} 1.0' in metrics
