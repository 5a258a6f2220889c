"""Streaming a request to a route's upstream and its answer back, both as they arrive:
the request body read as it comes (413 over ``max_body``), the response passed on raw
(never decompressed), 502 on upstream errors, 504 on timeouts, 503 when the route's
``concurrency`` requests are already in flight and its queue is full, or the wait for a
slot ran out (``relay.proxy.gate``).

The upstream is reached through ``Runtime.sender`` (``relay.transport.Sender``): in
production straight over the process's one aiohttp session, with no httpx request or
response built (that layer cost more CPU per proxied hit than the whole aiohttp exchange).
Two shortcuts keep a small hit cheap, as nginx buffers both ways by default:

- a body with a ``Content-Length`` of at most ``READ_FIRST`` bytes is read before the
  upstream is contacted (408, 413 and 400 as when streamed) and sent with the request's
  head; a larger body, or one without a length (chunked), is streamed as it arrives;
- an answer already complete when its head arrives (a 204, a small answer in the same
  packets) is passed on as one ``Response``, and the route's slot and the connection are
  given back at once; any other answer is streamed (``Streamed``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING

import httpx
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from relay.engine.identity import client_ip
from relay.observe.log import LOG
from relay.proxy.gate import wait_for_slot
from relay.proxy.headers import Headers, request_headers, response_headers
from relay.proxy.rewrite import Prepared
from relay.proxy.state import ProxyState
from relay.rules.model import ProxyRoute
from relay.transport import Answer
from relay.web import BodyTimeout, Problem

if TYPE_CHECKING:
    from relay.runtime import Runtime

BUSY_RETRY_AFTER = "1"
READ_FIRST = 64 * 1024  # a body of a known length up to this is read before it is sent


def problem(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return Problem(status, message, headers).response()


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


async def _read(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    return b"".join([chunk async for chunk in _limited(chunks, limit)])


def _raw(headers: Headers) -> list[tuple[bytes, bytes]]:
    return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]


class Streamed(StreamingResponse):
    """An upstream response passed on as it arrives; the upstream response is closed and
    ``done`` called however the stream ends (also when the browser goes away)."""

    def __init__(
        self,
        upstream: Answer,
        headers: Headers,
        done: Callable[[], None] = lambda: None,
        body: AsyncIterator[bytes] | None = None,
    ) -> None:
        super().__init__(body if body is not None else upstream.chunks(), upstream.status)
        self.raw_headers = _raw(headers)
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


class Passed(Response):
    """An upstream answer already read in full, passed on with its own headers as they are
    (its ``Content-Length``, or none)."""

    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        self.status_code, self.body, self.background = status, body, None
        self.raw_headers = _raw(headers)


def body_timeout(name: str, seconds: int) -> Response:
    return problem(408, f"proxy {name}: the body did not arrive within {seconds} s",
                   {"Connection": "close"})


def upstream_failed(route: ProxyRoute, exc: httpx.HTTPError) -> Response:
    if isinstance(exc, httpx.TimeoutException):
        LOG.warning("proxy %s: upstream timed out after %gs", route.name, route.timeout)
        return problem(504, f"proxy {route.name}: upstream timed out")
    LOG.warning("proxy %s: upstream failed: %s", route.name, type(exc).__name__)
    return problem(502, f"proxy {route.name}: upstream unreachable")


async def forward(
    rt: Runtime,
    state: ProxyState,
    route: ProxyRoute,
    url: httpx.URL,
    request: Request,
    country: str | None,
    keep_click_ids: bool,
    prepared: Prepared | None = None,
) -> Response:
    """``request`` sent to ``url``: its body (read first when small, else streamed as it
    arrives), or ``prepared`` (a vendor route's rewritten body) instead."""
    proxy, relay, headers = state, rt.rules.relay, request.headers
    length = headers.get("content-length")
    declared = int(length) if length is not None and length.isdigit() else None
    if declared is not None and declared > route.max_body:
        return problem(
            413, f"proxy {route.name}: body over {route.max_body} bytes", {"Connection": "close"}
        )
    gate = proxy.gate(route)
    if not gate.free() and gate.waiting < gate.size:  # it waits
        proxy.metrics.proxy_queued.labels(route.name).inc()
    refused, receive = await wait_for_slot(gate, route.wait, request.receive, route.max_body)
    if refused == "gone":  # the client went away while waiting: nobody to answer
        return Response(status_code=400)
    if refused is not None:
        proxy.metrics.proxy_refused.labels(route.name, refused).inc()
        return problem(503, f"proxy {route.name}: busy", {"Retry-After": BUSY_RETRY_AFTER})
    if receive is not request.receive:  # what was read while waiting, read again
        request = Request(request.scope, receive)
    has_body = (length is not None and length != "0") or "transfer-encoding" in headers
    release = gate.leave
    try:
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
        assert rt.sender is not None
        content: AsyncIterator[bytes] | bytes | None
        if prepared is not None:
            changed = {"content-length", *prepared.headers}
            out = [(n, v) for n, v in out if n not in changed]
            out += [(n, v) for n, v in prepared.headers.items() if v is not None]
            content = prepared.body if prepared.body or has_body else None
        elif not has_body:
            content = None
        elif declared is not None and declared <= READ_FIRST:
            content = await _read(request.stream(), route.max_body)
            out = [*((n, v) for n, v in out if n != "content-length"),
                   ("content-length", str(len(content)))]
        else:
            content = _limited(request.stream(), route.max_body)
        upstream = await rt.sender.send(request.method, url, out, content, route.timeout)
    except BodyTooLarge:
        release()
        return problem(
            413, f"proxy {route.name}: body over {route.max_body} bytes", {"Connection": "close"}
        )
    except BodyTimeout:
        release()
        return body_timeout(route.name, rt.rules.relay.limits.body_seconds)
    except ClientDisconnect:
        release()
        return Response(status_code=400)
    except httpx.HTTPError as exc:
        release()
        return upstream_failed(route, exc)
    except BaseException:
        release()
        raise
    cookie_path = request.scope.get("root_path", "") + route.path
    passed = response_headers(route, upstream.headers, cookie_path)
    whole = upstream.complete()
    if whole is None:
        return Streamed(upstream, passed, release)
    release()
    await upstream.aclose()
    return Passed(upstream.status, passed, whole)
