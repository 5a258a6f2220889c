"""After the engine: commit a request's routed copies to the spool, and the answer.

``commit`` is the moment an event is accepted: the client hears 202 only once every copy is
in the spool. When the spool cannot commit, the engine's dedup marks are rolled back and the
client gets 503, so its retry is not mistaken for a duplicate.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from relay.engine.results import Batch, Meta
from relay.errors import SpoolFull, SpoolUnavailable
from relay.observe.log import LOG, hop
from relay.rules.model import Source
from relay.web import Problem

if TYPE_CHECKING:
    from relay.runtime import Runtime


async def commit(rt: Runtime, batch: Batch) -> Problem | None:
    """Commit the batch's copies to the spool; a Problem (503) when that failed."""
    try:
        await rt.spool.put(batch.rows, batch.quarantined)
    except SpoolFull as exc:
        await rt.engine.rollback(batch)
        LOG.warning("spool: full, answering 503: %s", exc)
        return Problem(503, "spool full; nothing was accepted, retry later", {"Retry-After": "5"})
    except SpoolUnavailable as exc:
        await rt.engine.rollback(batch)
        LOG.error("spool: cannot commit, answering 503: %s", exc)
        return Problem(
            503, "spool not writable; nothing was accepted, retry later", {"Retry-After": "5"}
        )
    audits = {r.event_id: r.audit for r in (*batch.results, *batch.releases) if r.audit}
    for row in batch.rows:
        audit = audits.get(row.event_id)
        hop(
            "spooled",
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
    return None


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
) -> tuple[Batch, Problem | None]:
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
    batch = await rt.engine.process(items, meta)
    return batch, await commit(rt, batch)
