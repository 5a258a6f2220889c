"""What only the SQLite spool does (the shared behaviour is in test_spool.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay.errors import SpoolUnavailable
from relay.spool.base import Row
from relay.spool.sqlite import SqliteSpool
from tests.spool.conftest import FakeClock, rows


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


async def test_stats_size_is_the_file_and_its_wal(spool: SqliteSpool, tmp_path: Path) -> None:
    await spool.put(rows(3))
    size = (await spool.stats()).size or 0
    assert size >= (tmp_path / "var" / "spool.db").stat().st_size > 0


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
