"""``POST {prefix}/e``: browser events (what the snippet sends), the relay's hot path.

It reads the few headers it needs in one pass and takes the browser's context from the
request, never from the payload: the client address (``relay.client_ip``), the user agent,
the CDN's country header, ``Sec-GPC`` and the correlation cookie, which it issues or renews
on the answer.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from starlette.types import Receive, Scope

from relay.engine.identity import client_ip
from relay.engine.results import Meta
from relay.ingest.body import parse_body
from relay.ingest.commit import accept, ingest_answer
from relay.ingest.endpoint import Answer, problem
from relay.web import NO_STORE, Problem, cookie, header_map, read_body, too_large

if TYPE_CHECKING:
    from relay.runtime import Runtime


async def browser(rt: Runtime, scope: Scope, receive: Receive) -> Answer:
    began = time.perf_counter()
    relay = rt.engine.rules.relay
    headers = header_map(scope["headers"])
    client = scope.get("client")
    ip = client_ip(relay.client_ip, headers, client[0] if client else None)
    if rt.limiter.enabled:
        wait = rt.limiter.take(ip or "-")
        if wait:
            return problem(Problem(429, "rate limited", {"Retry-After": str(max(1, round(wait)))}))
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
    batch = await accept(rt, items, meta)
    if isinstance(batch, Problem):
        return problem(batch)
    status, answer = ingest_answer(batch, single=len(items) == 1)
    set_cookie = rt.signer.header(correlation.value, headers.get("host"))
    rt.metrics.ingest_latency.observe(time.perf_counter() - began)
    return status, answer, [(b"set-cookie", set_cookie.encode()), NO_STORE]
