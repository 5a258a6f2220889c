"""``cache:`` routes: scripts fetched once per URL and answered from memory (ETag, 304,
gzip); a pinned script that changes upstream is refused and the last good copy kept."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx
from starlette.requests import Request
from starlette.responses import Response

from relay.observe.log import LOG
from relay.proxy.cache import Script, TooLarge, decode_body, sri_digest
from relay.proxy.forward import Streamed, problem, upstream_failed
from relay.proxy.headers import response_headers
from relay.proxy.state import ProxyState
from relay.rules.model import ProxyRoute
from relay.version import __version__

if TYPE_CHECKING:
    from relay.runtime import Runtime

MAX_DIGESTS = 1024  # script URLs whose last SHA-256 is remembered
FILL_HEADERS = (("accept-encoding", "gzip"), ("user-agent", f"relay/{__version__} (script cache)"))


async def cached(
    rt: Runtime, state: ProxyState, route: ProxyRoute, url: httpx.URL, request: Request
) -> Response:
    cache, key = state.cache, str(url)

    def usable() -> Script | None:
        script = cache.get(key)
        if script is not None and route.pin is not None and script.digest != route.pin:
            return None  # cached before the pin was set or changed (a rules reload)
        return script

    script = usable()
    if script is None or script.expires <= time.monotonic():
        async with cache.filling(key):
            script = usable()
            if script is None or script.expires <= time.monotonic():
                filled = await _fill(rt, state, route, url, script)
                if isinstance(filled, Response):
                    return filled
                script = filled
    return _from_cache(script, route, request)


def _from_cache(script: Script, route: ProxyRoute, request: Request) -> Response:
    gz = "gzip" in request.headers.get("accept-encoding", "").lower()
    headers = {
        "cache-control": f"public, max-age={int(route.cache or 0)}",
        "etag": script.etag(gz),
        "vary": "accept-encoding",
    }
    given = request.headers.get("if-none-match")
    if given and _etag_matches(given, script.etags()):
        return Response(status_code=304, headers=headers)
    body = script.gzipped if gz else script.body
    headers["content-type"] = script.content_type
    headers["content-length"] = str(len(body))
    if gz:
        headers["content-encoding"] = "gzip"
    return Response(b"" if request.method == "HEAD" else body, headers=headers)


def _etag_matches(header: str, etags: tuple[str, ...]) -> bool:
    given = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in given or any(t in given for t in etags)


async def _fill(
    rt: Runtime, state: ProxyState, route: ProxyRoute, url: httpx.URL, stale: Script | None
) -> Script | Response:
    """Fetch ``url`` for the cache: a new script, the stale one (upstream down, or its
    script does not match the pin), or a response to pass on (not a cacheable 200)."""
    assert rt.sender is not None and route.cache is not None
    expires = time.monotonic() + route.cache
    shared = dataclasses.replace(route, cookies=())  # a shared fetch: no cookies either way
    try:
        upstream = await rt.sender.send("GET", url, FILL_HEADERS, None, route.timeout)
    except httpx.HTTPError as exc:
        if stale is not None:
            LOG.warning(
                "proxy %s: upstream failed (%s); serving the cached script",
                route.name,
                type(exc).__name__,
            )
            stale.expires = expires
            return stale
        return upstream_failed(route, exc)
    headers = response_headers(shared, upstream.headers, "/")
    if upstream.status != 200:
        if stale is not None and upstream.status >= 500:
            await upstream.aclose()
            stale.expires = expires
            return stale
        return Streamed(upstream, headers)
    raw = bytearray()
    stream = upstream.chunks()
    async for chunk in stream:
        raw += chunk
        if len(raw) > route.cache_max_bytes:  # too big to cache: pass it on as it comes
            return Streamed(upstream, headers, body=_chain(bytes(raw), stream))
    await upstream.aclose()
    found = dict(upstream.headers)  # names in lower case; the last of a repeated one
    try:
        body = decode_body(bytes(raw), found.get("content-encoding", ""), route.cache_max_bytes)
    except (TooLarge, ValueError):
        return Response(bytes(raw), upstream.status, headers=dict(headers))
    return _keep(state, route, str(url), body, found.get("content-type"), expires, stale)


async def _chain(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk


def _keep(
    proxy: ProxyState,
    route: ProxyRoute,
    key: str,
    body: bytes,
    content_type: str | None,
    expires: float,
    stale: Script | None,
) -> Script | Response:
    digest = sri_digest(body)
    where = key.split("?", 1)[0]  # logs name the script, not its query
    if route.pin is not None and digest != route.pin:
        proxy.metrics.proxy_pin_mismatch.labels(route.name).inc()
        LOG.error(
            "proxy %s: upstream script %s has %s, not the pinned %s; %s",
            route.name,
            where,
            digest,
            route.pin,
            "serving the last good copy" if stale else "refusing it (no good copy yet)",
        )
        if stale is not None:
            stale.expires = expires
            return stale
        return problem(502, f"proxy {route.name}: upstream script does not match its pin")
    previous = proxy.digests.pop(key, None)
    if previous != digest:
        if previous is None:
            LOG.info("proxy %s: cached %s, %s", route.name, where, digest)
        else:
            LOG.warning(
                "proxy %s: upstream script %s changed: %s, was %s",
                route.name,
                where,
                digest,
                previous,
            )
    proxy.digests[key] = digest
    if len(proxy.digests) > MAX_DIGESTS:
        del proxy.digests[next(iter(proxy.digests))]
    script = Script.build(body, content_type or "application/javascript", expires)
    proxy.cache.put(key, script)
    return script
