"""``PostgresLedger``: the delivery ledger in a PostgreSQL database that several replicas
share (``relay.ledger.url: postgresql://user:pw@host:5432/db``), so ``relay trace``,
``reconcile`` and ``forget`` on any machine see every replica's hops.

The same tables and views as the SQLite ledger (``hop_groups`` holds a JSONB list of hops
per event and flush; ``hops`` and ``copies`` unfold them with ``jsonb_array_elements``),
created when missing (under an advisory lock: replicas start together). Hops are buffered
and turned into rows on the event loop (``relay.ledger.base.Buffered``); every batch is one
transaction on ONE connection kept for writing, used by the ledger's own thread (batches
wait their turn there: the event loop only hands them over, and the database sees one
writer per replica). A write that fails (the database
restarts, the network drops) is counted and logged and the connection is opened again for
the next batch: the ledger never holds up an event, and a relay starts even when the
database does not answer (it logs why, and records once it does). Reads (``trace``,
``reconcile``, ``forget``'s look-ups) each open a short-lived read-only connection in a
worker thread and stream their rows through a server-side cursor, beside the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg

from relay.ledger.base import COPIES, PRUNE_EVERY, Buffered, LedgerUnreadable, Rows, Scanned
from relay.rules.secrets import masked_url

LOG = logging.getLogger("relay.ledger")
T = TypeVar("T")

CONNECT_TIMEOUT = 5  # seconds (libpq's connect_timeout)
SCAN_ROWS = 2000  # rows fetched at a time by a streaming read
_LOCK_KEY = 0x72656C6179  # pg_advisory_xact_lock: one replica creates the schema at a time

SCHEMA = """
CREATE TABLE IF NOT EXISTS hop_groups (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id TEXT,
    at DOUBLE PRECISION NOT NULL,
    hops JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS hop_groups_event ON hop_groups (event_id);
CREATE INDEX IF NOT EXISTS hop_groups_at ON hop_groups (at);
CREATE TABLE IF NOT EXISTS people (
    subject TEXT NOT NULL,
    event_id TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (subject, event_id)
);
CREATE INDEX IF NOT EXISTS people_event ON people (event_id);
CREATE INDEX IF NOT EXISTS people_at ON people (at);
CREATE OR REPLACE VIEW hops AS
SELECT g.id * 1000 + j.n AS id,
       (j.value->>'at')::double precision AS at,
       g.event_id AS event_id,
       j.value->>'hop' AS hop,
       j.value->>'source' AS source,
       j.value->>'event' AS event,
       j.value->>'destination' AS destination,
       j.value->>'purpose' AS purpose,
       (j.value->>'status')::integer AS status,
       (j.value->>'attempt')::integer AS attempt,
       j.value->>'reason' AS reason,
       j.value->>'fields' AS fields,
       j.value->>'consent' AS consent,
       j.value->>'schema' AS schema
FROM hop_groups AS g, jsonb_array_elements(g.hops) WITH ORDINALITY AS j(value, n);
CREATE OR REPLACE VIEW copies AS
""" + COPIES + """;
"""
# As in SQLite, the views' text columns hold JSON text (fields, consent): jsonb prints it
# with a space after each colon and comma, SQLite as it was written.

# A batch's groups go by COPY (the cheapest way in, for the client too); its links, rarer
# and possibly known already, as three arrays (unnest) in one statement.
_COPY_GROUPS = "COPY hop_groups (event_id, at, hops) FROM STDIN"
_INSERT_PEOPLE = ("INSERT INTO people (subject, event_id, at)"
                  " SELECT * FROM unnest(%s::text[], %s::text[], %s::float8[])"
                  " ON CONFLICT DO NOTHING")


def dialect(sql: str) -> str:
    """SQL written with ``?`` placeholders (``relay.ledger.base``) in psycopg's.

    >>> dialect("SELECT x FROM hops WHERE at >= ? AND hop LIKE 'a%'")
    "SELECT x FROM hops WHERE at >= %s AND hop LIKE 'a%%'"
    """
    return sql.replace("%", "%%").replace("?", "%s")


def _create(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
    conn.execute(SCHEMA)


def _insert(conn: psycopg.Connection[Any], rows: Rows) -> None:
    groups, people = rows
    with conn.cursor() as cur, cur.copy(_COPY_GROUPS) as copy:
        for row in groups:
            copy.write_row(row)
    if people:
        conn.execute(_INSERT_PEOPLE, _columns(people))


def _prune(conn: psycopg.Connection[Any], cutoff: float) -> None:
    conn.execute("DELETE FROM hop_groups WHERE at < %s", (cutoff,))
    conn.execute("DELETE FROM people WHERE at < %s", (cutoff,))


def _columns(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows as columns, one array parameter each.

    >>> _columns([("e1", 1.0), ("e2", 2.0)])
    [['e1', 'e2'], [1.0, 2.0]]
    """
    return [list(column) for column in zip(*rows, strict=True)]


class PostgresLedger(Buffered):
    def __init__(
        self,
        url: str,
        retention: float,
        *,
        clock: Callable[[], float] = time.time,
        on_error: Callable[[], None] = lambda: None,
        on_write: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        super().__init__(retention, clock=clock, on_error=on_error, on_write=on_write)
        self.url = url
        self.where = masked_url(url)
        self._conn: psycopg.Connection[Any] | None = None  # used on the writer thread only
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="relay-ledger")
        self._pruner: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect, create what is missing and prune; a database that does not answer is
        logged and counted, and tried again by the first write."""
        try:
            await self._on_writer(_create)
            await self._prune()
        except psycopg.Error as exc:
            LOG.error("ledger %s: cannot open: %s (hops are not recorded until it answers)",
                      self.where, exc)
            self._on_error()
        self._pruner = asyncio.create_task(self._prune_every())

    async def close(self) -> None:
        self._flush()
        await self.drain()
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
        await asyncio.get_running_loop().run_in_executor(self._writer, self._disconnect)
        self._writer.shutdown(wait=False)

    def present(self) -> bool:
        return True  # a server: whether anything is recorded, only a read can tell

    # -- the writer thread ----------------------------------------------------------------

    def _on_writer(self, work: Callable[[psycopg.Connection[Any]], T]) -> asyncio.Future[T]:
        """``work(conn)`` in one transaction on the writing connection, on its thread (one
        at a time, in the order asked; the event loop only waits for the answer)."""
        return asyncio.get_running_loop().run_in_executor(self._writer, self._transaction, work)

    def _transaction(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:  # opened again when the last one broke
            self._disconnect()
            conn = self._conn = psycopg.connect(self.url, autocommit=True,
                                                connect_timeout=CONNECT_TIMEOUT)
        with conn.transaction():
            return work(conn)

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _submit(self, rows: Rows) -> asyncio.Future[None]:
        return self._on_writer(lambda conn: _insert(conn, rows))

    async def _prune(self) -> None:
        cutoff = self._clock() - self.retention
        await self._on_writer(lambda conn: _prune(conn, cutoff))

    async def _prune_every(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY)
            try:
                await self._prune()
            except psycopg.Error as exc:
                LOG.error("ledger %s: cannot prune: %s", self.where, exc)
                self._on_error()

    async def _delete(self, sql: str, params: Sequence[Any]) -> int:
        return await self._on_writer(
            lambda conn: conn.execute(dialect(sql), tuple(params)).rowcount)

    # -- reading ----------------------------------------------------------------------

    async def scan(self, sql: str, params: Sequence[Any], work: Callable[[Scanned], T]) -> T:
        """``work`` over the rows of ``sql`` as they stream in, on a read-only connection of
        its own in a worker thread (no ``start()`` needed: the CLI reads what the replicas
        write). A database whose ledger tables do not exist yet has no rows;
        ``LedgerUnreadable`` when it cannot be read."""

        def run() -> T:
            with psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT) as conn:
                conn.read_only = True
                found = conn.execute("SELECT to_regclass('copies')").fetchone()
                if found is None or found[0] is None:
                    return work(())
                with conn.cursor(name="relay_ledger_read") as cur:
                    cur.itersize = SCAN_ROWS
                    cur.execute(dialect(sql), tuple(params))
                    return work(cur)

        try:
            return await asyncio.to_thread(run)
        except psycopg.Error as exc:
            raise LedgerUnreadable(f"{self.where}: {exc}") from exc

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A read-only SQL query (``?`` placeholders); the views read as tables."""
        return await self.scan(sql, params, list)
