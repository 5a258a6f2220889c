"""``POST {prefix}/hook/{source}``: authoritative events from the site's backend.

The source authenticates every request, with a bearer token or an HMAC signature over the
raw body (``relay.signature``); its events' context is the user's, taken as sent.

A signed request is good once: its timestamp and body (what the signature covers) are marked
in the state store (``State.seen``, shared by every worker and replica on Redis) for twice
the tolerance, the whole time its signature could be accepted, so a captured request
replayed within the tolerance is a 401. The mark is taken before the events are processed
(two copies racing each other: one wins) and given back when the request accepted nothing
(4xx, 5xx), so a retry of a request that failed still works.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from starlette.types import Receive, Scope

from relay.engine.marks import Marks, claim, kept_during
from relay.ingest.body import parse_body
from relay.ingest.commit import ingest_answer, process_trusted
from relay.ingest.endpoint import Answer, problem
from relay.rules.model import BearerAuth, HmacAuth, Source
from relay.signature import SIGNATURE_HEADER, verify
from relay.web import Problem, header_map, read_body, too_large

if TYPE_CHECKING:
    from relay.runtime import Runtime

_SIGNATURE = SIGNATURE_HEADER.lower()


REPLAYED = ("this signed request was already received (a replay); sign every request afresh:"
            " a new t gives a new signature")


def replay_key(source: str, header: str, body: bytes) -> str:
    """The state-store key of a signed request: its source, timestamp and body, which is
    what the signature covers (so reordering or adding ``v1=`` values does not make a new
    request)."""
    t = next((v for k, _, v in (p.strip().partition("=") for p in header.split(","))
              if k == "t"), "")
    digest = hashlib.sha256(f"{source}\0{t}\0".encode() + body).hexdigest()[:32]
    return "hook:" + digest


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
    if not isinstance(source.auth, HmacAuth):
        return await _accept(rt, source, headers, body, started)
    # The replay mark is two-phase, like a copy's dedup mark (relay.engine.marks): tentative
    # while the request is accepted, confirmed for twice the tolerance once it was. A relay
    # killed meanwhile leaves a mark that expires within seconds, so the client's retry of
    # the same signed request (on this replica or another) is accepted, not called a replay.
    key, marks = replay_key(name, headers[_SIGNATURE], body), Marks()
    window = 2 * source.auth.tolerance
    (seen,) = await claim(rt.state, marks, [key])
    if seen == "seen":
        return problem(Problem(401, f"source {name}: {REPLAYED}"))
    if seen == "busy":  # the same signed request is being accepted right now, elsewhere
        return problem(Problem(503, f"source {name}: the same signed request is being "
                               "accepted right now; retry", {"Retry-After": "1"}))
    answers: list[Answer] = []

    async def accept() -> None:
        answers.append(await _accept(rt, source, headers, body, started))

    try:
        await kept_during(rt.state, marks, accept())
    except BaseException:
        await rt.state.unmark([key], marks.token)
        raise
    answer = answers[0]
    if answer[0] >= 400:  # nothing accepted: a retry of the same request may come
        await rt.state.unmark([key], marks.token)
    else:
        await rt.state.confirm([key], window)
    return answer


async def _accept(
    rt: Runtime, source: Source, headers: Mapping[str, str], body: bytes, started: float
) -> Answer:
    relay = rt.engine.rules.relay
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
