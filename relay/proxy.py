"""The streaming first-party proxy: ``ANY {prefix}/{route path}`` per the rules' ``proxy:``.

    proxy:
      gtag: {path: /lib/gtag.js, upstream: "https://www.googletagmanager.com/gtag/js", cache: 1h}
      ga: {path: /g/collect, upstream: "https://region1.google-analytics.com/g/collect",
           purpose: analytics, forward_ip: truncate, cookies: [_ga, "_ga_*"]}

``ProxyRouter`` is the last route of the relay app: it matches a request path against the
routes of the rules in force (the longest route path wins) and hands the request to ``serve``:

1. the method must be one of the route's (405), the path must be plain (400, see
   ``relay.proxy_target``);
2. the consent gate: when the route has a purpose and it is denied (the relay's explicit
   consent for this browser, Consent Mode ``gcs``, ``Sec-GPC``, the region default), the
   answer is 204 and nothing leaves;
3. the query loses click ids and the route's dropped parameters;
4. ``cache:`` routes answer GET from memory (ETag, 304; a pinned script that changes upstream
   is refused and the last good copy kept); every other request streams both ways through
   the runtime's one ``httpx.AsyncClient``: the request body is read as it arrives (413 over
   ``max_body``), the response is passed on raw (never decompressed), redirects are passed to
   the browser and never followed;
5. 502 on upstream errors, 504 on timeouts, 503 when the route's ``concurrency`` requests are
   already in flight (the relay is busy, not the client: ``Retry-After: 1``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import TYPE_CHECKING, Any

import httpx
from starlette.datastructures import URLPath
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from relay import __version__
from relay.collect import Problem
from relay.consent import decide
from relay.identity import client_ip
from relay.observe.log import LOG
from relay.observe.metrics import Metrics
from relay.proxy_cache import Script, ScriptCache, TooLarge, decode_body, sri_digest
from relay.proxy_headers import (
    Headers,
    consent_event,
    gcs_consent,
    request_headers,
    response_headers,
)
from relay.proxy_target import Refused, check_raw_path, clean_query, match, upstream_url
from relay.rules.model import ProxyRoute

if TYPE_CHECKING:
    from relay.app import Runtime

SCOPE_KEY = "relay.proxy"  # the matched (route, rest of the path) in the request scope
BUSY_RETRY_AFTER = "1"
MAX_DIGESTS = 1024  # script URLs whose last SHA-256 is remembered
FILL_HEADERS = {"accept-encoding": "gzip", "user-agent": f"relay/{__version__} (script cache)"}

ExplicitConsent = Callable[[str], Awaitable[Mapping[str, Any] | None]]


def cookieless_jar() -> CookieJar:
    """A cookie jar that keeps nothing, for the runtime's shared ``httpx.AsyncClient``: it
    carries every user's requests, so a cookie one vendor response sets must never be stored
    and sent along with another user's request (or pile up in memory)."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


class Proxy:
    """The proxy's state in a runtime: the script cache, the SHA-256 of each script seen,
    requests in flight per route, and the hook to the relay's explicit consent.

    ``explicit_consent(correlation_id)`` returns the latest explicit consent the relay holds
    for that browser (``{"ads": "granted", ...}``) or None; it is asked only for routes with
    a purpose and only when the request carries a valid correlation cookie. None (the
    default) reads the runtime's state store (``State.consent_for``, what the engine
    remembers from the browser's events).
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.cache = ScriptCache()
        self.digests: dict[str, str] = {}  # upstream URL -> sha256 of the last good script
        self.inflight: dict[str, int] = {}
        self.explicit_consent: ExplicitConsent | None = None


class ProxyRouter(BaseRoute):
    """Matches the rules' proxy routes; add it after every other route of the relay app."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        runtime = getattr(getattr(scope.get("app"), "state", None), "relay", None)
        if runtime is None:
            return Match.NONE, {}
        found = match(runtime.rules.proxy, _route_path(scope))
        if found is None:
            return Match.NONE, {}
        return Match.FULL, {SCOPE_KEY: found}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await serve(Request(scope, receive))
        await response(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path relative to where the relay is mounted (as Starlette's routing sees it)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("/", ""):
        return path[len(root) :]
    return path


async def serve(request: Request) -> Response:
    """Answer one matched proxy request (``request.scope[SCOPE_KEY]`` holds the match)."""
    rt: Runtime = request.app.state.relay
    route, rest = request.scope[SCOPE_KEY]
    response = await _serve(rt, route, rest, request)
    rt.proxy.metrics.proxy_requests.labels(route.name, str(response.status_code)).inc()
    return response


def _problem(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return Problem(status, message, headers).response()


async def _serve(rt: Runtime, route: ProxyRoute, rest: str, request: Request) -> Response:
    methods = route.methods + (("HEAD",) if "GET" in route.methods else ())
    if request.method not in methods:
        return _problem(
            405,
            f"proxy {route.name}: method {request.method} not allowed",
            {"Allow": ", ".join(dict.fromkeys(methods))},
        )
    rules = rt.rules
    relay = rules.relay
    country = request.headers.get(relay.country_header) if relay.country_header else None
    keep_click_ids = False
    if route.purpose is not None or route.click_ids is not None:
        event = await _consent_event(rt, request, country)
        if route.purpose is not None and not _granted(rt, route.purpose, event):
            return Response(status_code=204, headers={"cache-control": "no-store"})
        keep_click_ids = route.click_ids is not None and _granted(rt, route.click_ids, event)
    query = clean_query(route, request.scope.get("query_string", b""), keep_click_ids)
    try:
        check_raw_path(_raw_path(request.scope))
        url = upstream_url(route, rest, query)
    except Refused as exc:
        return _problem(400, f"proxy {route.name}: {exc}")
    await rt.ensure_started()  # the shared client
    if route.cache is not None and request.method in ("GET", "HEAD"):
        return await _cached(rt, route, url, request)
    return await _forward(rt, route, url, request, country, keep_click_ids)


def _raw_path(scope: Scope) -> bytes:
    raw = scope.get("raw_path")
    if not isinstance(raw, bytes):
        return str(scope["path"]).encode("utf-8")
    return raw.split(b"?", 1)[0]


def _granted(rt: Runtime, purpose_name: str, event: dict[str, Any]) -> bool:
    purpose = rt.rules.purposes.get(purpose_name)
    return purpose is not None and decide(purpose, event)[0] == "granted"


async def _consent_event(rt: Runtime, request: Request, country: str | None) -> dict[str, Any]:
    relay = rt.rules.relay
    correlation = rt.signer.verify(request.cookies.get(relay.cookie.name))
    explicit = None
    if correlation is not None:
        lookup = rt.proxy.explicit_consent or rt.state.consent_for
        explicit = await lookup(correlation)
    gcs = gcs_consent(request.scope.get("query_string", b""), relay.consent_map)
    return consent_event(explicit, gcs, request.headers.get("sec-gpc") == "1", country)


# -- streaming ------------------------------------------------------------------------


class BodyTooLarge(Exception):
    pass


async def _limited(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        if chunk:
            yield chunk


class _Streamed(StreamingResponse):
    """An upstream response passed on as it arrives; the upstream response is closed and
    ``done`` called however the stream ends (also when the browser goes away)."""

    def __init__(
        self,
        upstream: httpx.Response,
        headers: Headers,
        done: Callable[[], None] = lambda: None,
        body: AsyncIterator[bytes] | None = None,
    ) -> None:
        super().__init__(body if body is not None else upstream.aiter_raw(), upstream.status_code)
        self.raw_headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
        self._upstream = upstream
        self._done = done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                await self._upstream.aclose()
            finally:
                self._done()


def _upstream_failed(route: ProxyRoute, exc: httpx.HTTPError) -> Response:
    if isinstance(exc, httpx.TimeoutException):
        LOG.warning("proxy %s: upstream timed out after %gs", route.name, route.timeout)
        return _problem(504, f"proxy {route.name}: upstream timed out")
    LOG.warning("proxy %s: upstream failed: %s", route.name, type(exc).__name__)
    return _problem(502, f"proxy {route.name}: upstream unreachable")


async def _forward(
    rt: Runtime,
    route: ProxyRoute,
    url: httpx.URL,
    request: Request,
    country: str | None,
    keep_click_ids: bool,
) -> Response:
    proxy, relay, headers = rt.proxy, rt.rules.relay, request.headers
    if proxy.inflight.get(route.name, 0) >= route.concurrency:
        return _problem(503, f"proxy {route.name}: busy", {"Retry-After": BUSY_RETRY_AFTER})
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > route.max_body:
        return _problem(
            413, f"proxy {route.name}: body over {route.max_body} bytes", {"Connection": "close"}
        )
    has_body = (length is not None and length != "0") or "transfer-encoding" in headers
    peer = request.client.host if request.client else None
    out = request_headers(
        route,
        headers.items(),
        client_ip=client_ip(relay.client_ip, headers, peer),
        country=country,
        own_cookie=relay.cookie.name,
        drop=[h for h in (relay.country_header, relay.client_ip.header) if h],
        keep_click_ids=keep_click_ids,
    )
    assert rt.client is not None
    content = _limited(request.stream(), route.max_body) if has_body else None
    req = rt.client.build_request(
        request.method, url, headers=out, content=content, timeout=route.timeout
    )
    if not any(name == "user-agent" for name, _ in out):
        del req.headers["user-agent"]  # not even httpx's own
    proxy.inflight[route.name] = proxy.inflight.get(route.name, 0) + 1

    def release() -> None:
        proxy.inflight[route.name] -= 1

    try:
        upstream = await rt.client.send(req, stream=True, follow_redirects=False)
    except BodyTooLarge:
        release()
        return _problem(
            413, f"proxy {route.name}: body over {route.max_body} bytes", {"Connection": "close"}
        )
    except ClientDisconnect:
        release()
        return Response(status_code=400)
    except httpx.HTTPError as exc:
        release()
        return _upstream_failed(route, exc)
    except BaseException:
        release()
        raise
    cookie_path = request.scope.get("root_path", "") + route.path
    return _Streamed(
        upstream, response_headers(route, upstream.headers.multi_items(), cookie_path), release
    )


# -- the script cache -----------------------------------------------------------------


async def _cached(rt: Runtime, route: ProxyRoute, url: httpx.URL, request: Request) -> Response:
    cache, key = rt.proxy.cache, str(url)

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
                filled = await _fill(rt, route, url, script)
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
    rt: Runtime, route: ProxyRoute, url: httpx.URL, stale: Script | None
) -> Script | Response:
    """Fetch ``url`` for the cache: a new script, the stale one (upstream down, or its
    script does not match the pin), or a response to pass on (not a cacheable 200)."""
    assert rt.client is not None and route.cache is not None
    expires = time.monotonic() + route.cache
    shared = dataclasses.replace(route, cookies=())  # a shared fetch: no cookies either way
    req = rt.client.build_request("GET", url, headers=FILL_HEADERS, timeout=route.timeout)
    try:
        upstream = await rt.client.send(req, stream=True, follow_redirects=False)
    except httpx.HTTPError as exc:
        if stale is not None:
            LOG.warning(
                "proxy %s: upstream failed (%s); serving the cached script",
                route.name,
                type(exc).__name__,
            )
            stale.expires = expires
            return stale
        return _upstream_failed(route, exc)
    headers = response_headers(shared, upstream.headers.multi_items(), "/")
    if upstream.status_code != 200:
        if stale is not None and upstream.status_code >= 500:
            await upstream.aclose()
            stale.expires = expires
            return stale
        return _Streamed(upstream, headers)
    raw = bytearray()
    stream = upstream.aiter_raw()
    async for chunk in stream:
        raw += chunk
        if len(raw) > route.cache_max_bytes:  # too big to cache: pass it on as it comes
            return _Streamed(upstream, headers, body=_chain(bytes(raw), stream))
    await upstream.aclose()
    try:
        body = decode_body(
            bytes(raw), upstream.headers.get("content-encoding", ""), route.cache_max_bytes
        )
    except (TooLarge, ValueError):
        return Response(bytes(raw), upstream.status_code, headers=dict(headers))
    return _keep(rt, route, str(url), body, upstream.headers.get("content-type"), expires, stale)


async def _chain(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk


def _keep(
    rt: Runtime,
    route: ProxyRoute,
    key: str,
    body: bytes,
    content_type: str | None,
    expires: float,
    stale: Script | None,
) -> Script | Response:
    proxy = rt.proxy
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
        return _problem(502, f"proxy {route.name}: upstream script does not match its pin")
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
