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
from starlette.types import Receive, Scope, Send

from relay.observe.log import LOG
from relay.proxy.cache import RawHeaders, Script, ScriptCache, TooLarge, decode_body, sri_digest
from relay.proxy.forward import Streamed, problem, upstream_failed
from relay.proxy.headers import response_headers
from relay.proxy.state import ProxyState
from relay.proxy.target import Refused, clean_query, upstream_url
from relay.rules.model import ProxyRoute
from relay.version import __version__

if TYPE_CHECKING:
    from relay.runtime import Runtime

MAX_DIGESTS = 1024  # script URLs whose last SHA-256 is remembered
MAX_KEYS = 1024  # (route, path, query) -> cache key, remembered for hits (``cache_key``)
MAX_KEY_QUERY = 512  # bytes of raw query up to which its cache key is remembered
FILL_HEADERS = (("accept-encoding", "gzip"), ("user-agent", f"relay/{__version__} (script cache)"))


def usable(cache: ScriptCache, route: ProxyRoute, key: str) -> Script | None:
    """The script cached under ``key`` if ``route`` may serve it, fresh or not: None when
    there is none, or when it was cached before the route's pin was set or changed (a rules
    reload)."""
    script = cache.get(key)
    if script is not None and route.pin is not None and script.digest != route.pin:
        return None
    return script


async def cached(
    rt: Runtime, state: ProxyState, route: ProxyRoute, url: httpx.URL, request: Request
) -> Response:
    cache, key = state.cache, str(url)
    script = usable(cache, route, key)
    if script is None or script.expires <= time.monotonic():
        async with cache.filling(key):
            script = usable(cache, route, key)
            if script is None or script.expires <= time.monotonic():
                filled = await _fill(rt, state, route, url, script)
                if isinstance(filled, Response):
                    return filled
                script = filled
    return _from_cache(script, route, request)


class Answer(Response):
    """A cached script's answer, its headers already raw (``Script.heads``): nothing is
    encoded per request."""

    def __init__(self, status: int, headers: RawHeaders, body: bytes) -> None:
        self.status_code = status
        self.raw_headers = headers
        self.body = body
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body})


def answer(
    script: Script, max_age: int, head: bool, accept_encoding: str, if_none_match: str | None
) -> Answer:
    """The answer from memory: gzip when the browser accepts it, 304 when it holds either
    variant (by weak comparison), no body for HEAD. The header list is the request's own
    copy (a middleware may edit it in place)."""
    gz = "gzip" in accept_encoding.lower()
    heads = script.heads(max_age)
    if if_none_match and _etag_matches(if_none_match, script.etags()):
        return Answer(304, list(heads.not_modified[gz]), b"")
    body = b"" if head else script.gzipped if gz else script.body
    return Answer(200, list(heads.ok[gz]), body)


def _from_cache(script: Script, route: ProxyRoute, request: Request) -> Response:
    headers = request.headers
    return answer(script, int(route.cache or 0), request.method == "HEAD",
                  headers.get("accept-encoding", ""), headers.get("if-none-match"))


def cache_key(state: ProxyState, route: ProxyRoute, rest: str, query: bytes) -> str | None:
    """The script cache's key for a request that keeps no click ids: the upstream URL as
    ``cached`` gets it, remembered per (route, rest of the path, raw query) so that a hit
    builds no URL. None: the path or query is refused (the full path answers 400)."""
    memo = (route.name, rest, query)
    known = state.keys.get(memo)
    if known is not None and known[0] is route:  # the same rules (a reload makes new routes)
        return known[1]
    try:
        key = str(upstream_url(route, rest, clean_query(route, query, False)))
    except Refused:
        return None
    if len(query) <= MAX_KEY_QUERY:
        state.keys[memo] = (route, key)
        if len(state.keys) > MAX_KEYS:
            del state.keys[next(iter(state.keys))]
    return key


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
