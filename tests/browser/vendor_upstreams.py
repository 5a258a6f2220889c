"""Stand-in upstreams for the proxy's browser tests, on 127.0.0.1: a "CDN" that serves the
vendor libraries from tests/js/node_modules (the relay proxies and caches them, as a site
would), and recording stand-ins for PostHog's and Mixpanel's hit endpoints that answer as
those vendors do. A stand-in decodes what it receives the way the vendor does (gzip by its
magic bytes, base64 or JSON in ``data=``), so a test reads the events as the vendor would."""

from __future__ import annotations

import base64
import gzip
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

NODE_MODULES = Path(__file__).resolve().parents[1] / "js" / "node_modules"
LIBRARIES = {
    "/posthog.js": NODE_MODULES / "posthog-js" / "dist" / "array.full.js",
    "/mixpanel.js": NODE_MODULES / "mixpanel-browser" / "dist" / "mixpanel.umd.js",
}


@dataclass(frozen=True, slots=True)
class Hit:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lowercase names
    body: bytes  # as received

    def data(self) -> Any:
        """The JSON the vendor reads out of the body (or the ``data`` query parameter)."""
        body = self.body
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        if not body and "data" in self.query:
            body = ("data=" + self.query["data"][0]).encode()
        if body.startswith(b"data="):
            value = parse_qs(body.decode())["data"][0]
            return json.loads(value if value[:1] in "[{" else base64.b64decode(value))
        return json.loads(body)

    @property
    def events(self) -> list[dict[str, Any]]:
        data = self.data()
        if isinstance(data, dict) and "batch" in data:
            return list(data["batch"])
        return data if isinstance(data, list) else [data]


class _Server:
    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def received(self) -> list[Hit]:
        with self._lock:
            return list(self.hits)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def serve(self, handler: BaseHTTPRequestHandler, hit: Hit) -> tuple[int, str, bytes]:
        with self._lock:
            self.hits.append(hit)
        return 200, "application/json", self.answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else b""
                path, _, query = self.path.partition("?")
                hit = Hit(self.command, path, parse_qs(query, keep_blank_values=True),
                          {k.lower(): v for k, v in self.headers.items()}, body)
                status, ctype, out = server.serve(self, hit)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(out)

            do_GET = do_POST = do_HEAD = _handle

        return Handler


class Cdn(_Server):
    """Serves the vendor libraries (``LIBRARIES``)."""

    def __init__(self) -> None:
        super().__init__(b"")

    def serve(self, handler: BaseHTTPRequestHandler, hit: Hit) -> tuple[int, str, bytes]:
        file = LIBRARIES.get(hit.path)
        if file is None:
            return 404, "text/plain", b"not here"
        return 200, "application/javascript", file.read_bytes()


def posthog() -> _Server:
    """PostHog's capture endpoint answers 200 {"status": 1}."""
    return _Server(b'{"status": 1}')


def mixpanel() -> _Server:
    """Mixpanel's /track and /engage answer {"status": 1, "error": null} with verbose=1."""
    return _Server(b'{"status": 1, "error": null}')
