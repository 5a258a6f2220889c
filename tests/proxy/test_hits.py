"""Cache hits answered from the raw request (``ProxyRouter.from_memory``, what ``relay serve``
asks before its router): the exact headers and bodies of each variant, 304 and HEAD, and
every case it must leave to the full path (a miss, an expired or unpinned copy, a consent
gate, a refused path, another method)."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Mount

from relay import app as relay_app
from relay.proxy import scripts
from relay.proxy.cache import Script, sri_digest
from relay.proxy.router import ProxyRouter
from tests.proxy.support import Proxied, Upstream, metric, open_proxied, write_rules

GOOD = b"/* vendor v1 */ window.v = 1;\n" * 40
TYPE = b"text/javascript; charset=utf-8"
RULES = f"""
proxy:
  gtag: {{path: /lib/gtag.js, upstream: "https://www.googletagmanager.com/gtag/js", cache: 1h}}
  pinned: {{path: /lib/pinned.js, upstream: "https://cdn.example/lib.js", cache: 5m,
            pin: "{sri_digest(GOOD)}"}}
  consented: {{path: /lib/consented.js, upstream: "https://cdn.example/c.js", cache: 1h,
               purpose: analytics}}
  lib: {{path: /libs/, upstream: "https://cdn.example/libs/", cache: 10m}}
"""
GTAG = "https://www.googletagmanager.com/gtag/js"


async def vendor(request: httpx.Request) -> httpx.Response:
    headers = {"content-type": TYPE.decode(), "set-cookie": "v=1", "x-vendor": "1"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        return httpx.Response(200, content=gzip.compress(GOOD),
                              headers={**headers, "content-encoding": "gzip"})
    return httpx.Response(200, content=GOOD, headers=headers)


@pytest.fixture
async def hits(rules_dir: Path, env: dict[str, str], tmp_path: Path) -> AsyncIterator[Proxied]:
    async with open_proxied(rules_dir, env, tmp_path, Upstream(vendor), RULES) as p:
        yield p


def router(p: Proxied) -> ProxyRouter:
    (mount,) = p.app.routes
    assert isinstance(mount, Mount)
    return next(r for r in mount.routes if isinstance(r, ProxyRouter))


def scope(path: str, method: str = "GET", query: bytes = b"",
          headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": "/t" + path,
            "raw_path": b"/t" + path.encode(), "root_path": "", "query_string": query,
            "headers": headers or [],
            "http_version": "1.1", "scheme": "http", "server": ("shop.example", 80),
            "client": ("203.0.113.77", 50000)}


async def from_memory(p: Proxied, request: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The messages ``from_memory`` sends, or None when it leaves the request to the app."""
    sent: list[dict[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    answered = await router(p).from_memory(request, "/t", send)
    assert answered == bool(sent)
    return sent if answered else None


def etag(gz: bool) -> bytes:
    tag = hashlib.sha256(sri_digest(GOOD).encode()).hexdigest()[:20]
    return f'"{tag}-gz"'.encode() if gz else f'"{tag}"'.encode()


def head(gz: bool, max_age: int = 3600) -> list[tuple[bytes, bytes]]:
    return [(b"cache-control", f"public, max-age={max_age}".encode()), (b"etag", etag(gz)),
            (b"vary", b"accept-encoding")]


def full(gz: bool, max_age: int = 3600) -> list[tuple[bytes, bytes]]:
    body = gzip.compress(GOOD, 6, mtime=0) if gz else GOOD
    out = [*head(gz, max_age), (b"content-type", TYPE),
           (b"content-length", str(len(body)).encode())]
    return [*out, (b"content-encoding", b"gzip")] if gz else out


GZIP = [(b"accept-encoding", b"gzip, deflate, br")]


async def test_a_hit_has_exactly_the_headers_of_its_variant(hits: Proxied) -> None:
    first = await hits.client.get("/t/lib/gtag.js", headers={"accept-encoding": "gzip"})
    assert first.status_code == 200  # the fill, through the full path
    gz = await from_memory(hits, scope("/lib/gtag.js", headers=GZIP))
    assert gz == [{"type": "http.response.start", "status": 200, "headers": full(True)},
                  {"type": "http.response.body", "body": gzip.compress(GOOD, 6, mtime=0)}]
    plain = await from_memory(hits, scope("/lib/gtag.js", headers=[(b"accept-encoding", b"br")]))
    assert plain is not None and plain[0]["headers"] == full(False) and plain[1]["body"] == GOOD
    bare = await from_memory(hits, scope("/lib/gtag.js"))  # no Accept-Encoding: plain
    assert bare is not None and bare[0]["headers"] == full(False)
    # the first of a repeated header counts, as with Starlette's Headers.get
    twice = [(b"accept-encoding", b"identity"), (b"accept-encoding", b"gzip")]
    first_wins = await from_memory(hits, scope("/lib/gtag.js", headers=twice))
    assert first_wins is not None and first_wins[0]["headers"] == full(False)
    headed = await from_memory(hits, scope("/lib/gtag.js", "HEAD", headers=GZIP))
    assert headed is not None and headed[0]["headers"] == full(True)
    assert headed[1]["body"] == b""
    assert len(hits.upstream.requests) == 1
    assert 'relay_proxy_requests_total{route="gtag",status="200"} 6.0' in metric(
        hits.runtime, "relay_proxy_requests_total")


async def test_a_hit_the_browser_holds_is_a_304(hits: Proxied) -> None:
    await hits.client.get("/t/lib/gtag.js")
    for given, accept, variant in ((etag(True), b"gzip", True), (b"W/" + etag(False), b"", False),
                                   (b'"other", ' + etag(False), b"gzip", True), (b"*", b"", False)):
        sent = await from_memory(hits, scope("/lib/gtag.js", headers=[
            (b"accept-encoding", accept), (b"if-none-match", given)]))
        assert sent == [{"type": "http.response.start", "status": 304, "headers": head(variant)},
                        {"type": "http.response.body", "body": b""}], given
    other = await from_memory(hits, scope("/lib/gtag.js", headers=[(b"if-none-match", b'"x"')]))
    assert other is not None and other[0]["status"] == 200
    assert 'relay_proxy_requests_total{route="gtag",status="304"} 4.0' in metric(
        hits.runtime, "relay_proxy_requests_total")


async def test_the_answer_is_a_copy_per_request(hits: Proxied) -> None:
    # A middleware of an embedding app may edit the header list in place.
    await hits.client.get("/t/lib/gtag.js")
    sent = await from_memory(hits, scope("/lib/gtag.js"))
    assert sent is not None
    sent[0]["headers"].append((b"x-edited", b"1"))
    again = await from_memory(hits, scope("/lib/gtag.js"))
    assert again is not None and again[0]["headers"] == full(False)


async def test_what_is_left_to_the_full_path(hits: Proxied) -> None:
    c = hits.client
    assert await from_memory(hits, scope("/lib/gtag.js")) is None  # nothing in memory yet
    await c.get("/t/lib/gtag.js?id=G-1")
    assert await from_memory(hits, scope("/lib/gtag.js", query=b"id=G-1")) is not None
    assert await from_memory(hits, scope("/lib/gtag.js", query=b"id=G-2")) is None  # a miss
    # click ids are not part of the key (the full path drops them before the fill)
    assert await from_memory(hits, scope("/lib/gtag.js", query=b"id=G-1&gclid=abc")) is not None
    assert await from_memory(hits, scope("/lib/gtag.js", "POST", query=b"id=G-1")) is None
    assert await from_memory(hits, scope("/nothing.js")) is None
    # a refused raw path is answered 400 by the full path, never from memory
    await c.get("/t/libs/a.js")
    assert await from_memory(hits, scope("/libs/a.js")) is not None
    refused = scope("/libs/a.js")
    refused["raw_path"] = b"/t/libs/%2e%2e/a.js"
    assert await from_memory(hits, refused) is None
    assert len(hits.upstream.requests) == 2


async def test_an_expired_copy_is_fetched_again(hits: Proxied) -> None:
    await hits.client.get("/t/lib/gtag.js")
    script = hits.proxy.cache.get(GTAG)
    assert script is not None
    script.expires = 0.0
    assert await from_memory(hits, scope("/lib/gtag.js")) is None
    r = await hits.client.get("/t/lib/gtag.js", headers={"accept-encoding": "identity"})
    assert r.status_code == 200 and r.content == GOOD and len(hits.upstream.requests) == 2
    assert await from_memory(hits, scope("/lib/gtag.js")) is not None  # the new copy


async def test_a_copy_that_is_not_the_pinned_script_is_never_served(hits: Proxied) -> None:
    key = "https://cdn.example/lib.js"
    hits.proxy.cache.put(key, Script.build(b"evil()", "text/javascript", 1e12))
    assert await from_memory(hits, scope("/lib/pinned.js")) is None
    r = await hits.client.get("/t/lib/pinned.js", headers={"accept-encoding": "identity"})
    assert r.status_code == 200 and r.content == GOOD  # fetched again, and it matches
    sent = await from_memory(hits, scope("/lib/pinned.js"))
    assert sent is not None and sent[1]["body"] == GOOD


async def test_a_route_with_a_purpose_keeps_its_consent_gate(hits: Proxied) -> None:
    c = hits.client
    ok = await c.get("/t/lib/consented.js", headers={"cf-ipcountry": "US",
                                                     "accept-encoding": "identity"})
    assert ok.status_code == 200 and ok.content == GOOD
    assert await from_memory(hits, scope("/lib/consented.js")) is None
    denied = await c.get("/t/lib/consented.js", headers={"cf-ipcountry": "DE"})
    assert denied.status_code == 204 and denied.content == b""
    assert denied.headers["cache-control"] == "no-store"
    again = await c.get("/t/lib/consented.js", headers={"cf-ipcountry": "US"})
    assert again.status_code == 200 and len(hits.upstream.requests) == 1


async def test_a_reload_applies_to_the_copies_in_memory(
    hits: Proxied, rules_dir: Path
) -> None:
    for path in ("/lib/gtag.js", "/lib/pinned.js", "/libs/a.js"):
        await hits.client.get("/t" + path)
        assert await from_memory(hits, scope(path)) is not None
    write_rules(rules_dir, RULES.replace("cache: 1h}", "cache: 2m}").replace(
        sri_digest(GOOD), sri_digest(b"another script")).replace("cdn.example/libs/",
                                                                  "cdn2.example/libs/"))
    assert await hits.runtime.reload()
    sent = await from_memory(hits, scope("/lib/gtag.js"))
    assert sent is not None and sent[0]["headers"] == full(False, max_age=120)
    assert await from_memory(hits, scope("/lib/pinned.js")) is None  # not the new pin
    assert await from_memory(hits, scope("/libs/a.js")) is None  # another upstream now


async def test_the_remembered_keys_are_bounded(
    hits: Proxied, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scripts, "MAX_KEYS", 2)
    for i in range(4):
        await hits.client.get(f"/t/lib/gtag.js?id=G-{i}")
    long = b"id=" + b"x" * scripts.MAX_KEY_QUERY
    await hits.client.get("/t/lib/gtag.js?" + long.decode())
    assert len(hits.proxy.keys) == 2
    assert await from_memory(hits, scope("/lib/gtag.js", query=long)) is not None
    assert await from_memory(hits, scope("/lib/gtag.js", query=b"id=G-0")) is not None


async def test_relay_serve_leaves_a_websocket_to_the_relay_app(
    rules_dir: Path, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # relay serve's app asks the script cache first, for HTTP GET and HEAD only: a websocket
    # scope has no method, and is closed by the relay app as before.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(relay_app, "tune_gc", lambda: None)  # the test process is not ours
    write_rules(rules_dir, RULES)
    app = relay_app.serving_app(str(rules_dir), str(tmp_path / "var"), admin_port=1)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    ws = {"type": "websocket", "path": "/t/lib/gtag.js", "raw_path": b"/t/lib/gtag.js",
          "root_path": "", "query_string": b"", "headers": [], "server": ("127.0.0.1", 8000)}
    await app(ws, receive, send)
    assert [m["type"] for m in sent] == ["websocket.close"]
