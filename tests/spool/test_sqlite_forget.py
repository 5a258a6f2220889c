"""``SqliteSpool.forget``: every copy of a person's events goes, and nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from relay.spool.base import Forgotten, Quarantined, Row
from relay.spool.sqlite import SqliteSpool


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[SqliteSpool]:
    s = SqliteSpool(str(tmp_path / "spool.db"))
    await s.start()
    yield s
    await s.close()


def row(destination: str, event_id: str) -> Row:
    return Row(destination, event_id, orjson.dumps({"event_id": event_id}))


def quarantined(event_id: str | None) -> Quarantined:
    body = {"event": "x", "user": {"email": "[email:1a2b]"}}
    if event_id is not None:
        body["event_id"] = event_id
    return Quarantined("browser", "x", "no contract", orjson.dumps(body))


async def test_forget_deletes_outbox_rows_dead_letters_and_quarantine(spool: SqliteSpool) -> None:
    await spool.put([row("ga4", "e1"), row("posthog", "e1"), row("ga4", "e2"), row("ga4", "e3")],
                    [quarantined("e2"), quarantined("e9"), quarantined(None)])
    claimed = await spool.claim("ga4", 10, 30)
    await spool.dead([c for c in claimed if c.event_id == "e2"], 400, "bad", 1)

    gone = await spool.forget(["e1", "e2", "unknown"])

    assert gone == Forgotten(spool=2, dead_letters=1, quarantined=1)
    await spool.release_leases()
    assert [c.event_id for c in await spool.claim("ga4", 10, 30)] == ["e3"]
    assert await spool.claim("posthog", 10, 30) == []
    assert await spool.dlq_list() == []
    kept = await spool.quarantine_list()
    assert [orjson.loads(q["payload"]).get("event_id") for q in kept] == ["e9", None]
    assert spool.depths() == ({"ga4": 1, "posthog": 0}, {"ga4": 0})


async def test_forget_of_nothing_touches_nothing(spool: SqliteSpool) -> None:
    await spool.put([row("ga4", "e1")])
    assert await spool.forget([]) == Forgotten()
    assert await spool.forget(["e2"]) == Forgotten()
    assert spool.depths() == ({"ga4": 1}, {})


async def test_forget_skips_a_quarantined_copy_that_is_not_json(spool: SqliteSpool) -> None:
    await spool.put([], [Quarantined("browser", "x", "bad", b"not json"), quarantined("e1")])
    assert await spool.forget(["e1"]) == Forgotten(quarantined=1)
    assert len(await spool.quarantine_list()) == 1
