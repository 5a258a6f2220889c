"""``SqliteSpool``: the spool's operations as SQL, run by the ``Committer``'s thread.

Ids are AUTOINCREMENT, never reused, so a late ``ack`` from a process whose lease expired
cannot delete a newer row.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from relay.errors import SpoolFull
from relay.spool.base import (
    Claimed,
    DeadLetter,
    Forgotten,
    Quarantined,
    Row,
    SpoolStats,
    iso_utc,
)
from relay.spool.group import GroupCommit
from relay.spool.sqlite.depths import RECOUNT_EVERY, Delta, Depths
from relay.spool.sqlite.schema import CLAIMED, DEAD, IDS, SCHEMA, trim
from relay.spool.sqlite.schema import ids as id_list
from relay.spool.sqlite.schema import where as where_clause
from relay.sqlite import Committer, Work

BUSY_TIMEOUT = 5.0  # seconds to wait for another process's write lock before giving up


def _used_bytes(conn: sqlite3.Connection) -> int:
    """The bytes the database's pages hold (the WAL's newest pages counted): pages freed by
    delivered copies are reused, so this falls as the outbox drains, unlike the file size."""
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    return (pages - free) * size


class SqliteSpool:
    """The ``relay.spool.base.Spool`` on one SQLite file; ``path`` may be relative (to the
    working directory). ``clock`` gives unix seconds (tests pass a fake one)."""

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float = BUSY_TIMEOUT,
        clock: Callable[[], float] = time.time,
        max_bytes: int | None = None,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes  # relay.spool_max_bytes: new puts refused at this size
        self._clock = clock
        self._depths = Depths()
        self._committer: Committer[Delta] = Committer(
            path,
            busy_timeout,
            SCHEMA,
            Delta,
            on_commit=self._depths.apply,
            maintain=self._depths.recount,
            maintain_every=RECOUNT_EVERY,
        )
        self._group = GroupCommit(self._insert)

    @property
    def commits(self) -> int:
        """Transactions committed: group commit makes this far below the puts."""
        return self._committer.commits

    async def start(self) -> None:
        """Open (creating the file, its parent directories and the tables). Raises
        ``SpoolUnavailable`` when the file cannot be opened for writing."""
        await self._committer.start()

    async def close(self) -> None:
        """Run what is queued, then close; later calls raise ``SpoolUnavailable``."""
        await self._committer.close()

    def writable(self) -> bool:
        return self._committer.writable()

    def depths(self) -> tuple[dict[str, int], dict[str, int]]:
        return self._depths.read()

    async def stats(self) -> SpoolStats:
        def work(conn: sqlite3.Connection, delta: Delta) -> SpoolStats:
            self._depths.recount(conn)
            size = 0
            for path in (self.path, f"{self.path}-wal"):
                with contextlib.suppress(OSError):
                    size += os.path.getsize(path)
            return SpoolStats(self._depths.oldest(), size)

        result: SpoolStats = await self._submit(work, write=False)
        return result

    async def _submit(self, work: Work, *, write: bool = True) -> Any:
        return await self._committer.submit(work, write=write)

    # -- the outbox -------------------------------------------------------------------

    async def put(self, rows: Sequence[Row], quarantined: Sequence[Quarantined] = ()) -> None:
        """Commit ``rows`` and ``quarantined``, all or none.

        Puts made in the same turn of the event loop travel to the spool thread as ONE
        operation (one queue hand-off, one savepoint) and share its fate: handing each
        request's rows over on its own costs more in thread switches than the commit itself.
        """
        await self._group.put(rows, quarantined)

    async def _insert(self, rows: Sequence[Row], quarantined: Sequence[Quarantined]) -> None:
        now = self._clock()
        outbox = [(r.destination, r.event_id, r.payload, now, now) for r in rows]
        held = [(q.source, q.event, q.error, q.payload, now) for q in quarantined]
        added = Counter(r.destination for r in rows)

        def work(conn: sqlite3.Connection, delta: Delta) -> None:
            if self.max_bytes is not None and _used_bytes(conn) >= self.max_bytes:
                raise SpoolFull(f"spool {self.path}: full at relay.spool_max_bytes"
                                f" ({self.max_bytes} bytes); delivery frees room")
            conn.executemany(
                "INSERT INTO outbox (destination, event_id, payload, created_at, next_at)"
                " VALUES (?, ?, ?, ?, ?)",
                outbox,
            )
            conn.executemany(
                "INSERT INTO quarantine (source, event, error, payload, received_at)"
                " VALUES (?, ?, ?, ?, ?)",
                held,
            )
            delta.spool.update(added)

        await self._submit(work)

    async def claim(self, destination: str, limit: int, lease: float) -> list[Claimed]:
        def work(conn: sqlite3.Connection, delta: Delta) -> list[Claimed]:
            now = self._clock()
            rows = conn.execute(
                f"UPDATE outbox SET lease_until = ? WHERE id IN (SELECT id FROM outbox"
                f" WHERE destination = ? AND next_at <= ? AND lease_until <= ?"
                f" ORDER BY next_at, id LIMIT ?) RETURNING {CLAIMED}",
                (now + lease, destination, now, now, limit),
            ).fetchall()
            return sorted((Claimed(*row) for row in rows), key=lambda c: c.id)

        result: list[Claimed] = await self._submit(work)
        return result

    async def ack(self, ids: Sequence[int]) -> None:
        if not ids:
            return

        def work(conn: sqlite3.Connection, delta: Delta) -> None:
            gone = conn.execute(
                f"DELETE FROM outbox WHERE {IDS} RETURNING destination", (id_list(ids),)
            ).fetchall()
            delta.spool.subtract(dest for (dest,) in gone)

        await self._submit(work)

    async def retry(self, ids: Sequence[int], next_at: float, error: str) -> None:
        if not ids:
            return
        params = (next_at, trim(error), id_list(ids))

        def work(conn: sqlite3.Connection, delta: Delta) -> None:
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_at = ?, lease_until = 0,"
                f" last_error = ? WHERE {IDS}",
                params,
            )

        await self._submit(work)

    async def dead(
        self, rows: Sequence[Claimed], status: int | None, response: str, attempts: int
    ) -> None:
        if not rows:
            return
        response = trim(response)

        def work(conn: sqlite3.Connection, delta: Delta) -> None:
            # Only rows still in the outbox: another process may have delivered one meanwhile.
            gone = {
                i
                for (i,) in conn.execute(
                    f"DELETE FROM outbox WHERE {IDS} RETURNING id", (id_list([r.id for r in rows]),)
                )
            }
            now = self._clock()
            moved = [r for r in rows if r.id in gone]
            conn.executemany(
                "INSERT INTO dead (destination, event_id, payload, created_at, failed_at,"
                " attempts, status, response) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.destination,
                        r.event_id,
                        r.payload,
                        r.created_at,
                        now,
                        attempts,
                        status,
                        response,
                    )
                    for r in moved
                ],
            )
            delta.spool.subtract(r.destination for r in moved)
            delta.dlq.update(r.destination for r in moved)

        await self._submit(work)

    async def release_leases(self) -> int:
        def work(conn: sqlite3.Connection, delta: Delta) -> int:
            return conn.execute("UPDATE outbox SET lease_until = 0 WHERE lease_until > 0").rowcount

        result: int = await self._submit(work)
        return result

    async def next_due(self, destination: str) -> float | None:
        """When the earliest row that is not leased becomes due (None: nothing waiting)."""

        def work(conn: sqlite3.Connection, delta: Delta) -> float | None:
            row = conn.execute(
                "SELECT next_at FROM outbox WHERE destination = ? AND lease_until <= ?"
                " ORDER BY next_at LIMIT 1",
                (destination, self._clock()),
            ).fetchone()
            return None if row is None else float(row[0])

        result: float | None = await self._submit(work, write=False)
        return result

    # -- dead letters and quarantine --------------------------------------------------

    async def dlq_list(self, destination: str | None = None, limit: int = 100) -> list[DeadLetter]:
        where, args = where_clause(destination)

        def work(conn: sqlite3.Connection, delta: Delta) -> list[DeadLetter]:
            rows = conn.execute(
                f"SELECT {DEAD} FROM dead{where} ORDER BY id LIMIT ?", (*args, limit)
            )
            return [DeadLetter(*row) for row in rows]

        result: list[DeadLetter] = await self._submit(work, write=False)
        return result

    async def dlq_replay(self, destination: str | None = None) -> int:
        """Move dead letters back to the outbox, due now, with no attempts and a fresh
        ``created_at`` (so ``max_age`` counts from the replay)."""
        where, args = where_clause(destination)

        def work(conn: sqlite3.Connection, delta: Delta) -> int:
            rows = conn.execute(
                f"SELECT destination, event_id, payload FROM dead{where} ORDER BY id", args
            ).fetchall()
            conn.execute(f"DELETE FROM dead{where}", args)
            now = self._clock()
            conn.executemany(
                "INSERT INTO outbox (destination, event_id, payload, created_at, next_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [(*row, now, now) for row in rows],
            )
            delta.dlq.subtract(dest for dest, _, _ in rows)
            delta.spool.update(dest for dest, _, _ in rows)
            return len(rows)

        result: int = await self._submit(work)
        return result

    async def dlq_count(self, destination: str | None = None) -> tuple[int, int]:
        where, args = where_clause(destination)

        def work(conn: sqlite3.Connection, delta: Delta) -> tuple[int, int]:
            query = f"SELECT COUNT(*), MAX(id) FROM dead{where}"
            count, last = conn.execute(query, args).fetchone()
            return int(count), int(last or 0)

        result: tuple[int, int] = await self._submit(work, write=False)
        return result

    async def dlq_purge(self, destination: str | None = None, through: int | None = None) -> int:
        """Delete dead letters; with ``through``, only those up to that id (what the user
        confirmed, not what failed since)."""
        where, args = where_clause(destination)
        params: tuple[str | int, ...] = args
        if through is not None:
            where += (" AND" if where else " WHERE") + " id <= ?"
            params = (*args, through)

        def work(conn: sqlite3.Connection, delta: Delta) -> int:
            gone = conn.execute(f"DELETE FROM dead{where} RETURNING destination",
                                params).fetchall()
            delta.dlq.subtract(dest for (dest,) in gone)
            return len(gone)

        result: int = await self._submit(work)
        return result

    async def quarantine_list(self, limit: int = 100) -> list[dict[str, Any]]:
        def work(conn: sqlite3.Connection, delta: Delta) -> list[dict[str, Any]]:
            rows = conn.execute(
                "SELECT id, source, event, error, payload, received_at FROM quarantine"
                " ORDER BY id LIMIT ?",
                (limit,),
            )
            return [
                {
                    "id": i,
                    "source": source,
                    "event": event,
                    "error": error,
                    "payload": bytes(payload).decode(errors="replace"),
                    "received_at": received,
                    "received_at_iso": iso_utc(received),
                }
                for i, source, event, error, payload, received in rows
            ]

        result: list[dict[str, Any]] = await self._submit(work, write=False)
        return result

    # -- forgetting a person ----------------------------------------------------------

    async def forget(self, event_ids: Sequence[str]) -> Forgotten:
        """Delete the outbox rows, dead letters and quarantined events of ``event_ids``, in
        one transaction. A row a worker is sending right now goes too: its ``ack`` then
        finds nothing (the vendor's copy is the vendor's deletion's business)."""
        if not event_ids:
            return Forgotten()
        param = orjson.dumps(sorted(set(event_ids))).decode()

        def work(conn: sqlite3.Connection, delta: Delta) -> Forgotten:
            wanted = "event_id IN (SELECT value FROM json_each(?))"
            outbox = conn.execute(f"DELETE FROM outbox WHERE {wanted} RETURNING destination",
                                  (param,)).fetchall()
            dead = conn.execute(f"DELETE FROM dead WHERE {wanted} RETURNING destination",
                                (param,)).fetchall()
            # A quarantined event is kept as its masked copy, which keeps the event id.
            held = conn.execute(
                "DELETE FROM quarantine WHERE json_valid(CAST(payload AS TEXT)) AND"
                " json_extract(CAST(payload AS TEXT), '$.event_id') IN"
                " (SELECT value FROM json_each(?))", (param,)).rowcount
            delta.spool.subtract(d for (d,) in outbox)
            delta.dlq.subtract(d for (d,) in dead)
            return Forgotten(len(outbox), len(dead), int(held))

        result: Forgotten = await self._submit(work)
        return result
