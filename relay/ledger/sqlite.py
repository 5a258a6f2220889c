"""``SqliteLedger``: the delivery ledger in a SQLite file (``relay.ledger.url``, by default
``var/ledger.db``), written by its own ``relay.sqlite.Committer`` thread.

Hops are buffered and turned into rows on the event loop (``relay.ledger.base.Buffered``;
Python on the ledger's thread would contend for the GIL and cost more than the work
itself); each batch goes to the ledger's thread as one operation, and the thread's group
commit writes many of those in one transaction. Long reads (``scan``: ``relay reconcile``)
run on a read-only connection of their own, beside the writer (WAL).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from relay.ledger.base import COPIES, PRUNE_EVERY, Buffered, LedgerUnreadable, Rows, Scanned
from relay.sqlite import Committer

T = TypeVar("T")

BUSY_TIMEOUT = 5.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS hop_groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT,
    at REAL NOT NULL,
    hops TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS hop_groups_event ON hop_groups (event_id);
CREATE INDEX IF NOT EXISTS hop_groups_at ON hop_groups (at);
CREATE TABLE IF NOT EXISTS people (
    subject TEXT NOT NULL,
    event_id TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (subject, event_id)
);
CREATE INDEX IF NOT EXISTS people_event ON people (event_id);
CREATE VIEW IF NOT EXISTS hops AS
SELECT g.id * 1000 + j.key AS id,
       json_extract(j.value, '$.at') AS at,
       g.event_id AS event_id,
       json_extract(j.value, '$.hop') AS hop,
       json_extract(j.value, '$.source') AS source,
       json_extract(j.value, '$.event') AS event,
       json_extract(j.value, '$.destination') AS destination,
       json_extract(j.value, '$.purpose') AS purpose,
       json_extract(j.value, '$.status') AS status,
       json_extract(j.value, '$.attempt') AS attempt,
       json_extract(j.value, '$.reason') AS reason,
       json_extract(j.value, '$.fields') AS fields,
       json_extract(j.value, '$.consent') AS consent,
       json_extract(j.value, '$.schema') AS schema
FROM hop_groups AS g, json_each(g.hops) AS j;
CREATE VIEW IF NOT EXISTS copies AS
""" + COPIES + """;
"""
# The views read as tables (``hops``: one row per hop; ``copies``: one row per event and
# destination, its outcome the latest hop's), while the file holds one row per event per
# flush: a request's hops together, a delivery later. That is what keeps the ledger cheap.

_INSERT_GROUP = "INSERT INTO hop_groups (event_id, at, hops) VALUES (?, ?, ?)"
_INSERT_PERSON = "INSERT OR IGNORE INTO people (subject, event_id, at) VALUES (?, ?, ?)"


def _write(rows: Rows, conn: sqlite3.Connection, delta: None) -> None:
    groups, people = rows
    conn.executemany(_INSERT_GROUP, groups)
    if people:
        conn.executemany(_INSERT_PERSON, people)


class SqliteLedger(Buffered):
    def __init__(
        self,
        path: str,
        retention: float,
        *,
        clock: Callable[[], float] = time.time,
        on_error: Callable[[], None] = lambda: None,
        on_write: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        super().__init__(retention, clock=clock, on_error=on_error, on_write=on_write)
        self.path = self.where = path
        self._committer: Committer[None] = Committer(
            path, BUSY_TIMEOUT, SCHEMA, lambda: None, maintain=self._prune,
            maintain_every=PRUNE_EVERY,
        )

    async def start(self) -> None:
        await self._committer.start()

    async def close(self) -> None:
        self._flush()
        await self.drain()
        await self._committer.close()

    def present(self) -> bool:
        return os.path.exists(self.path)

    def _submit(self, rows: Rows) -> Awaitable[None]:
        return self._committer.submit(lambda c, d: _write(rows, c, d))

    def _prune(self, conn: sqlite3.Connection) -> None:
        cutoff = self._clock() - self.retention
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM hop_groups WHERE at < ?", (cutoff,))
            conn.execute("DELETE FROM people WHERE at < ?", (cutoff,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def _delete(self, sql: str, params: Sequence[Any]) -> int:
        result: int = await self._committer.submit(
            lambda conn, delta: int(conn.execute(sql, tuple(params)).rowcount))
        return result

    # -- reading ----------------------------------------------------------------------

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A read-only SQL query on the ledger's own thread (it sees every write handed to
        it before); the ``hops`` and ``copies`` views read as tables."""
        result: list[tuple[Any, ...]] = await self._committer.submit(
            lambda conn, delta: list(conn.execute(sql, tuple(params))), write=False)
        return result

    async def read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(conn)`` on a read-only connection of its own, in a worker thread.

        For long reads (``relay reconcile``, the admin page): SQLite's WAL lets them run
        beside the writer, so they never hold up the hops waiting to be written, the way a
        read on the ledger's own thread would. Needs no ``start()``: the command line reads
        the file a running relay writes. The file must exist (``sqlite3.OperationalError``).
        """

        def run() -> T:
            uri = f"file:{urllib.parse.quote(self.path)}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT)
            try:
                return work(conn)
            finally:
                conn.close()

        return await asyncio.to_thread(run)

    async def scan(self, sql: str, params: Sequence[Any], work: Callable[[Scanned], T]) -> T:
        """``work`` over the rows of ``sql`` as they are read (``read``'s connection);
        ``LedgerUnreadable`` when the file cannot be read."""
        try:
            return await self.read(lambda conn: work(conn.execute(sql, tuple(params))))
        except sqlite3.Error as exc:
            raise LedgerUnreadable(str(exc)) from exc
