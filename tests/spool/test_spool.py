"""The spool's behaviour, the same on every backend: each test runs on SQLite and on Redis
(``store`` in conftest). What only one backend does is in test_sqlite.py / test_redis.py."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from relay.errors import SpoolUnavailable
from relay.spool.base import DeadLetter, Forgotten, Quarantined, Row, iso_utc
from relay.spool.sqlite import RESPONSE_BYTES
from tests.spool.conftest import FakeClock, Store, rows


@pytest.fixture
async def spool(store: Store, clock: FakeClock) -> AsyncIterator[Any]:
    s = store.open(clock)
    await s.start()
    yield s
    await s.close()


async def test_concurrent_puts_share_commits(spool: Any) -> None:
    before = spool.commits
    await asyncio.gather(*(spool.put(rows(1, start=i)) for i in range(200)))
    commits = spool.commits - before
    assert 1 <= commits <= 20, commits  # group commit: far fewer commits than puts
    assert spool.depths() == ({"ga4": 200}, {})
    claimed = await spool.claim("ga4", 500, 30)
    assert sorted(c.event_id for c in claimed) == sorted(f"e{i}" for i in range(200))
    assert spool.writable()


async def test_rows_survive_close_and_reopen(store: Store, clock: FakeClock) -> None:
    first = store.open(clock)
    await first.start()
    held = Quarantined("browser", "oops", "no contract", b"{}")
    await first.put(rows(3) + rows(2, "meta"), [held])
    await first.close()
    with pytest.raises(SpoolUnavailable):
        await first.put(rows(1))

    again = store.open(clock)
    await again.start()
    try:
        assert again.depths() == ({"ga4": 3, "meta": 2}, {})  # counted at start
        claimed = await again.claim("ga4", 10, 30)
        assert [c.event_id for c in claimed] == ["e0", "e1", "e2"]
        assert claimed[0].payload == b'{"event":"x","event_id":"e0"}'
        assert claimed[0].attempts == 0 and claimed[0].created_at == clock.t
        quarantined = await again.quarantine_list()
        assert [(q["source"], q["event"], q["error"]) for q in quarantined] == [
            ("browser", "oops", "no contract")]
        assert quarantined[0]["received_at_iso"] == iso_utc(quarantined[0]["received_at"])
        assert quarantined[0]["received_at_iso"].endswith("Z")
    finally:
        await again.close()


async def drain(spool: Any, limit: int = 7) -> list[int]:
    got: list[int] = []
    while claimed := await spool.claim("ga4", limit, 60):
        got.extend(c.id for c in claimed)
    return got


async def test_claim_is_exclusive_across_spools_on_one_store(store: Store) -> None:
    a, b = store.open(), store.open()
    await a.start()
    await b.start()
    try:
        await a.put(rows(300))
        results = await asyncio.gather(drain(a), drain(b), drain(a), drain(b))
        everything = [i for got in results for i in got]
        assert len(everything) == len(set(everything)) == 300
    finally:
        await a.close()
        await b.close()


DRAIN_SCRIPT = """
import asyncio, sys
from relay.spool.factory import open_spool

async def main():
    spool = open_spool(sys.argv[1])
    await spool.start()
    while claimed := await spool.claim("ga4", 3, 60):
        print(*(c.id for c in claimed))
    await spool.close()

asyncio.run(main())
"""


async def test_claim_is_exclusive_across_processes(store: Store) -> None:
    spool = store.open()
    await spool.start()
    await spool.put(rows(600))
    await spool.close()
    root = Path(__file__).resolve().parents[2]
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", DRAIN_SCRIPT, store.url, cwd=root, stdout=asyncio.subprocess.PIPE)
        for _ in range(3)]
    outputs = [(await p.communicate())[0].decode().split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    everything = [int(i) for out in outputs for i in out]
    assert len(everything) == len(set(everything)) == 600


async def test_a_claim_hides_rows_from_the_next_claim(spool: Any) -> None:
    await spool.put(rows(2))
    assert len(await spool.claim("ga4", 10, lease=30)) == 2
    assert await spool.claim("ga4", 10, lease=30) == []
    assert await spool.next_due("ga4") is None  # nothing unleased is waiting


async def test_claim_is_per_destination_and_in_order(spool: Any) -> None:
    await spool.put(rows(3, "ga4") + rows(3, "meta"))
    claimed = await spool.claim("meta", 2, 30)
    assert [(c.destination, c.event_id) for c in claimed] == [("meta", "e0"), ("meta", "e1")]


async def test_retry_and_ack(spool: Any, clock: FakeClock) -> None:
    await spool.put(rows(2))
    claimed = await spool.claim("ga4", 10, 30)
    await spool.retry([c.id for c in claimed], clock.t + 60, "HTTP 503: busy")
    assert await spool.next_due("ga4") == clock.t + 60
    assert await spool.claim("ga4", 10, 30) == []  # not due yet, lease cleared
    assert spool.depths() == ({"ga4": 2}, {})  # still waiting
    clock.t += 60
    again = await spool.claim("ga4", 10, 30)
    assert [c.attempts for c in again] == [1, 1]
    assert [c.created_at for c in again] == [clock.t - 60] * 2  # first spooled, kept
    await spool.ack([again[0].id])
    assert spool.depths() == ({"ga4": 1}, {})
    await spool.ack([again[0].id])  # acking twice changes nothing
    assert spool.depths() == ({"ga4": 1}, {})


async def test_dead_letters_list_replay_purge(spool: Any, clock: FakeClock) -> None:
    await spool.put(rows(2, "ga4") + rows(1, "meta"))
    ga4 = await spool.claim("ga4", 10, 30)
    meta = await spool.claim("meta", 10, 30)
    answer = "HTTP 400: " + "x" * 5000
    clock.t += 5
    await spool.dead(ga4, 400, answer, attempts=1)
    await spool.dead(meta, None, "timeout after 10s", attempts=10)
    assert spool.depths() == ({"ga4": 0, "meta": 0}, {"ga4": 2, "meta": 1})

    letters = await spool.dlq_list("ga4")
    assert [d.event_id for d in letters] == ["e0", "e1"]
    assert letters[0].status == 400 and letters[0].attempts == 1
    assert letters[0].failed_at == clock.t and letters[0].payload == ga4[0].payload
    assert len(letters[0].response.encode()) == RESPONSE_BYTES
    assert letters[0].response.startswith("HTTP 400: xxx")
    assert len(await spool.dlq_list()) == 3
    assert [d.status for d in await spool.dlq_list("meta")] == [None]
    assert len(await spool.dlq_list(limit=1)) == 1

    clock.t += 100
    assert await spool.dlq_replay("ga4") == 2
    assert spool.depths() == ({"ga4": 2, "meta": 0}, {"ga4": 0, "meta": 1})
    replayed = await spool.claim("ga4", 10, 30)
    assert [(c.event_id, c.attempts, c.created_at) for c in replayed] == [
        ("e0", 0, clock.t), ("e1", 0, clock.t)]
    assert await spool.dlq_purge("ga4") == 0
    assert await spool.dlq_purge() == 1
    assert await spool.dlq_list() == []
    assert spool.depths()[1] == {"ga4": 0, "meta": 0}


async def test_dead_skips_rows_already_gone(spool: Any) -> None:
    await spool.put(rows(2))
    claimed = await spool.claim("ga4", 10, 30)
    await spool.ack([claimed[0].id])  # delivered by another process meanwhile
    await spool.dead(claimed, 500, "HTTP 500: x", attempts=10)
    assert [d.event_id for d in await spool.dlq_list()] == ["e1"]


async def test_one_failing_put_does_not_undo_the_others(spool: Any) -> None:
    bad = [Row("ga4", "bad", None)]  # type: ignore[arg-type]  # no payload
    results = await asyncio.gather(
        spool.put(rows(1)), spool.put(bad), spool.put(rows(1, start=1)), return_exceptions=True)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], SpoolUnavailable)
    assert [c.event_id for c in await spool.claim("ga4", 10, 30)] == ["e0", "e1"]
    assert spool.depths() == ({"ga4": 2}, {})


async def test_depths_do_no_io(spool: Any) -> None:
    await spool.put(rows(2))
    await spool.close()
    assert spool.depths() == ({"ga4": 2}, {})  # still answers from memory


async def test_dlq_count_and_purge_through_what_was_counted(spool: Any) -> None:
    """``relay dlq purge`` counts, asks, then purges only what it counted: a copy that
    fails while the user reads the question is kept."""
    assert await spool.dlq_count() == (0, 0)
    await spool.put(rows(2, "ga4") + rows(1, "meta"))
    await spool.dead(await spool.claim("ga4", 10, 30), 400, "no", attempts=1)
    await spool.dead(await spool.claim("meta", 10, 30), 400, "no", attempts=1)
    count, last = await spool.dlq_count()
    assert count == 3
    assert (await spool.dlq_count("ga4"))[0] == 2 and (await spool.dlq_count("x")) == (0, 0)
    await spool.put(rows(1, "ga4", start=10))
    await spool.dead(await spool.claim("ga4", 10, 30), 500, "later", attempts=3)  # meanwhile
    assert await spool.dlq_purge("ga4", through=last) == 2
    assert await spool.dlq_purge(through=last) == 1  # meta's
    [kept] = await spool.dlq_list()
    assert kept.response == "later" and kept.id > last
    assert spool.depths()[1] == {"ga4": 1, "meta": 0}


def test_summaries_carry_iso_times_next_to_the_numbers() -> None:
    letter = DeadLetter(7, "ga4", "e1", b"{}", 0.0, 1795867200.25, 3, 400, "no")
    summary = letter.summary()
    assert summary["failed_at"] == 1795867200.25
    assert summary["failed_at_iso"] == "2026-11-28T12:00:00.250Z"
    assert "payload" not in summary


async def test_stats_count_what_other_spools_did_and_find_the_oldest_copy(
        store: Store, clock: FakeClock) -> None:
    a, b = store.open(clock), store.open(clock)
    await a.start()
    await b.start()
    try:
        await a.put(rows(2, "ga4"))
        clock.t += 30
        await b.put(rows(3, "meta"))  # another worker's copies: a's memory does not know
        await a.put(rows(1, "ga4", start=2))
        assert a.depths() == ({"ga4": 3}, {})
        stats = await a.stats()
        assert a.depths() == ({"ga4": 3, "meta": 3}, {})  # recounted from the storage
        assert stats.oldest == {"ga4": 1_000_000.0, "meta": 1_000_030.0}
        first = await b.claim("ga4", 2, 30)  # the two oldest ga4 copies, delivered
        await b.ack([c.id for c in first])
        claimed = await b.claim("meta", 10, 30)
        await b.dead(claimed, 400, "no", 1)
        stats = await a.stats()
        assert stats.oldest == {"ga4": 1_000_030.0}  # meta has none waiting
        assert a.depths() == ({"ga4": 1, "meta": 0}, {"meta": 3})
    finally:
        await a.close()
        await b.close()


# -- forget ---------------------------------------------------------------------------

def row(destination: str, event_id: str) -> Row:
    return Row(destination, event_id, orjson.dumps({"event_id": event_id}))


def quarantined(event_id: str | None) -> Quarantined:
    body = {"event": "x", "user": {"email": "[email:1a2b]"}}
    if event_id is not None:
        body["event_id"] = event_id
    return Quarantined("browser", "x", "no contract", orjson.dumps(body))


async def test_forget_deletes_outbox_rows_dead_letters_and_quarantine(spool: Any) -> None:
    await spool.put([row("ga4", "e1"), row("posthog", "e1"), row("ga4", "e2"), row("ga4", "e3"),
                     row("ga4", "e4")],
                    [quarantined("e2"), quarantined("e9"), quarantined(None)])
    claimed = await spool.claim("ga4", 10, 30)
    await spool.dead([c for c in claimed if c.event_id == "e2"], 400, "bad", 1)
    await spool.retry([c.id for c in claimed if c.event_id == "e4"], 0, "HTTP 503")

    gone = await spool.forget(["e1", "e2", "e4", "unknown"])

    assert gone == Forgotten(spool=3, dead_letters=1, quarantined=1)
    await spool.release_leases()
    assert [c.event_id for c in await spool.claim("ga4", 10, 30)] == ["e3"]
    assert await spool.claim("posthog", 10, 30) == []
    assert await spool.dlq_list() == []
    kept = await spool.quarantine_list()
    assert [orjson.loads(q["payload"]).get("event_id") for q in kept] == ["e9", None]
    assert spool.depths() == ({"ga4": 1, "posthog": 0}, {"ga4": 0})


async def test_forget_of_nothing_touches_nothing(spool: Any) -> None:
    await spool.put([row("ga4", "e1")])
    assert await spool.forget([]) == Forgotten()
    assert await spool.forget(["e2"]) == Forgotten()
    assert spool.depths() == ({"ga4": 1}, {})


async def test_forget_skips_a_quarantined_copy_that_is_not_json(spool: Any) -> None:
    await spool.put([], [Quarantined("browser", "x", "bad", b"not json"), quarantined("e1")])
    assert await spool.forget(["e1"]) == Forgotten(quarantined=1)
    assert len(await spool.quarantine_list()) == 1
