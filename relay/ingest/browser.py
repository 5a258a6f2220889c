"""``POST {prefix}/e``: browser events (what the snippet sends), the relay's hot path.

It reads the few headers it needs in one pass and takes the browser's context from the
request, never from the payload: the client address (``relay.client_ip``), the user agent,
the CDN's country header, ``Sec-GPC`` and the correlation cookie, which it issues or renews
on the answer.

Before the body is read, the abuse controls: a page whose origin the source does not allow
gets 403 (``relay.ingest.origin``), a client address over ``relay.rate_limit`` gets 429 with
``Retry-After`` (``relay.state.ratelimit``). After it, a recognised bot's events are dropped
(202, nothing accepted), flagged (``context.bot: true``) or kept, as the source's ``bots``
says (``relay.ingest.bots``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from starlette.types import Receive, Scope

from relay.engine.identity import client_ip
from relay.engine.results import Meta
from relay.ingest import bots, origin
from relay.ingest.body import parse_body
from relay.ingest.commit import accept, ingest_answer
from relay.ingest.endpoint import Answer, problem
from relay.observe.log import LOG
from relay.state.ratelimit import retry_after
from relay.web import NO_STORE, Problem, cookie, header_map, read_body, too_large

if TYPE_CHECKING:
    from relay.runtime import Runtime


async def browser(rt: Runtime, scope: Scope, receive: Receive) -> Answer:
    began = time.perf_counter()
    relay = rt.engine.rules.relay
    headers = header_map(scope["headers"])
    client = scope.get("client")
    ip = client_ip(relay.client_ip, headers, client[0] if client else None)
    source = rt.browser_source()
    if source is None:
        return problem(Problem(404, "no source of type browser in the rules"))
    refused = origin.refused(source.allowed_origins, headers.get("origin"),
                             headers.get("referer"), headers.get("host"),
                             headers.get("x-forwarded-host"))
    if refused is not None:
        rt.metrics.origin_refused.labels(source.name).inc()
        return problem(Problem(403, f"origin {refused} may not post events here "
                                    f"(sources.{source.name}.allowed_origins)"))
    if rt.limiter is not None:
        wait = await _take(rt, ip or "-")
        if wait > 0:
            rt.metrics.rate_limited.labels("browser").inc()
            return problem(Problem(429, "rate limited: too many requests from this address",
                                   {"Retry-After": retry_after(wait)}))
    limit = relay.limits.body_bytes
    body = await read_body(receive, headers.get("content-length"), limit)
    if body is None:
        return problem(too_large(limit))
    items = parse_body(body, headers.get("content-type"), relay.limits.batch_events)
    if isinstance(items, Problem):
        return problem(items)
    user_agent = headers.get("user-agent")
    bot = bots.action(source.bots, user_agent)
    if bot is not None:
        rt.metrics.bot_events.labels(source.name, bot[1]).inc(len(items))
        if bot[1] == "drop":
            return 202, {"accepted": 0, "duplicates": 0, "rejected": [],
                         "dropped_bot": len(items)}, [NO_STORE]
    correlation = rt.signer.issue(cookie(headers.get("cookie"), relay.cookie.name))
    meta = Meta(
        source=source,
        received_ms=int(time.time() * 1000),
        ip=ip,
        user_agent=user_agent,
        country=headers.get(relay.country_header.lower()) if relay.country_header else None,
        gpc=headers.get("sec-gpc") == "1",
        correlation_id=correlation.id,
        bot=bot is not None and bot[1] == "flag",
    )
    batch = await accept(rt, items, meta)
    if isinstance(batch, Problem):
        return problem(batch)
    status, answer = ingest_answer(batch, single=len(items) == 1)
    set_cookie = rt.signer.header(correlation.value, headers.get("host"))
    rt.metrics.ingest_latency.observe(time.perf_counter() - began)
    return status, answer, [(b"set-cookie", set_cookie.encode()), NO_STORE]


async def _take(rt: Runtime, client: str) -> float:
    """The bucket's answer; 0 (let it pass) when the shared store cannot answer: a rate
    limit must not turn a Redis outage into lost events."""
    assert rt.limiter is not None
    try:
        return await rt.limiter.take(client)
    except Exception as exc:
        LOG.warning("rate limit: cannot reach the buckets, letting the request pass: %s", exc)
        return 0.0
