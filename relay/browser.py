"""``POST {prefix}/e``, the browser endpoint, as a plain ASGI app.

Every page view of every visitor comes through here, so it skips what the other routes get
from Starlette: no middleware stack, no ``Request``, ``Headers`` or ``Response`` objects. It
reads the few headers it needs in one pass, the body straight from ``receive``, and sends
its answer as two ASGI messages. Measured in process, that is about a sixth of the
endpoint's cost (``benchmarks/README.md``). What it answers is exactly what the Starlette
handlers answer: the parsing, the engine and the commit are the same functions.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import ClientDisconnect, cookie_parser
from starlette.types import Receive, Scope, Send

from relay.collect import Problem, commit, ingest_answer, parse_body, read_body, too_large
from relay.identity import client_ip
from relay.observe.log import LOG
from relay.results import Meta

if TYPE_CHECKING:
    from relay.app import Runtime


JSON = (b"content-type", b"application/json")
NO_STORE = (b"cache-control", b"no-store")


def header_map(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Request headers by (lowercase) name; the first of repeated headers wins, as with
    Starlette's ``Headers.get``."""
    out: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1")
        if key not in out:
            out[key] = value.decode("latin-1")
    return out


def cookie(header: str | None, name: str) -> str | None:
    if not header or name not in header:
        return None
    return cookie_parser(header).get(name)  # lenient: a malformed pair is skipped


async def respond(
    send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [JSON, (b"content-length", str(len(data)).encode()), *(headers or ())],
        }
    )
    await send({"type": "http.response.body", "body": data})


Answer = tuple[int, Any, list[tuple[bytes, bytes]]]  # status, JSON body, extra headers


def problem(p: Problem) -> Answer:
    return (
        p.status,
        {"error": p.message},
        [(k.lower().encode(), v.encode()) for k, v in (p.headers or {}).items()],
    )


class BrowserEndpoint:
    """The ASGI app for ``POST /e``; any other method gets a 405."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            answer: Answer = (405, {"error": "method not allowed; use POST"}, [(b"allow", b"POST")])
        else:
            try:
                answer = await self._handle(scope, receive)
            except ClientDisconnect:  # no one to answer
                return
            except Exception:
                LOG.exception("POST %s failed", scope.get("path", "/e"))
                answer = (500, {"error": "internal error; nothing was accepted"}, [])
        await respond(send, *answer)

    async def _handle(self, scope: Scope, receive: Receive) -> Answer:
        rt = self.rt
        await rt.ensure_started()
        began = time.perf_counter()
        relay = rt.engine.rules.relay
        headers = header_map(scope["headers"])
        client = scope.get("client")
        ip = client_ip(relay.client_ip, headers, client[0] if client else None)
        if rt.limiter.enabled:
            wait = rt.limiter.take(ip or "-")
            if wait:
                return problem(
                    Problem(429, "rate limited", {"Retry-After": str(max(1, round(wait)))})
                )
        source = rt.browser_source()
        if source is None:
            return problem(Problem(404, "no source of type browser in the rules"))
        limit = relay.limits.body_bytes
        body = await read_body(receive, headers.get("content-length"), limit)
        if body is None:
            return problem(too_large(limit))
        items = parse_body(body, headers.get("content-type"), relay.limits.batch_events)
        if isinstance(items, Problem):
            return problem(items)
        correlation = rt.signer.issue(cookie(headers.get("cookie"), relay.cookie.name))
        meta = Meta(
            source=source,
            received_ms=int(time.time() * 1000),
            ip=ip,
            user_agent=headers.get("user-agent"),
            country=headers.get(relay.country_header.lower()) if relay.country_header else None,
            gpc=headers.get("sec-gpc") == "1",
            correlation_id=correlation.id,
        )
        batch = await rt.engine.process(items, meta)
        failed = await commit(rt, batch)
        if failed:
            return problem(failed)
        status, answer = ingest_answer(batch, single=len(items) == 1)
        set_cookie = rt.signer.header(correlation.value, headers.get("host"))
        rt.metrics.ingest_latency.observe(time.perf_counter() - began)
        return status, answer, [(b"set-cookie", set_cookie.encode()), NO_STORE]
