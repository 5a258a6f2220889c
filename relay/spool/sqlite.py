"""The SQLite spool: the embedded default outbox (WAL, ``synchronous=NORMAL``).

One thread owns the connection and runs every operation from a queue. It takes everything
queued, runs it in ONE transaction (each operation inside its own SAVEPOINT, so one failing
operation does not undo the others), commits once, and only then resolves the waiting futures:
concurrent ``put``s share a commit (group commit), so durability does not cost a commit per
event. With WAL and ``synchronous=NORMAL`` a commit survives the process being killed; only a
power cut may lose the last commits.

Several processes (``hypercorn --workers N``) may share the file: each group starts with
``BEGIN IMMEDIATE`` (waiting up to ``busy_timeout`` for the write lock) and ``claim`` leases rows
with a single ``UPDATE ... RETURNING``, so no two processes hold the same row. Ids are
AUTOINCREMENT, never reused, so a late ``ack`` from a process whose lease expired cannot delete
a newer row.

Depth counters live in memory (``depths()`` does no I/O): counted at start, moved by every
committed operation, and recounted every ``RECOUNT_EVERY`` seconds to take in what other
processes did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from relay.errors import SpoolUnavailable
from relay.spool.base import Claimed, DeadLetter, Quarantined, Row

LOG = logging.getLogger("relay.spool")

BUSY_TIMEOUT = 5.0  # seconds to wait for another process's write lock before giving up
MAX_GROUP = 1000  # operations per transaction
RESPONSE_BYTES = 2048  # how much of a vendor's answer (or an error) is kept
RECOUNT_EVERY = 60.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    event_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    lease_until REAL NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (destination, next_at);
CREATE TABLE IF NOT EXISTS dead (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    event_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL,
    failed_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    status INTEGER,
    response TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS dead_destination ON dead (destination);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    event TEXT NOT NULL,
    error TEXT NOT NULL,
    payload BLOB NOT NULL,
    received_at REAL NOT NULL
);
"""

_IDS = "id IN (SELECT value FROM json_each(?))"  # any number of ids as one JSON parameter
_CLAIMED = "id, destination, event_id, payload, created_at, attempts"
_DEAD = "id, destination, event_id, payload, created_at, failed_at, attempts, status, response"


@dataclass(slots=True)
class _Delta:
    """Changes to the depth counters, applied only once the operation is committed."""

    spool: Counter[str] = field(default_factory=Counter)
    dlq: Counter[str] = field(default_factory=Counter)


Work = Callable[[sqlite3.Connection, _Delta], Any]


@dataclass(slots=True)
class _Op:
    work: Work
    write: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]


def _resolve(outcomes: list[Outcome]) -> None:
    for future, result, exc in outcomes:
        if future.done():  # the caller was cancelled; the operation still ran
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)


def _settle(future: asyncio.Future[None], exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(None)


def _chain(source: asyncio.Future[None], target: asyncio.Future[None]) -> None:
    def done(f: asyncio.Future[None]) -> None:
        _settle(target, f.exception() if not f.cancelled() else SpoolUnavailable("cancelled"))

    source.add_done_callback(done)


def _ids(ids: Sequence[int]) -> str:
    return orjson.dumps(list(ids)).decode()


def _trim(text: str) -> str:
    data = text.encode()
    return text if len(data) <= RESPONSE_BYTES else data[:RESPONSE_BYTES].decode(errors="ignore")


def _where(destination: str | None) -> tuple[str, tuple[str, ...]]:
    return ("", ()) if destination is None else (" WHERE destination = ?", (destination,))


class SqliteSpool:
    """The ``relay.spool.base.Spool`` on one SQLite file; ``path`` may be relative (to the
    working directory). ``clock`` gives unix seconds (tests pass a fake one)."""

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float = BUSY_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.commits = 0  # transactions committed: group commit makes this far below the puts
        self._writable = False  # until opened; then: did the last write group commit?
        self._clock = clock
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._gate = threading.Lock()  # orders submissions against close()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._counts_lock = threading.Lock()
        # puts of the current event-loop turn: (rows, quarantined, future)
        self._inflight: set[asyncio.Future[None]] = set()
        self._put_buffer: list[
            tuple[Sequence[Row], Sequence[Quarantined], asyncio.Future[None]]
        ] = []
        self._spool_n: dict[str, int] = {}
        self._dlq_n: dict[str, int] = {}

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Open (creating the file, its parent directories and the tables) and start the
        thread. Raises ``SpoolUnavailable`` when the file cannot be opened for writing."""
        if self._thread is not None:
            return
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._queue = queue.SimpleQueue()
        thread = threading.Thread(
            target=self._main, args=(loop, ready), name=f"spool {self.path}", daemon=True
        )
        thread.start()
        try:
            await ready
        except BaseException:  # could not open, or cancelled while opening
            self._queue.put(None)  # stops the thread if it did open
            await asyncio.to_thread(thread.join)
            raise
        self._thread = thread  # from here on, operations are accepted

    async def close(self) -> None:
        """Run what is queued, then close the connection; later calls raise SpoolUnavailable."""
        with self._gate:
            thread = self._thread
            if thread is None or self._closing:
                return
            self._closing = True
            self._queue.put(None)
        await asyncio.to_thread(thread.join)

    def _open(self) -> sqlite3.Connection:
        parent = os.path.dirname(self.path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
            self._recount(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _main(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        try:
            conn = self._open()
        except (OSError, sqlite3.Error) as exc:
            failed: list[Outcome] = [(ready, None, self._unavailable(exc))]
            loop.call_soon_threadsafe(_resolve, failed)
            return
        self._writable = True
        opened: list[Outcome] = [(ready, None, None)]
        loop.call_soon_threadsafe(_resolve, opened)
        recounted = time.monotonic()
        try:
            while True:
                first = self._queue.get()
                group: list[_Op] = [] if first is None else [first]
                stop = first is None
                while not stop and len(group) < MAX_GROUP:
                    try:
                        op = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if op is None:
                        stop = True
                    else:
                        group.append(op)
                if group:
                    self._run_group(conn, group)
                if stop:
                    return
                if time.monotonic() - recounted >= RECOUNT_EVERY:
                    recounted = time.monotonic()
                    try:
                        self._recount(conn)
                    except sqlite3.Error as exc:
                        LOG.warning("spool %s: recount failed: %s", self.path, exc)
        finally:
            conn.close()

    # -- the group commit -------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> SpoolUnavailable:
        err = SpoolUnavailable(f"spool {self.path}: {exc}")
        err.__cause__ = exc
        return err

    def _map(self, exc: BaseException) -> BaseException:
        return self._unavailable(exc) if isinstance(exc, sqlite3.Error | OSError) else exc

    def _run_group(self, conn: sqlite3.Connection, group: list[_Op]) -> None:
        outcomes: list[tuple[_Op, Any, BaseException | None]] = []
        pending: list[tuple[_Op, Any, _Delta]] = []  # writes that wait for the commit
        failure: BaseException | None = None  # once set, no write of this group commits
        began = False
        writes = any(op.write for op in group)
        if writes:
            try:
                conn.execute("BEGIN IMMEDIATE")
                began = True
            except sqlite3.Error as exc:
                failure = exc
        for op in group:
            if not op.write:
                try:
                    outcomes.append((op, op.work(conn, _Delta()), None))
                except Exception as exc:
                    outcomes.append((op, None, self._map(exc)))
                continue
            if failure is not None:
                outcomes.append((op, None, self._unavailable(failure)))
                continue
            delta = _Delta()
            try:
                conn.execute("SAVEPOINT op")
                result = op.work(conn, delta)
                conn.execute("RELEASE op")
            except Exception as exc:
                outcomes.append((op, None, self._map(exc)))
                try:  # SQLITE_FULL or IOERR may have rolled the whole transaction back
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                except sqlite3.Error as lost:
                    failure = lost
                continue
            pending.append((op, result, delta))
        if began:
            if failure is None:
                try:
                    conn.execute("COMMIT")
                    self.commits += 1
                except sqlite3.Error as exc:
                    failure = exc
            if failure is not None:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                outcomes.extend((op, None, self._unavailable(failure)) for op, _, _ in pending)
            else:
                self._apply([delta for _, _, delta in pending])
                outcomes.extend((op, result, None) for op, result, _ in pending)
        if writes:
            self._writable = (
                began
                and failure is None
                and not any(isinstance(err, SpoolUnavailable) for _, _, err in outcomes)
            )
        by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
        for op, result, err in outcomes:
            by_loop.setdefault(op.loop, []).append((op.future, result, err))
        for loop, items in by_loop.items():
            # RuntimeError: that loop is closed, so nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, items)

    async def _submit(self, work: Work, *, write: bool = True) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._gate:
            if self._thread is None or self._closing:
                raise SpoolUnavailable(f"spool {self.path}: not open")
            self._queue.put(_Op(work, write, loop, future))
        return await future

    # -- state read without I/O -------------------------------------------------------

    def writable(self) -> bool:
        """False when not open, or when the last group with writes did not commit all of
        them (disk full, read-only, locked); True again once one does."""
        return self._writable and not self._closing

    def _recount(self, conn: sqlite3.Connection) -> None:
        spool = dict(conn.execute("SELECT destination, COUNT(*) FROM outbox GROUP BY 1"))
        dlq = dict(conn.execute("SELECT destination, COUNT(*) FROM dead GROUP BY 1"))
        with self._counts_lock:
            # Keep destinations seen before at 0, so their gauges read 0 rather than vanish.
            self._spool_n = {**dict.fromkeys(self._spool_n, 0), **spool}
            self._dlq_n = {**dict.fromkeys(self._dlq_n, 0), **dlq}

    def _apply(self, deltas: list[_Delta]) -> None:
        with self._counts_lock:
            for delta in deltas:
                for counts, changes in ((self._spool_n, delta.spool), (self._dlq_n, delta.dlq)):
                    for dest, n in changes.items():
                        counts[dest] = max(0, counts.get(dest, 0) + n)

    def depths(self) -> tuple[dict[str, int], dict[str, int]]:
        with self._counts_lock:
            return dict(self._spool_n), dict(self._dlq_n)

    # -- the outbox -------------------------------------------------------------------

    async def put(self, rows: Sequence[Row], quarantined: Sequence[Quarantined] = ()) -> None:
        """Commit ``rows`` and ``quarantined``, all or none.

        Puts made in the same turn of the event loop travel to the spool thread as ONE
        operation (one queue hand-off, one savepoint) and share its fate: handing each
        request's rows over on its own costs more in thread switches than the commit itself.
        """
        if not rows and not quarantined:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self._put_buffer:
            loop.call_soon(self._flush_puts)
        self._put_buffer.append((rows, quarantined, future))
        await future

    def _keep(self, coro: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
        """Run ``coro`` as a task that is referenced until it ends (the loop keeps only
        weak references to tasks)."""
        task = asyncio.ensure_future(coro)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return task

    def _flush_puts(self) -> None:
        pending, self._put_buffer = self._put_buffer, []
        if not pending:
            return
        group = self._keep(
            self._insert(
                [r for rows, _, _ in pending for r in rows],
                [q for _, quarantined, _ in pending for q in quarantined],
            )
        )

        def done(group: asyncio.Future[None]) -> None:
            exc = group.exception() if not group.cancelled() else SpoolUnavailable("cancelled")
            if exc is not None and len(pending) > 1:
                # One put may have broken the group: each goes again on its own.
                for rows, quarantined, future in pending:
                    _chain(self._keep(self._insert(rows, quarantined)), future)
                return
            for _, _, future in pending:
                _settle(future, exc)

        group.add_done_callback(done)

    async def _insert(self, rows: Sequence[Row], quarantined: Sequence[Quarantined]) -> None:
        now = self._clock()
        outbox = [(r.destination, r.event_id, r.payload, now, now) for r in rows]
        held = [(q.source, q.event, q.error, q.payload, now) for q in quarantined]
        added = Counter(r.destination for r in rows)

        def work(conn: sqlite3.Connection, delta: _Delta) -> None:
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
        def work(conn: sqlite3.Connection, delta: _Delta) -> list[Claimed]:
            now = self._clock()
            rows = conn.execute(
                f"UPDATE outbox SET lease_until = ? WHERE id IN (SELECT id FROM outbox"
                f" WHERE destination = ? AND next_at <= ? AND lease_until <= ?"
                f" ORDER BY next_at, id LIMIT ?) RETURNING {_CLAIMED}",
                (now + lease, destination, now, now, limit),
            ).fetchall()
            return sorted((Claimed(*row) for row in rows), key=lambda c: c.id)

        result: list[Claimed] = await self._submit(work)
        return result

    async def ack(self, ids: Sequence[int]) -> None:
        if not ids:
            return

        def work(conn: sqlite3.Connection, delta: _Delta) -> None:
            gone = conn.execute(
                f"DELETE FROM outbox WHERE {_IDS} RETURNING destination", (_ids(ids),)
            ).fetchall()
            delta.spool.subtract(dest for (dest,) in gone)

        await self._submit(work)

    async def retry(self, ids: Sequence[int], next_at: float, error: str) -> None:
        if not ids:
            return
        params = (next_at, _trim(error), _ids(ids))

        def work(conn: sqlite3.Connection, delta: _Delta) -> None:
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_at = ?, lease_until = 0,"
                f" last_error = ? WHERE {_IDS}",
                params,
            )

        await self._submit(work)

    async def dead(
        self, rows: Sequence[Claimed], status: int | None, response: str, attempts: int
    ) -> None:
        if not rows:
            return
        response = _trim(response)

        def work(conn: sqlite3.Connection, delta: _Delta) -> None:
            # Only rows still in the outbox: another process may have delivered one meanwhile.
            gone = {
                i
                for (i,) in conn.execute(
                    f"DELETE FROM outbox WHERE {_IDS} RETURNING id", (_ids([r.id for r in rows]),)
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
        def work(conn: sqlite3.Connection, delta: _Delta) -> int:
            return conn.execute("UPDATE outbox SET lease_until = 0 WHERE lease_until > 0").rowcount

        result: int = await self._submit(work)
        return result

    async def next_due(self, destination: str) -> float | None:
        """When the earliest row that is not leased becomes due (None: nothing waiting)."""

        def work(conn: sqlite3.Connection, delta: _Delta) -> float | None:
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
        where, args = _where(destination)

        def work(conn: sqlite3.Connection, delta: _Delta) -> list[DeadLetter]:
            rows = conn.execute(
                f"SELECT {_DEAD} FROM dead{where} ORDER BY id LIMIT ?", (*args, limit)
            )
            return [DeadLetter(*row) for row in rows]

        result: list[DeadLetter] = await self._submit(work, write=False)
        return result

    async def dlq_replay(self, destination: str | None = None) -> int:
        """Move dead letters back to the outbox, due now, with no attempts and a fresh
        ``created_at`` (so ``max_age`` counts from the replay)."""
        where, args = _where(destination)

        def work(conn: sqlite3.Connection, delta: _Delta) -> int:
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

    async def dlq_purge(self, destination: str | None = None) -> int:
        where, args = _where(destination)

        def work(conn: sqlite3.Connection, delta: _Delta) -> int:
            gone = conn.execute(f"DELETE FROM dead{where} RETURNING destination", args).fetchall()
            delta.dlq.subtract(dest for (dest,) in gone)
            return len(gone)

        result: int = await self._submit(work)
        return result

    async def quarantine_list(self, limit: int = 100) -> list[dict[str, Any]]:
        def work(conn: sqlite3.Connection, delta: _Delta) -> list[dict[str, Any]]:
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
                }
                for i, source, event, error, payload, received in rows
            ]

        result: list[dict[str, Any]] = await self._submit(work, write=False)
        return result
