"""The streaming first-party proxy: ``ANY {prefix}/{route path}`` per the rules' ``proxy:``.

    proxy:
      gtag: {path: /lib/gtag.js, upstream: "https://www.googletagmanager.com/gtag/js", cache: 1h}
      ga: {path: /g/collect, upstream: "https://region1.google-analytics.com/g/collect",
           purpose: analytics, forward_ip: truncate, cookies: [_ga, "_ga_*"]}

``ProxyRouter`` is the last route of the relay app: it matches a request path against the
routes of the rules in force (the longest route path wins) and serves it:

1. the method must be one of the route's (405), the path must be plain (400, see
   ``relay.proxy.target``);
2. the consent gate: when the route has a purpose and it is denied (the relay's explicit
   consent for this browser, Consent Mode ``gcs``, ``Sec-GPC``, the region default), nothing
   leaves and the answer is what the route's vendor answers a hit it took (its library
   then treats the hit as sent and does not retry it), or 204 without a vendor;
3. the query loses click ids and the route's dropped parameters;
4. ``cache:`` routes answer GET from memory (ETag, 304; a pinned script that changes upstream
   is refused and the last good copy kept; a hit on a route without a consent gate is
   answered from the raw request, ``ProxyRouter.from_memory``); a ``vendor:`` route reads
   the body (at most ``max_body``), decodes it as the vendor's library encodes it, runs the
   route's pipeline on what means IP, user agent, URL, referrer and identifiers, and sends
   it encoded again (``relay.proxy.rewrite``; 400 when it cannot be read); every other
   request streams both ways through the runtime's one ``httpx.AsyncClient``: the request
   body is read as it arrives (413 over ``max_body``), the response is passed on raw (never
   decompressed), redirects are passed to the browser and never followed;
5. 502 on upstream errors, 504 on timeouts, 503 when the route's ``concurrency`` requests are
   already in flight (the relay is busy, not the client: ``Retry-After: 1``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.datastructures import URLPath
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from relay.engine.consent import decide
from relay.proxy.forward import body_timeout, forward, problem
from relay.proxy.headers import consent_event, gcs_consent
from relay.proxy.hygiene import Hygiene
from relay.proxy.rewrite import DECODED_FACTOR, BodyTooLarge, Prepared, read_body, rewrite
from relay.proxy.scripts import Answer, answer, cache_key, cached, usable
from relay.proxy.state import ProxyState
from relay.proxy.target import Refused, check_raw_path, clean_query, match, upstream_url
from relay.proxy.vendors import VENDORS
from relay.proxy.vendors.base import TooLarge, Undecodable
from relay.rules.model import ProxyRoute
from relay.web import BodyTimeout, with_deadline

if TYPE_CHECKING:
    from relay.runtime import Runtime

SCOPE_KEY = "relay.proxy"  # the matched (route, rest of the path) in the request scope


class ProxyRouter(BaseRoute):
    """Matches the rules' proxy routes; add it after every other route of the relay app.
    It keeps the proxy's state (``state``: script cache, requests in flight)."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.state = ProxyState(runtime.metrics)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        found = match(self.rt.rules.proxy, _route_path(scope))
        if found is None:
            return Match.NONE, {}
        return Match.FULL, {SCOPE_KEY: found}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        route, rest = scope[SCOPE_KEY]
        if await self._answer_hit(scope, route, rest, send):
            return
        # The body must arrive within limits.body_seconds (408), as at the ingest endpoints.
        timed = with_deadline(receive, self.rt.rules.relay.limits.body_seconds)
        response = await _serve(self.rt, self.state, route, rest, Request(scope, timed))
        self.state.metrics.proxy_requests.labels(route.name, str(response.status_code)).inc()
        await response(scope, receive, send)

    async def from_memory(self, scope: Scope, root_path: str, send: Send) -> bool:
        """Answer a request from the script cache if it is a hit (``_hit``), with the relay
        app mounted at ``root_path``; False: nothing was sent, the relay app serves it.
        ``serving_app`` asks this before its router: no route of the relay's own can match a
        proxy path (the rules keep them apart, ``RESERVED_PATHS``)."""
        if scope["type"] != "http":
            return False
        found = match(self.rt.rules.proxy, _relative(scope["path"], root_path))
        return found is not None and await self._answer_hit(scope, *found, send)

    async def _answer_hit(self, scope: Scope, route: ProxyRoute, rest: str, send: Send) -> bool:
        response = _hit(self.state, route, rest, scope)
        if response is None:
            return False
        self.state.metrics.proxy_requests.labels(route.name, str(response.status_code)).inc()
        await response(scope, _no_receive, send)
        return True


def _route_path(scope: Scope) -> str:
    """The path relative to where the relay is mounted (as Starlette's routing sees it)."""
    return _relative(scope["path"], scope.get("root_path", ""))


def _relative(path: str, root: str) -> str:
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("/", ""):
        return path[len(root) :]
    return path


async def _no_receive() -> Any:
    raise AssertionError("an answer from memory reads no request body")


def _hit(state: ProxyState, route: ProxyRoute, rest: str, scope: Scope) -> Answer | None:
    """What ``_serve`` answers a GET or HEAD on a ``cache:`` route whose script is in memory,
    fresh and (for a pinned route) the pinned one, worked out from the raw ASGI scope: no
    request object, no upstream URL (``cache_key``), headers built once per script. None
    for anything else (another method, a consent gate or click ids to decide, a refused
    path, a miss, an expired or unpinned copy): ``_serve`` then decides, and fills."""
    method = scope["method"]
    if (
        route.cache is None
        or method not in ("GET", "HEAD")
        or ("GET" not in route.methods and method not in route.methods)
        or route.purpose is not None
        or route.click_ids is not None
        or route.pipeline is not None
    ):
        return None
    try:
        check_raw_path(_raw_path(scope))
    except Refused:
        return None
    key = cache_key(state, route, rest, scope.get("query_string", b""))
    script = None if key is None else usable(state.cache, route, key)
    if script is None or script.expires <= time.monotonic():
        return None
    accept = given = None
    for name, value in scope["headers"]:  # the first of a repeated header, as Starlette's get
        if name == b"accept-encoding":
            accept = value if accept is None else accept
        elif name == b"if-none-match":
            given = value if given is None else given
    return answer(
        script,
        int(route.cache),
        method == "HEAD",
        "" if accept is None else accept.decode("latin-1"),
        None if given is None else given.decode("latin-1"),
    )


async def _serve(
    rt: Runtime, state: ProxyState, route: ProxyRoute, rest: str, request: Request
) -> Response:
    methods = route.methods + (("HEAD",) if "GET" in route.methods else ())
    if request.method not in methods:
        return problem(
            405,
            f"proxy {route.name}: method {request.method} not allowed",
            {"Allow": ", ".join(dict.fromkeys(methods))},
        )
    rules = rt.rules
    relay = rules.relay
    country = request.headers.get(relay.country_header) if relay.country_header else None
    keep_click_ids = False
    granted: frozenset[str] = frozenset()
    if route.purpose is not None or route.click_ids is not None or route.pipeline is not None:
        event = await _consent_event(rt, state, request, country)
        if route.purpose is not None and not _granted(rt, route.purpose, event):
            return _gated(route, request)
        keep_click_ids = route.click_ids is not None and _granted(rt, route.click_ids, event)
        granted = frozenset(name for name in rules.purposes if _granted(rt, name, event))
    query = clean_query(route, request.scope.get("query_string", b""), keep_click_ids)
    try:
        check_raw_path(_raw_path(request.scope))
        url = upstream_url(route, rest, query)
    except Refused as exc:
        return problem(400, f"proxy {route.name}: {exc}")
    await rt.ensure_started()  # the shared client
    if route.cache is not None and request.method in ("GET", "HEAD"):
        return await cached(rt, state, route, url, request)
    if route.vendor is None:
        return await forward(rt, state, route, url, request, country, keep_click_ids)
    prepared = await _prepare(rt, state, route, request, query, granted, keep_click_ids)
    if isinstance(prepared, Response):
        return prepared
    try:
        url = upstream_url(route, rest, prepared.query)
    except Refused as exc:
        return problem(400, f"proxy {route.name}: {exc}")
    return await forward(rt, state, route, url, request, country, keep_click_ids, prepared)


def _gated(route: ProxyRoute, request: Request) -> Response:
    """The answer to a hit the consent gate stops: the vendor's own answer to a hit it took,
    so that its library does not send it again; 204 without a vendor."""
    headers = {"cache-control": "no-store"}
    if route.vendor is None:
        return Response(status_code=204, headers=headers)
    query = request.scope.get("query_string", b"").decode("latin-1")
    answer = VENDORS[route.vendor].answer(query)
    if answer.content_type is not None:
        headers["content-type"] = answer.content_type
    return Response(answer.body, answer.status, headers=headers)


async def _prepare(
    rt: Runtime, state: ProxyState, route: ProxyRoute, request: Request, query: bytes,
    granted: frozenset[str], keep_click_ids: bool,
) -> Prepared | Response:
    assert route.vendor is not None
    name = route.name
    too_large = problem(413, f"proxy {name}: body over {route.max_body} bytes",
                        {"Connection": "close"})
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > route.max_body:
        return too_large
    try:
        body = await read_body(request.stream(), route.max_body)
    except BodyTooLarge:
        return too_large
    except BodyTimeout:
        return body_timeout(route.name, rt.rules.relay.limits.body_seconds)
    except ClientDisconnect:
        return Response(status_code=400)
    pipeline = rt.rules.pipelines.get(route.pipeline) if route.pipeline else None
    hygiene = Hygiene(pipeline.steps if pipeline else (), granted, route, keep_click_ids)
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        prepared = rewrite(VENDORS[route.vendor], body, headers, query, hygiene,
                           route.max_body * DECODED_FACTOR)
    except TooLarge as exc:
        return problem(413, f"proxy {name}: {exc}", {"Connection": "close"})
    except Undecodable as exc:
        return problem(400, f"proxy {name}: the body is not a {route.vendor} hit the relay "
                       f"can read: {exc}")
    for transform, n in hygiene.ctx.counts.items():
        state.metrics.fields_redacted.labels(transform).inc(n)
    return prepared


def _raw_path(scope: Scope) -> bytes:
    raw = scope.get("raw_path")
    if not isinstance(raw, bytes):
        return str(scope["path"]).encode("utf-8")
    return raw.split(b"?", 1)[0]


def _granted(rt: Runtime, purpose_name: str, event: dict[str, Any]) -> bool:
    purpose = rt.rules.purposes.get(purpose_name)
    return purpose is not None and decide(purpose, event)[0] == "granted"


async def _consent_event(
    rt: Runtime, state: ProxyState, request: Request, country: str | None
) -> dict[str, Any]:
    relay = rt.rules.relay
    correlation = rt.signer.verify(request.cookies.get(relay.cookie.name))
    explicit = None
    if correlation is not None:
        lookup = state.explicit_consent or rt.state.consent_for
        explicit = await lookup(correlation)
    gcs = gcs_consent(request.scope.get("query_string", b""), relay.consent_map)
    return consent_event(explicit, gcs, request.headers.get("sec-gpc") == "1", country)
