"""A test site on one origin with the relay: pages at ``/pages/...``, the relay at ``/t/...``.

The relay serves only its prefix, so a site has to put it on its own origin. Here that is a
small forwarding server, as a CDN would be: ``/t/*`` goes to a real ``relay serve`` process
unchanged (method, path, query, body, and every end-to-end header, so ``Host``, ``Cookie``,
``Sec-GPC`` and ``Accept-Encoding`` reach the relay as the browser sent them; its answers,
``Set-Cookie`` included, come back the same way); everything else is a test page. Page and
snippet share an origin, so the correlation cookie is first-party and ``sendBeacon``/``fetch``
are same-origin requests, exactly as on a real site.

Every ``POST /t/e`` is recorded (``posts``): what the browser sent, before the relay; every
request forwarded to the relay is in ``forwarded``. ``files`` serves other static files (a
vendor's script bundle, its settings) at their exact paths.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from playwright.sync_api import Page

from relay.snippet import install_block

from ..e2e.relayproc import RelayProcess

# Hop-by-hop headers (RFC 9110 7.6.1) are the forwarder's own; the rest passes through.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
                        "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"})
FORWARD_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class Post:
    """One ``POST /t/e`` as the browser sent it, and the relay's status."""

    headers: dict[str, str]  # lower-cased names
    body: bytes
    status: int

    @property
    def events(self) -> list[dict[str, Any]]:
        data = json.loads(self.body)
        if isinstance(data, dict) and "batch" in data:
            return list(data["batch"])
        return data if isinstance(data, list) else [data]


def page_html(body: str = "", *, head: str = "", script_attrs: str = "",
              title: str = "Relay test page", prefix: str = "/t") -> str:
    """A page with the README's install block; ``head`` runs before the snippet loads."""
    block = install_block(prefix)
    if script_attrs:
        block = block.replace("<script async ", f"<script async {script_attrs} ")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{title}</title>"
            f"{head}{block}</head><body>{body}</body></html>")


class Site:
    def __init__(self, relay: RelayProcess) -> None:
        self.relay = relay
        self.pages: dict[str, str] = {}
        self.files: dict[str, tuple[str, bytes]] = {}  # path -> (content type, body)
        self._lock = threading.Lock()
        self._posts: list[Post] = []
        self._forwarded: list[tuple[str, str, Post]] = []
        self.errors: list[str] = []
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name="test site")
        self._thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, name: str, html: str) -> str:
        """Serve ``html`` at ``/pages/<name>``; returns its URL."""
        self.pages[name] = html
        return f"{self.origin}/pages/{name}"

    @property
    def posts(self) -> list[Post]:
        with self._lock:
            return list(self._posts)

    @property
    def forwarded(self) -> list[tuple[str, str, Post]]:
        """Every request passed to the relay: (method, path with query, what and status)."""
        with self._lock:
            return list(self._forwarded)

    def sent(self) -> list[dict[str, Any]]:
        """Every event the browser posted to the relay, in order."""
        return [e for p in self.posts for e in p.events]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- called on the server's threads ---------------------------------------------------

    def _record(self, post: Post) -> None:
        with self._lock:
            self._posts.append(post)

    def _record_forwarded(self, method: str, target: str, post: Post) -> None:
        with self._lock:
            self._forwarded.append((method, target, post))

    def forward(self, method: str, target: str, headers: list[tuple[str, str]],
                body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.relay.port, timeout=FORWARD_TIMEOUT)
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
            out = [(k, v) for k, v in resp.getheaders()
                   if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"]
            return resp.status, out, data
        finally:
            conn.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        timeout = 30

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path.split("?", 1)[0]
            try:
                if path.startswith("/t/"):
                    status, headers, out = site.forward(self.command, self.path,
                                                        list(self.headers.items()), body)
                    lowered = {k.lower(): v for k, v in self.headers.items()}
                    if self.command == "POST" and path == "/t/e":
                        site._record(Post(lowered, body, status))
                    site._record_forwarded(self.command, self.path, Post(lowered, body, status))
                    self._send(status, headers, out)
                elif path in site.files:
                    content_type, data = site.files[path]
                    self._send(200, [("Content-Type", content_type),
                                     ("Cache-Control", "no-store")], data)
                elif path.startswith("/pages/") and path[7:] in site.pages:
                    html = site.pages[path[7:]].encode()
                    self._send(200, [("Content-Type", "text/html; charset=utf-8"),
                                     ("Cache-Control", "no-store")], html)
                else:
                    self._send(404, [("Content-Type", "text/plain")], b"not found")
            except Exception as exc:  # the relay down or hung: the test should say so
                site.errors.append(f"{self.command} {self.path}: {exc!r}")
                print(f"test site: {self.command} {self.path}: {exc!r}", file=sys.stderr)
                self._send(502, [("Content-Type", "text/plain")], repr(exc).encode())

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_OPTIONS = _handle

    return Handler


def ready(page: Page) -> None:
    """Wait until the snippet has run on ``page`` (``window.relay.loaded``)."""
    page.wait_for_function("() => window.relay && window.relay.loaded === true")


def of(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == name]
