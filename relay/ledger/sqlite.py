"""``SqliteLedger``: the delivery ledger in a SQLite file (``relay.ledger.url``, by default
``var/ledger.db``), written by its own ``relay.sqlite.Committer`` thread.

Writing is off the hot path: ``listener`` (a ``relay.observe.log`` hop listener) only turns
a hop into rows and appends them to a buffer; the buffer goes to the ledger's thread once per
event-loop turn as one operation, and the thread's group commit writes many of those in one
transaction. A ledger that cannot write (disk full) logs it, counts it in
``relay_ledger_errors_total`` and never holds up or fails an event: the spool, not the
ledger, is what makes an accepted event durable. ``pending`` (hops handed over and not
written yet) and ``on_write`` (seconds from hand-over to commit, per batch) tell how far it
lags behind (``relay_ledger_pending_hops``, ``relay_ledger_write_seconds``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from relay.ledger.record import Rows, rows
from relay.sqlite import Committer

LOG = logging.getLogger("relay.ledger")

BUSY_TIMEOUT = 5.0
PRUNE_EVERY = 600.0  # seconds between retention sweeps
MAX_IN_FLIGHT = 256  # buffered writes waiting for the thread; beyond, hops are dropped (counted)

SCHEMA = """
CREATE TABLE IF NOT EXISTS hops (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    event_id TEXT,
    hop TEXT NOT NULL,
    source TEXT,
    event TEXT,
    destination TEXT,
    purpose TEXT,
    status INTEGER,
    attempt INTEGER,
    reason TEXT,
    fields TEXT
);
CREATE INDEX IF NOT EXISTS hops_event ON hops (event_id);
CREATE INDEX IF NOT EXISTS hops_at ON hops (at);
CREATE TABLE IF NOT EXISTS copies (
    event_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    source TEXT,
    event TEXT,
    consent TEXT,
    schema INTEGER,
    fields TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL,
    first_at REAL NOT NULL,
    last_at REAL NOT NULL,
    PRIMARY KEY (event_id, destination)
);
CREATE INDEX IF NOT EXISTS copies_first ON copies (first_at);
CREATE TABLE IF NOT EXISTS people (
    subject TEXT NOT NULL,
    event_id TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (subject, event_id)
);
CREATE INDEX IF NOT EXISTS people_event ON people (event_id);
"""

_INSERT_HOP = (
    "INSERT INTO hops (at, event_id, hop, source, event, destination, purpose, status,"
    " attempt, reason, fields) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_COPY = """
INSERT INTO copies (event_id, destination, source, event, consent, schema, fields, attempts,
                    outcome, first_at, last_at)
VALUES (?, ?, ?, ?, ?, ?, ?, COALESCE(?, 0), ?, ?, ?)
ON CONFLICT (event_id, destination) DO UPDATE SET
    source = COALESCE(copies.source, excluded.source),
    event = COALESCE(copies.event, excluded.event),
    consent = COALESCE(excluded.consent, copies.consent),
    schema = COALESCE(excluded.schema, copies.schema),
    fields = COALESCE(excluded.fields, copies.fields),
    attempts = MAX(copies.attempts, excluded.attempts),
    outcome = excluded.outcome,
    last_at = MAX(copies.last_at, excluded.last_at)
"""
_INSERT_PERSON = "INSERT OR IGNORE INTO people (subject, event_id, at) VALUES (?, ?, ?)"


def iso(at: float) -> str:
    """Unix seconds as ISO-8601 UTC to the millisecond (``2026-11-28T12:00:00.250Z``)."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _write(batch: Sequence[Rows], conn: sqlite3.Connection, delta: None) -> None:
    conn.executemany(_INSERT_HOP, [
        (h.at, h.event_id, h.hop, h.source, h.event, h.destination, h.purpose, h.status,
         h.attempt, h.reason, h.fields) for h in (r.hop for r in batch)
    ])
    conn.executemany(_UPSERT_COPY, [
        (c.event_id, c.destination, c.source, c.event, c.consent, c.schema, c.fields,
         c.attempt, c.outcome, c.at, c.at) for c in (r.copy for r in batch) if c is not None
    ])
    conn.executemany(_INSERT_PERSON, [
        (subject, r.hop.event_id, r.hop.at) for r in batch for subject in r.people
    ])


class SqliteLedger:
    def __init__(
        self,
        path: str,
        retention: float,
        *,
        clock: Callable[[], float] = time.time,
        on_error: Callable[[], None] = lambda: None,
        on_write: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self.path = path
        self.retention = retention
        self._clock = clock
        self._on_error = on_error  # counts a write the ledger could not make
        self._on_write = on_write  # seconds from a batch's hand-over to its commit
        self.pending = 0  # hops handed to the thread and not written yet
        self._committer: Committer[None] = Committer(
            path, BUSY_TIMEOUT, SCHEMA, lambda: None, maintain=self._prune,
            maintain_every=PRUNE_EVERY,
        )
        self._buffer: list[Rows] = []
        self._inflight: set[asyncio.Future[Any]] = set()

    async def start(self) -> None:
        await self._committer.start()

    async def close(self) -> None:
        self._flush()
        await self.drain()
        await self._committer.close()

    # -- writing ----------------------------------------------------------------------

    def listener(self, name: str, fields: dict[str, Any], at: float) -> None:
        """The hop listener: the hop's rows go to the buffer, flushed once per loop turn."""
        if not self._buffer:
            with contextlib.suppress(RuntimeError):  # no loop: flushed by the next one
                asyncio.get_running_loop().call_soon(self._flush)
        self._buffer.append(rows(name, fields, at))

    def _flush(self) -> None:
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        if len(self._inflight) >= MAX_IN_FLIGHT:  # the disk cannot keep up: never wait for it
            LOG.warning("ledger %s: falling behind, %d hop(s) not recorded", self.path,
                        len(batch))
            self._on_error()
            return
        try:
            task = asyncio.ensure_future(self._committer.submit(lambda c, d: _write(batch, c, d)))
        except RuntimeError:  # no running loop (a CLI run): write nothing rather than block
            return
        self._inflight.add(task)
        self.pending += len(batch)
        started = time.perf_counter()
        task.add_done_callback(lambda t: self._done(t, len(batch), started))

    def _done(self, task: asyncio.Future[Any], hops: int, started: float) -> None:
        self._inflight.discard(task)
        self.pending -= hops
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            LOG.error("ledger %s: cannot record hops: %s", self.path, exc)
            self._on_error()
            return
        self._on_write(time.perf_counter() - started)

    async def drain(self) -> None:
        """Wait until every hop seen so far is written (tests, shutdown)."""
        self._flush()
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    def _prune(self, conn: sqlite3.Connection) -> None:
        cutoff = self._clock() - self.retention
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM hops WHERE at < ?", (cutoff,))
            conn.execute("DELETE FROM copies WHERE last_at < ?", (cutoff,))
            conn.execute("DELETE FROM people WHERE at < ?", (cutoff,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- reading ----------------------------------------------------------------------

    async def _read(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        return await self._committer.submit(lambda conn, delta: work(conn), write=False)

    async def trace(self, event_id: str) -> list[dict[str, Any]]:
        """Every hop of ``event_id`` in time order, as ``relay trace`` prints them (source
        and event filled in from the event's own hops where a hop does not name them)."""

        def work(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            found = conn.execute(
                "SELECT at, hop, source, event, destination, purpose, status, attempt, reason,"
                " fields FROM hops WHERE event_id = ? ORDER BY at, id", (event_id,)
            ).fetchall()
            source = next((r[2] for r in found if r[2]), None)
            event = next((r[3] for r in found if r[3]), None)
            return [
                {
                    "at": iso(at), "hop": hop, "source": src or source, "event": ev or event,
                    "destination": dest, "purpose": purpose, "status": status,
                    "attempt": attempt, "reason": reason,
                    "fields": orjson.loads(fields) if fields else None,
                }
                for at, hop, src, ev, dest, purpose, status, attempt, reason, fields in found
            ]

        result: list[dict[str, Any]] = await self._read(work)
        return result

    async def events_of(self, subjects: Iterable[str]) -> list[str]:
        """The event ids linked to any of ``subjects`` (keyed hashes of a person's ids)."""
        keys = list(subjects)

        def work(conn: sqlite3.Connection) -> list[str]:
            marks = ",".join("?" * len(keys))
            return [eid for (eid,) in conn.execute(
                f"SELECT DISTINCT event_id FROM people WHERE subject IN ({marks})"
                " ORDER BY event_id", keys)]

        result: list[str] = await self._read(work) if keys else []
        return result

    async def unlink(self, subjects: Iterable[str]) -> int:
        """Forget which events ``subjects`` had (``relay forget``): the links go; what was
        delivered where stays, now about nobody in particular."""
        keys = list(subjects)

        def work(conn: sqlite3.Connection, delta: None) -> int:
            marks = ",".join("?" * len(keys))
            return int(conn.execute(f"DELETE FROM people WHERE subject IN ({marks})",
                                    keys).rowcount)

        if not keys:
            return 0
        result: int = await self._committer.submit(work)
        return result

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A read-only SQL query on the ledger's tables (``relay reconcile`` aggregates)."""

        def work(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return list(conn.execute(sql, tuple(params)))

        result: list[tuple[Any, ...]] = await self._read(work)
        return result

