"""One thread owns a SQLite connection and runs every operation from a queue: the writer of
the spool (``relay.spool.sqlite``) and of the delivery ledger (``relay.ledger``).

It takes everything queued, runs it in ONE transaction (each operation inside its own
SAVEPOINT, so one failing operation does not undo the others), commits once, and only then
resolves the waiting futures: concurrent writes share a commit (group commit), so durability
does not cost a commit per event.

Each group with writes starts with ``BEGIN IMMEDIATE``, waiting up to ``busy_timeout`` for
another process's write lock. An operation is ``work(conn, delta) -> result``; ``delta``
collects its changes to the depth counters, applied only once its group has committed.
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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from relay.errors import SpoolUnavailable

LOG = logging.getLogger("relay.sqlite")

MAX_GROUP = 1000  # operations per transaction

D = TypeVar("D")

SQLITE_PREFIX = "sqlite:///"


def sqlite_path(url: str) -> str:
    """The file path in a ``sqlite:///`` URL; ValueError when there is none."""
    if not url.startswith(SQLITE_PREFIX):
        raise ValueError(
            "a sqlite URL starts with sqlite:/// (sqlite:///var/spool.db is relative,"
            " sqlite:////abs/spool.db absolute)")
    path = url[len(SQLITE_PREFIX):]
    if not path or path.endswith("/"):
        raise ValueError("the sqlite URL names no file (like sqlite:///var/spool.db)")
    return path


def place_url(url: str, resolve: Callable[[str], str]) -> str:
    """``url`` with its file path passed through ``resolve`` (sqlite URLs; others as they are).

    >>> place_url("sqlite:///var/spool.db", lambda p: "/srv/relay/spool.db")
    'sqlite:////srv/relay/spool.db'
    """
    try:
        path = sqlite_path(url)
    except ValueError:  # not a sqlite URL, or a bad one: open_spool says what is wrong
        return url
    return SQLITE_PREFIX + resolve(path)

Work = Callable[[sqlite3.Connection, Any], Any]


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


class Committer(Generic[D]):
    """The connection's thread. ``await start()``, ``await submit(work)``, ``await close()``.
    Failures raise ``SpoolUnavailable`` (the ledger's owner treats it as its own)."""

    def __init__(
        self,
        path: str,
        busy_timeout: float,
        schema: str,
        new_delta: Callable[[], D],
        on_commit: Callable[[list[D]], None] = lambda deltas: None,
        maintain: Callable[[sqlite3.Connection], None] = lambda conn: None,
        maintain_every: float = 60.0,
    ) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.schema = schema
        self.new_delta = new_delta
        self.on_commit = on_commit
        self.maintain = maintain
        self.maintain_every = maintain_every
        self.commits = 0  # transactions committed: group commit makes this far below the puts
        self._writable = False  # until opened; then: did the last write group commit?
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._gate = threading.Lock()  # orders submissions against close()
        self._thread: threading.Thread | None = None
        self._closing = False

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

    def writable(self) -> bool:
        """False when not open, or when the last group with writes did not commit all of
        them (disk full, read-only, locked); True again once one does."""
        return self._writable and not self._closing

    async def submit(self, work: Work, *, write: bool = True) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._gate:
            if self._thread is None or self._closing:
                raise SpoolUnavailable(f"spool {self.path}: not open")
            self._queue.put(_Op(work, write, loop, future))
        return await future

    # -- the thread -------------------------------------------------------------------

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
            conn.executescript(self.schema)
            self.maintain(conn)
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
                if time.monotonic() - recounted >= self.maintain_every:
                    recounted = time.monotonic()
                    try:
                        self.maintain(conn)
                    except sqlite3.Error as exc:
                        LOG.warning("%s: maintenance failed: %s", self.path, exc)
        finally:
            conn.close()

    def _unavailable(self, exc: BaseException) -> SpoolUnavailable:
        err = SpoolUnavailable(f"spool {self.path}: {exc}")
        err.__cause__ = exc
        return err

    def _map(self, exc: BaseException) -> BaseException:
        return self._unavailable(exc) if isinstance(exc, sqlite3.Error | OSError) else exc

    def _run_group(self, conn: sqlite3.Connection, group: list[_Op]) -> None:
        outcomes: list[tuple[_Op, Any, BaseException | None]] = []
        pending: list[tuple[_Op, Any, D]] = []  # writes that wait for the commit
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
                    outcomes.append((op, op.work(conn, self.new_delta()), None))
                except Exception as exc:
                    outcomes.append((op, None, self._map(exc)))
                continue
            if failure is not None:
                outcomes.append((op, None, self._unavailable(failure)))
                continue
            delta = self.new_delta()
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
                self.on_commit([delta for _, _, delta in pending])
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
