"""``SqliteLedger``: the delivery ledger in a SQLite file (``relay.ledger.url``, by default
``var/ledger.db``), written by its own ``relay.sqlite.Committer`` thread.

Writing is off the hot path: ``listener`` (a ``relay.observe.log`` hop listener) only
appends the hop to a buffer. Every 50 ms (or 500 hops) the buffer becomes rows on the event
loop, one row per event (``relay.ledger.record``; Python on the ledger's thread would contend
for the GIL and cost more than the work itself), and goes to the ledger's thread as one
operation; the thread's group commit writes many of those in one transaction. A ledger that
cannot write (disk full) logs it, counts it in ``relay_ledger_errors_total`` and never holds
up or fails an event: the spool, not the ledger, is what makes an accepted event durable.
``pending`` (hops handed over and not written yet) and ``on_write`` (seconds from hand-over
to commit, per batch) tell how far it lags behind (``relay_ledger_pending_hops``,
``relay_ledger_write_seconds``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson

from relay.ledger.record import record
from relay.sqlite import Committer

LOG = logging.getLogger("relay.ledger")
T = TypeVar("T")

BUSY_TIMEOUT = 5.0
PRUNE_EVERY = 600.0  # seconds between retention sweeps
MAX_IN_FLIGHT = 256  # buffered writes waiting for the thread; beyond, hops are dropped (counted)
FLUSH_EVERY = 0.05  # seconds: hops gather this long before they go to the thread together
FLUSH_AT = 500  # ... or until this many are buffered (a short pause of the loop each time)

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
SELECT h.event_id AS event_id,
       h.destination AS destination,
       (SELECT s.source FROM hops AS s WHERE s.event_id = h.event_id AND s.source IS NOT NULL
        ORDER BY s.at LIMIT 1) AS source,
       (SELECT s.event FROM hops AS s WHERE s.event_id = h.event_id AND s.event IS NOT NULL
        ORDER BY s.at LIMIT 1) AS event,
       MAX(h.consent) AS consent,
       MAX(h.schema) AS schema,
       MAX(h.fields) AS fields,
       COALESCE(MAX(h.attempt), 0) AS attempts,
       (SELECT o.hop FROM hops AS o WHERE o.event_id = h.event_id
          AND o.destination = h.destination ORDER BY o.at DESC, o.id DESC LIMIT 1) AS outcome,
       MIN(h.at) AS first_at,
       MAX(h.at) AS last_at
FROM hops AS h
WHERE h.event_id IS NOT NULL AND h.destination IS NOT NULL
GROUP BY h.event_id, h.destination;
"""
# The views read as tables (``hops``: one row per hop; ``copies``: one row per event and
# destination, its outcome the latest hop's), while the file holds one row per event per
# flush: a request's hops together, a delivery later. That is what keeps the ledger cheap.

_INSERT_GROUP = "INSERT INTO hop_groups (event_id, at, hops) VALUES (?, ?, ?)"
_INSERT_PERSON = "INSERT OR IGNORE INTO people (subject, event_id, at) VALUES (?, ?, ?)"


def iso(at: float) -> str:
    """Unix seconds as ISO-8601 UTC to the millisecond (``2026-11-28T12:00:00.250Z``)."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


Raw = tuple[str, dict[str, Any], float]  # a hop as emitted: name, fields, unix time


Rows = tuple[list[tuple[str | None, float, str]], list[tuple[str, str, float]]]


def prepare(batch: Sequence[Raw]) -> Rows:
    """The rows for a batch of hops: one per event for all of its hops (hops of no event: a
    row each), and the subject links."""
    groups: dict[str, list[dict[str, Any]]] = {}
    loose: list[tuple[str | None, float, str]] = []
    people: list[tuple[str, str, float]] = []
    for name, fields, at in batch:
        eid, hop, subjects = record(name, fields, at)
        if eid is None:
            loose.append((None, at, orjson.dumps([hop]).decode()))
            continue
        groups.setdefault(eid, []).append(hop)
        people.extend((s, eid, at) for s in subjects)
    rows = [(eid, hops[0]["at"], orjson.dumps(hops).decode()) for eid, hops in groups.items()]
    return rows + loose, people


def _write(rows: Rows, conn: sqlite3.Connection, delta: None) -> None:
    groups, people = rows
    conn.executemany(_INSERT_GROUP, groups)
    if people:
        conn.executemany(_INSERT_PERSON, people)


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
        self._buffer: list[Raw] = []
        self._inflight: set[asyncio.Future[Any]] = set()

    async def start(self) -> None:
        await self._committer.start()

    async def close(self) -> None:
        self._flush()
        await self.drain()
        await self._committer.close()

    # -- writing ----------------------------------------------------------------------

    def listener(self, name: str, fields: dict[str, Any], at: float) -> None:
        """The hop listener: the hop as it is goes to the buffer, flushed once per loop turn
        to the ledger's thread, which turns it into rows (nothing else on the event loop)."""
        buffer = self._buffer
        if not buffer:
            with contextlib.suppress(RuntimeError):  # no loop: flushed by the next one
                asyncio.get_running_loop().call_later(FLUSH_EVERY, self._flush)
        buffer.append((name, fields, at))
        if len(buffer) >= FLUSH_AT:
            self._flush()

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
            rows = prepare(batch)  # here, not on the thread: its Python would contend for the GIL
            task = asyncio.ensure_future(self._committer.submit(lambda c, d: _write(rows, c, d)))
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
            conn.execute("DELETE FROM hop_groups WHERE at < ?", (cutoff,))
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
            ).fetchall()  # the index on hop_groups.event_id does the finding
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

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A read-only SQL query on the ledger (``relay reconcile`` aggregates); the ``hops``
        and ``copies`` views read as tables."""

        def work(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return list(conn.execute(sql, tuple(params)))

        result: list[tuple[Any, ...]] = await self._read(work)
        return result

