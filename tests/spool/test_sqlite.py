from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay.errors import SpoolUnavailable
from relay.spool.base import DeadLetter, Quarantined, Row, iso_utc
from relay.spool.sqlite import RESPONSE_BYTES, SqliteSpool


class FakeClock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def rows(n: int, destination: str = "ga4", start: int = 0) -> list[Row]:
    return [Row(destination, f"e{i}", b'{"event":"x","event_id":"e%d"}' % i)
            for i in range(start, start + n)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def spool(tmp_path: Path, clock: FakeClock) -> AsyncIterator[SqliteSpool]:
    s = SqliteSpool(str(tmp_path / "var" / "spool.db"), clock=clock)
    await s.start()
    yield s
    await s.close()


async def pragma(spool: SqliteSpool, sql: str) -> None:
    """Run a PRAGMA on the spool's own connection (to simulate a full or read-only disk)."""
    await spool._submit(lambda conn, delta: conn.execute(sql), write=False)


async def test_creates_parent_dirs_and_uses_wal(spool: SqliteSpool, tmp_path: Path) -> None:
    assert (tmp_path / "var" / "spool.db").exists()
    with sqlite3.connect(tmp_path / "var" / "spool.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert spool.writable()


async def test_concurrent_puts_share_commits(spool: SqliteSpool) -> None:
    before = spool.commits
    await asyncio.gather(*(spool.put(rows(1, start=i)) for i in range(200)))
    commits = spool.commits - before
    assert 1 <= commits <= 20, commits  # group commit: far fewer commits than puts
    assert spool.depths() == ({"ga4": 200}, {})
    claimed = await spool.claim("ga4", 500, 30)
    assert sorted(c.event_id for c in claimed) == sorted(f"e{i}" for i in range(200))


async def test_rows_survive_close_and_reopen(tmp_path: Path, clock: FakeClock) -> None:
    path = str(tmp_path / "spool.db")
    first = SqliteSpool(path, clock=clock)
    await first.start()
    held = Quarantined("browser", "oops", "no contract", b"{}")
    await first.put(rows(3) + rows(2, "meta"), [held])
    await first.close()
    with pytest.raises(SpoolUnavailable):
        await first.put(rows(1))

    again = SqliteSpool(path, clock=clock)
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


async def drain(spool: SqliteSpool, limit: int = 7) -> list[int]:
    got: list[int] = []
    while claimed := await spool.claim("ga4", limit, 60):
        got.extend(c.id for c in claimed)
    return got


async def test_claim_is_exclusive_across_spools_on_one_file(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    a, b = SqliteSpool(path), SqliteSpool(path)
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
from relay.spool.sqlite import SqliteSpool

async def main():
    spool = SqliteSpool(sys.argv[1])
    await spool.start()
    while claimed := await spool.claim("ga4", 3, 60):
        print(*(c.id for c in claimed))
    await spool.close()

asyncio.run(main())
"""


async def test_claim_is_exclusive_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    spool = SqliteSpool(path)
    await spool.start()
    await spool.put(rows(600))
    await spool.close()
    root = Path(__file__).resolve().parents[2]
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", DRAIN_SCRIPT, path, cwd=root, stdout=asyncio.subprocess.PIPE)
        for _ in range(3)]
    outputs = [(await p.communicate())[0].decode().split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    everything = [int(i) for out in outputs for i in out]
    assert len(everything) == len(set(everything)) == 600


async def test_lease_hides_rows_until_it_expires(spool: SqliteSpool, clock: FakeClock) -> None:
    await spool.put(rows(2))
    first = await spool.claim("ga4", 10, lease=30)
    assert len(first) == 2
    assert await spool.claim("ga4", 10, lease=30) == []
    assert await spool.next_due("ga4") is None  # nothing unleased is waiting
    clock.t += 31
    assert [c.id for c in await spool.claim("ga4", 10, lease=30)] == [c.id for c in first]
    assert await spool.release_leases() == 2
    assert len(await spool.claim("ga4", 1, lease=30)) == 1


async def test_claim_is_per_destination_and_in_order(spool: SqliteSpool) -> None:
    await spool.put(rows(3, "ga4") + rows(3, "meta"))
    claimed = await spool.claim("meta", 2, 30)
    assert [(c.destination, c.event_id) for c in claimed] == [("meta", "e0"), ("meta", "e1")]


async def test_retry_and_ack(spool: SqliteSpool, clock: FakeClock) -> None:
    await spool.put(rows(2))
    claimed = await spool.claim("ga4", 10, 30)
    await spool.retry([c.id for c in claimed], clock.t + 60, "HTTP 503: busy")
    assert await spool.next_due("ga4") == clock.t + 60
    assert await spool.claim("ga4", 10, 30) == []  # not due yet, lease cleared
    clock.t += 60
    again = await spool.claim("ga4", 10, 30)
    assert [c.attempts for c in again] == [1, 1]
    await spool.ack([again[0].id])
    assert spool.depths() == ({"ga4": 1}, {})
    await spool.ack([again[0].id])  # acking twice changes nothing
    assert spool.depths() == ({"ga4": 1}, {})


async def test_dead_letters_list_replay_purge(spool: SqliteSpool, clock: FakeClock) -> None:
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


async def test_dead_skips_rows_already_gone(spool: SqliteSpool) -> None:
    await spool.put(rows(2))
    claimed = await spool.claim("ga4", 10, 30)
    await spool.ack([claimed[0].id])  # delivered by another process meanwhile
    await spool.dead(claimed, 500, "HTTP 500: x", attempts=10)
    assert [d.event_id for d in await spool.dlq_list()] == ["e1"]


async def test_put_raises_when_the_file_is_locked(tmp_path: Path) -> None:
    path = str(tmp_path / "spool.db")
    spool = SqliteSpool(path, busy_timeout=0.05)
    await spool.start()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(SpoolUnavailable, match="locked"):
            await spool.put(rows(1))
        assert not spool.writable()
        other.execute("ROLLBACK")
        await spool.put(rows(1, start=1))
        assert spool.writable()
        assert [c.event_id for c in await spool.claim("ga4", 10, 30)] == ["e1"]
        assert spool.depths() == ({"ga4": 1}, {})
    finally:
        other.close()
        await spool.close()


async def test_put_raises_when_the_disk_is_full(spool: SqliteSpool) -> None:
    await spool.put(rows(1))
    await pragma(spool, "PRAGMA max_page_count = 1")  # below the file's size: nothing fits
    big = [Row("ga4", "big", b"x" * 100_000)]
    with pytest.raises(SpoolUnavailable, match="full"):
        await spool.put(big)
    assert not spool.writable()
    await pragma(spool, "PRAGMA max_page_count = 1073741823")
    await spool.put(rows(1, start=1))
    assert spool.writable()
    assert [c.event_id for c in await spool.claim("ga4", 10, 30)] == ["e0", "e1"]


async def test_put_raises_when_the_database_is_read_only(spool: SqliteSpool) -> None:
    await pragma(spool, "PRAGMA query_only = 1")
    with pytest.raises(SpoolUnavailable, match="readonly"):
        await spool.put(rows(1))
    await pragma(spool, "PRAGMA query_only = 0")
    assert spool.depths() == ({}, {})
    assert await spool.claim("ga4", 10, 30) == []


async def test_start_raises_when_the_directory_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    spool = SqliteSpool(str(tmp_path / "file" / "spool.db"))
    with pytest.raises(SpoolUnavailable):
        await spool.start()
    assert not spool.writable()
    with pytest.raises(SpoolUnavailable):
        await spool.put(rows(1))


async def test_one_failing_put_does_not_undo_the_others(spool: SqliteSpool) -> None:
    bad = [Row("ga4", "bad", None)]  # type: ignore[arg-type]  # NOT NULL payload
    results = await asyncio.gather(
        spool.put(rows(1)), spool.put(bad), spool.put(rows(1, start=1)), return_exceptions=True)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], SpoolUnavailable)
    assert [c.event_id for c in await spool.claim("ga4", 10, 30)] == ["e0", "e1"]
    assert spool.depths() == ({"ga4": 2}, {})


async def test_depths_do_no_io(spool: SqliteSpool) -> None:
    await spool.put(rows(2))
    await spool.close()
    assert spool.depths() == ({"ga4": 2}, {})  # still answers from memory


async def test_dlq_count_and_purge_through_what_was_counted(
        spool: SqliteSpool, clock: FakeClock) -> None:
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
        tmp_path: Path, clock: FakeClock) -> None:
    path = str(tmp_path / "shared.db")
    a, b = SqliteSpool(path, clock=clock), SqliteSpool(path, clock=clock)
    await a.start()
    await b.start()
    try:
        await a.put(rows(2, "ga4"))
        clock.t += 30
        await b.put(rows(3, "meta"))  # another worker's copies: a's memory does not know
        await a.put(rows(1, "ga4", start=2))
        assert a.depths() == ({"ga4": 3}, {})
        stats = await a.stats()
        assert a.depths() == ({"ga4": 3, "meta": 3}, {})  # recounted from the file
        assert stats.oldest == {"ga4": 1_000_000.0, "meta": 1_000_030.0}
        size = stats.size or 0
        assert size >= (tmp_path / "shared.db").stat().st_size > 0
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


async def test_a_full_spool_refuses_puts_keeps_what_it_holds_and_drains(
        tmp_path: Path) -> None:
    from relay.errors import SpoolFull

    limit = 1024 * 1024
    s = SqliteSpool(str(tmp_path / "full.db"), max_bytes=limit)
    await s.start()
    try:
        big = b"x" * 4000
        held = 0
        with pytest.raises(SpoolFull, match="spool_max_bytes"):
            for i in range(10_000):  # ~40 MB at most: the limit stops it long before
                await s.put([Row("ga4", f"e{i}", big)])
                held += 1
        assert 200 < held < 300, held  # about 1 MiB of 4 kB rows
        assert s.depths() == ({"ga4": held}, {})  # nothing already spooled was dropped
        claimed = await s.claim("ga4", held, 30)
        assert len(claimed) == held
        await s.ack([c.id for c in claimed[: held // 2]])  # delivery frees pages
        await s.put([Row("ga4", "after", big)])  # below the limit again: accepted
        assert s.depths() == ({"ga4": held - held // 2 + 1}, {})
    finally:
        await s.close()
