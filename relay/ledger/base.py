"""What every ledger backend shares: the ``Ledger`` Protocol its users see (the runtime, the
CLI's ``trace`` / ``reconcile`` / ``forget``, the admin page), the batching of hops on the
event loop (``Buffered``), the rows a batch becomes (``prepare``) and the reads written once
in SQL both dialects speak (``trace``, ``events_of``).

Writing is off the hot path: ``listener`` (a ``relay.observe.log`` hop listener) only
appends the hop to a buffer. Every ``FLUSH_EVERY`` seconds (or ``FLUSH_AT`` hops) the buffer
becomes rows on the event loop, one row per event (``relay.ledger.record``), and goes to the
backend as one write (``Buffered._submit``). A ledger that cannot write (disk full, database
down) logs it, counts it (``on_error``: ``relay_ledger_errors_total``) and never holds up or
fails an event: the spool, not the ledger, is what makes an accepted event durable.
``pending`` (hops handed over and not written yet) and ``on_write`` (seconds from hand-over
to commit, per batch) tell how far it lags behind.

SQL given to ``query`` and ``scan`` uses ``?`` placeholders (the PostgreSQL ledger turns
them into its own); the ``hops`` and ``copies`` views read as tables on both backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import orjson

from relay.ledger.record import record

LOG = logging.getLogger("relay.ledger")
T = TypeVar("T")

PRUNE_EVERY = 600.0  # seconds between retention sweeps
MAX_IN_FLIGHT = 256  # buffered writes waiting for the backend; beyond, hops are dropped (counted)
FLUSH_EVERY = 0.05  # seconds: hops gather this long before they go to the backend together
FLUSH_AT = 500  # ... or until this many are buffered (a short pause of the loop each time)

Raw = tuple[str, dict[str, Any], float]  # a hop as emitted: name, fields, unix time
# (event_id, at, JSON list of hops) per group, (subject, event_id, at) per link.
Rows = tuple[list[tuple[str | None, float, str]], list[tuple[str, str, float]]]
Scanned = Iterable[tuple[Any, ...]]


# The ``copies`` view over the ``hops`` view, the same on both backends: one row per event and
# destination, its outcome the latest hop's.
COPIES = """SELECT h.event_id AS event_id,
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
GROUP BY h.event_id, h.destination"""


class LedgerUnreadable(Exception):
    """The ledger cannot be read (a broken file, a database that does not answer)."""


def iso(at: float) -> str:
    """Unix seconds as ISO-8601 UTC to the millisecond (``2026-11-28T12:00:00.250Z``)."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


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


class Ledger(Protocol):
    """The delivery ledger as its users see it, whichever backend holds it."""

    where: str  # the file or the database, as messages name it (no credentials)
    pending: int

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    def listener(self, name: str, fields: dict[str, Any], at: float) -> None: ...
    async def drain(self) -> None: ...
    def present(self) -> bool:
        """False when nothing can have been recorded yet (no SQLite file)."""
        ...
    async def trace(self, event_id: str) -> list[dict[str, Any]]: ...
    async def events_of(self, subjects: Iterable[str]) -> list[str]: ...
    async def unlink(self, subjects: Iterable[str]) -> int: ...
    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
    async def scan(self, sql: str, params: Sequence[Any],
                   work: Callable[[Scanned], T]) -> T: ...


_TRACE = ("SELECT at, hop, source, event, destination, purpose, status, attempt, reason,"
          " fields FROM hops WHERE event_id = ? ORDER BY at, id")


class Buffered:
    """The hop buffer and the reads both backends share; a backend adds ``_submit`` (write
    a batch's rows), ``query``, ``scan`` and ``unlink``."""

    where = ""

    def __init__(
        self,
        retention: float,
        *,
        clock: Callable[[], float] = time.time,
        on_error: Callable[[], None] = lambda: None,
        on_write: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self.retention = retention  # seconds a hop is kept
        self._clock = clock
        self._on_error = on_error  # counts a write the ledger could not make
        self._on_write = on_write  # seconds from a batch's hand-over to its commit
        self.pending = 0  # hops handed over and not written yet
        self._buffer: list[Raw] = []
        self._inflight: set[asyncio.Future[Any]] = set()

    def _submit(self, rows: Rows) -> Awaitable[None]:
        raise NotImplementedError

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    # -- writing ----------------------------------------------------------------------

    def listener(self, name: str, fields: dict[str, Any], at: float) -> None:
        """The hop listener: the hop as it is goes to the buffer, flushed once per
        ``FLUSH_EVERY`` (nothing else on the event loop)."""
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
        if len(self._inflight) >= MAX_IN_FLIGHT:  # the backend cannot keep up: never wait
            LOG.warning("ledger %s: falling behind, %d hop(s) not recorded", self.where,
                        len(batch))
            self._on_error()
            return
        try:
            rows = prepare(batch)  # on the loop: Python on a thread would contend for the GIL
            task = asyncio.ensure_future(self._submit(rows))
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
            LOG.error("ledger %s: cannot record hops: %s", self.where, exc)
            self._on_error()
            return
        self._on_write(time.perf_counter() - started)

    async def drain(self) -> None:
        """Wait until every hop seen so far is written (tests, shutdown)."""
        self._flush()
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    # -- reading ----------------------------------------------------------------------

    async def trace(self, event_id: str) -> list[dict[str, Any]]:
        """Every hop of ``event_id`` in time order, as ``relay trace`` prints them (source
        and event filled in from the event's own hops where a hop does not name them)."""
        found = await self.query(_TRACE, (event_id,))  # hop_groups' event_id index finds them
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

    async def events_of(self, subjects: Iterable[str]) -> list[str]:
        """The event ids linked to any of ``subjects`` (keyed hashes of a person's ids)."""
        keys = list(subjects)
        if not keys:
            return []
        marks = ",".join("?" * len(keys))
        found = await self.query(
            f"SELECT DISTINCT event_id FROM people WHERE subject IN ({marks}) ORDER BY event_id",
            keys)
        return [eid for (eid,) in found]

    async def unlink(self, subjects: Iterable[str]) -> int:
        """Forget which events ``subjects`` had (``relay forget``): the links go; what was
        delivered where stays, now about nobody in particular."""
        keys = list(subjects)
        if not keys:
            return 0
        return await self._delete(
            f"DELETE FROM people WHERE subject IN ({','.join('?' * len(keys))})", keys)

    async def _delete(self, sql: str, params: Sequence[Any]) -> int:
        """Run a ``DELETE`` as a write; the rows it deleted."""
        raise NotImplementedError
