"""A request's events through the engine into the spool, and the answer.

``accept`` is the moment events are accepted: the client hears 202 only once every copy is
in the spool (``Engine.process`` commits them with ``Spool.put``, then confirms their dedup
marks). When the spool cannot commit, the engine's tentative dedup marks are dropped and the
client gets 503, so its retry is not mistaken for a duplicate; a process that dies before
the commit leaves only tentative marks, which expire within seconds. When another copy of
one of its events is being committed right now and does not settle in time, the request is
a 503 too (``Retry-After: 1``), with nothing accepted. When the state store fails after the
commit (what the request did to consent and waiting events cannot be recorded), the answer
is a 503 as well, so the client retries: at least once, never lost.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from relay.engine.results import Batch, Meta
from relay.errors import Contended, SpoolFull, SpoolUnavailable, StateUnavailable
from relay.observe.log import LOG, hop
from relay.rules.model import Source
from relay.web import Problem

if TYPE_CHECKING:
    from relay.runtime import Runtime


async def accept(rt: Runtime, items: list[Any], meta: Meta) -> Batch | Problem:
    """Route ``items`` and commit their copies to the spool: the batch, or a Problem (503)
    when nothing was accepted."""
    spool = rt.spool
    spooled_at = 0.0

    async def put(batch: Batch) -> None:
        # Stamped before the commit: once committed, another worker or replica may take a
        # copy and record its delivery before this request's hops are out.
        nonlocal spooled_at
        spooled_at = time.time()
        await spool.put(batch.rows, batch.quarantined)

    try:
        batch = await rt.engine.process(items, meta, put)
    except SpoolFull as exc:  # the engine has dropped the request's marks
        LOG.warning("spool: full, answering 503: %s", exc)
        return Problem(503, "spool full; nothing was accepted, retry later", {"Retry-After": "5"})
    except SpoolUnavailable as exc:
        LOG.error("spool: cannot commit, answering 503: %s", exc)
        return Problem(
            503, "spool not writable; nothing was accepted, retry later", {"Retry-After": "5"}
        )
    except StateUnavailable:
        return Problem(
            503, "state store unavailable after the copies were spooled; retry (a copy may "
            "be delivered twice, none is lost)", {"Retry-After": "5"}
        )
    except Contended:
        LOG.warning("ingest: another copy of an event of the request is being committed and "
                    "did not settle in time; answering 503")
        return Problem(
            503, "another copy of an event in this request is being accepted right now; "
            "nothing was accepted, retry", {"Retry-After": "1"}
        )
    audits = {r.event_id: r.audit for r in (*batch.results, *batch.releases) if r.audit}
    for row in batch.rows:
        audit = audits.get(row.event_id)
        hop(
            "spooled",
            at=spooled_at,
            event_id=row.event_id,
            source=audit.source if audit else None,
            event=audit.event if audit else None,
            schema=audit.schema if audit else None,
            consent=audit.consent if audit else None,  # per purpose, as the copy was decided
            destination=row.destination,
            _payload=row.payload,
        )
        rt.metrics.spooled.labels(row.destination).inc()
    for dest in batch.destinations():
        rt.dispatcher.notify(dest)
    rt.debug_feed(batch)
    return batch


def ingest_answer(batch: Batch, single: bool) -> tuple[int, dict[str, Any]]:
    """The status and body that answer an ingest request: 202, or 400 when nothing in it
    was usable."""
    body: dict[str, Any] = {
        "accepted": batch.accepted,
        "duplicates": batch.duplicates,
        "rejected": batch.rejected(),
    }
    if batch.quarantined:
        body["quarantined"] = len(batch.quarantined)
    held = batch.held
    if held:
        body["held"] = held
    if batch.accepted == 0 and batch.duplicates == 0 and batch.rejected():
        if single:
            body["error"] = batch.rejected()[0]["error"]
        return 400, body
    return 202, body


async def process_trusted(
    rt: Runtime, source: Source, headers: Mapping[str, str], items: list[Any]
) -> Batch | Problem:
    """Run an authenticated source's events (webhook, Segment) through the engine and
    commit them. Their context is the user's, as sent; only the CDN's country header is
    read from the request."""
    relay = rt.engine.rules.relay
    meta = Meta(
        source=source,
        received_ms=int(time.time() * 1000),
        country=headers.get(relay.country_header.lower()) if relay.country_header else None,
        verify_correlation=rt.verify_correlation,
    )
    return await accept(rt, items, meta)
