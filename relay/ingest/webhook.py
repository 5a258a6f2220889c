"""``POST {prefix}/hook/{source}``: authoritative events from the site's backend.

The source authenticates every request, with a bearer token or an HMAC signature over the
raw body (``relay.signature``); its events' context is the user's, taken as sent.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from starlette.types import Receive, Scope

from relay.ingest.body import parse_body
from relay.ingest.commit import ingest_answer, process_trusted
from relay.ingest.endpoint import Answer, problem
from relay.rules.model import BearerAuth, HmacAuth, Source
from relay.signature import SIGNATURE_HEADER, verify
from relay.web import Problem, header_map, read_body, too_large

if TYPE_CHECKING:
    from relay.runtime import Runtime

_SIGNATURE = SIGNATURE_HEADER.lower()


def check_auth(source: Source, headers: Mapping[str, str], body: bytes, now: float) -> str | None:
    """None when the request is authentic, else why not (the 401's message). ``headers``
    are keyed by lowercase name."""
    auth = source.auth
    if isinstance(auth, BearerAuth):
        given = headers.get("authorization", "")
        if not given.lower().startswith("bearer "):
            return "missing Authorization: Bearer <token>"
        token = given[7:].strip().encode()
        if not any(hmac.compare_digest(token, t.encode()) for t in auth.tokens):
            return "bearer token not accepted"
        return None
    if isinstance(auth, HmacAuth):
        header = headers.get(_SIGNATURE)
        if not header:
            return "missing X-Relay-Signature: t=<unix seconds>,v1=<hex hmac-sha256 of 't.body'>"
        if not verify(auth.secrets, header, body, now, auth.tolerance):
            return "signature does not match, or its timestamp is outside the tolerance"
        return None
    return None


async def webhook(rt: Runtime, scope: Scope, receive: Receive) -> Answer:
    started = time.perf_counter()
    relay = rt.engine.rules.relay
    name = scope["path_params"]["source"]
    source = rt.engine.rules.sources.get(name)
    if source is None or source.type != "webhook":
        return problem(Problem(404, f"no webhook source named '{name}'"))
    headers = header_map(scope["headers"])
    body = await read_body(receive, headers.get("content-length"), relay.limits.body_bytes)
    if body is None:
        return problem(too_large(relay.limits.body_bytes))
    why = check_auth(source, headers, body, time.time())
    if why:
        return problem(Problem(401, f"source {name}: {why}"))
    items = parse_body(
        body, headers.get("content-type"), relay.limits.batch_events, allowed=("application/json",)
    )
    if isinstance(items, Problem):
        return problem(items)
    batch = await process_trusted(rt, source, headers, items)
    if isinstance(batch, Problem):
        return problem(batch)
    rt.metrics.ingest_latency.observe(time.perf_counter() - started)
    status, answer = ingest_answer(batch, single=len(items) == 1)
    return status, answer, []
