"""One ``/metrics`` page for ``relay serve --workers N``: every worker's figures added up.

Whichever worker accepts the scrape answers it, so each worker must be able to show the
others' figures too. ``relay serve`` makes a private folder (``var/metrics/``, mode 0700)
and a random token, and hands both to its workers. Each worker then

- listens on a loopback port of its own (127.0.0.1, chosen by the system) for the other
  workers' requests, which must carry the token;
- keeps its share (``Metrics.snapshot()``) in ``<id>.json`` in the folder, with its pid and
  port, rewritten every ``WRITE_EVERY`` seconds, before it answers any request, and when it
  stops.

A scrape's worker writes its own share, asks every other running worker for theirs (at most
``ASK_TIMEOUT`` seconds), takes the file of one that does not answer, and adds them up
(``relay.observe.merge``). Nothing of this touches the hot path: the counters stay plain
floats of the event loop, read only when a share is written.

Counters never go back, whichever worker answers and when a worker exits: a figure is
written to its file before any page shows it, and an exited worker's file stays in the sums
until it is folded into ``exited.json`` (its counts and its start time; its gauges of the
moment go with it). Folding and reading take a lock on the folder (``fcntl.flock``), so no
page sees a worker twice or not at all. What a worker counted after its last write is lost
if it is killed (``SIGKILL``); hypercorn then stops the whole relay, and a new ``relay
serve`` starts every count from zero, which is what Prometheus takes as a counter reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hmac
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import generate_latest
from prometheus_client.core import Metric

from relay.observe.log import LOG
from relay.observe.merge import Share, fold, merge
from relay.observe.metrics import Metrics, Snapshot, snapshot_of, workers_family

WRITE_EVERY = 1.0  # seconds between rewrites of a worker's file
ASK_TIMEOUT = 1.0  # seconds a scrape waits for another worker's answer
EXITED = "exited.json"
LOCK = "lock"
DIR_ENV = "RELAY_METRICS_DIR"
TOKEN_ENV = "RELAY_METRICS_TOKEN"


@dataclass(frozen=True, slots=True)
class Sharing:
    """Where a worker keeps its share, and the token the workers ask each other with."""

    directory: Path
    token: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Sharing | None:
        """What ``relay serve --workers N`` hands its workers (None: not a worker)."""
        directory, token = env.get(DIR_ENV), env.get(TOKEN_ENV)
        return cls(Path(directory), token) if directory and token else None


def prepare(directory: Path) -> None:
    """A fresh private folder for one ``relay serve`` run: what a previous run left goes
    (its counts started from zero again as the run did)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    for path in directory.iterdir():
        if path.suffix in (".json", ".tmp") or path.name == LOCK:
            path.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class _Record:
    """A worker's file: who wrote it, where it answers, and its share."""

    id: str
    pid: int
    port: int
    families: Snapshot


def _snapshot(raw: Any) -> Snapshot:
    out: Snapshot = {}
    for name, (how, samples) in raw.items():
        out[str(name)] = (how, [(str(n), dict(labels), float(v)) for n, labels, v in samples])
    return out


def _record(data: bytes) -> _Record | None:
    """A worker's file or answer, parsed; None when it is not one (cut short, garbage)."""
    try:
        raw = orjson.loads(data)
        return _Record(str(raw["id"]), int(raw["pid"]), int(raw["port"]),
                       _snapshot(raw["families"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process now: ours is gone
        return False
    return True


@contextlib.contextmanager
def _locked(directory: Path, exclusive: bool) -> Iterator[None]:
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@dataclass(slots=True)
class _Files:
    """What the folder holds, read under the lock."""

    workers: dict[str, _Record]
    exited: Share
    folded: frozenset[str]  # ids already in ``exited``
    count: int  # how many workers ``exited`` holds


def _read_exited(directory: Path) -> tuple[Share, frozenset[str], int]:
    try:
        raw = orjson.loads((directory / EXITED).read_bytes())
        share = Share(_snapshot(raw["families"]), live=False)
        return share, frozenset(raw["folded"]), int(raw["count"])
    except FileNotFoundError:
        return Share(live=False), frozenset(), 0


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


class WorkerMetrics:
    """One worker's side of the shared page (see the module's docstring)."""

    def __init__(self, sharing: Sharing, metrics: Metrics) -> None:
        self.directory = sharing.directory
        self._token = sharing.token.encode()
        self.metrics = metrics
        self.pid = os.getpid()
        self.id = f"{self.pid}-{time.time_ns()}"
        self.port = 0
        self.pages = 0  # scrapes this worker answered (in its file, for tests and a look)
        self._server: asyncio.Server | None = None
        self._writer: asyncio.Task[None] | None = None

    @property
    def path(self) -> Path:
        return self.directory / f"{self.id}.json"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self.write()
        self._writer = asyncio.create_task(self._write_now_and_then())

    async def stop(self) -> None:
        """Stop answering, and write the last figures (the counts this worker leaves)."""
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            self.write()

    def write(self) -> bytes:
        """Write this worker's share to its file now; the bytes written."""
        return self._write(self.metrics.snapshot())

    def _write(self, families: Snapshot) -> bytes:
        data = orjson.dumps({"id": self.id, "pid": self.pid, "port": self.port,
                             "pages": self.pages, "families": families})
        try:
            _write_atomically(self.path, data)
        except OSError as exc:
            LOG.warning("metrics: cannot write %s: %s", self.path, exc)
        return data

    async def _write_now_and_then(self) -> None:
        while True:
            await asyncio.sleep(WRITE_EVERY)
            self.write()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), ASK_TIMEOUT)
            if hmac.compare_digest(line.rstrip(b"\n"), self._token):
                writer.write(self.write())  # written first: no page shows an unwritten count
                await writer.drain()
        except (TimeoutError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _ask(self, record: _Record) -> _Record | None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", record.port), ASK_TIMEOUT)
        except (TimeoutError, OSError):
            return None
        try:
            writer.write(self._token + b"\n")
            data = await asyncio.wait_for(reader.read(), ASK_TIMEOUT)
        except (TimeoutError, OSError):
            return None
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        answer = _record(data)
        return answer if answer is not None and answer.id == record.id else None

    # -- the page -------------------------------------------------------------------------

    def _read(self) -> _Files:
        with _locked(self.directory, exclusive=False):
            exited, folded, count = _read_exited(self.directory)
            workers = {}
            for path in self.directory.glob("*.json"):
                if path.name == EXITED or path.stem == self.id or path.stem in folded:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    record = _record(path.read_bytes())
                    if record is not None:
                        workers[record.id] = record
        return _Files(workers, exited, folded, count)

    def _fold(self, ids: set[str]) -> None:
        """Fold exited workers' files into ``exited.json``, then delete them. A crash
        between the two leaves their ids in ``folded``, so they are not counted twice."""
        with _locked(self.directory, exclusive=True):
            exited, folded, count = _read_exited(self.directory)
            gone = set(folded)
            shares = [exited]
            for worker_id in ids - gone:
                path = self.directory / f"{worker_id}.json"
                with contextlib.suppress(FileNotFoundError):
                    record = _record(path.read_bytes())
                    if record is not None and not _alive(record.pid):
                        shares.append(Share(record.families, live=False))
                        gone.add(worker_id)
                        count += 1
            still = {i for i in gone if (self.directory / f"{i}.json").exists()}
            merged = fold(shares)
            _write_atomically(self.directory / EXITED, orjson.dumps(
                {"families": merged.families, "folded": sorted(still), "count": count}))
            for worker_id in still:
                (self.directory / f"{worker_id}.json").unlink(missing_ok=True)
            if still:  # deleted now: the ids need not be remembered
                _write_atomically(self.directory / EXITED, orjson.dumps(
                    {"families": merged.families, "folded": [], "count": count}))

    async def render(self) -> bytes:
        """The page: this worker's families (collected now, and written to its file before
        anything is shown) with every other worker's figures added in."""
        families = self.metrics.families()
        self.pages += 1
        self._write(snapshot_of(families))
        files = await asyncio.to_thread(self._read)
        asked = [r for r in files.workers.values() if _alive(r.pid)]
        answers = await asyncio.gather(*(self._ask(r) for r in asked))
        answered = {a.id: a for a in answers if a is not None}
        files = await asyncio.to_thread(self._read)  # again: one may have exited meanwhile
        shares = [files.exited]
        states = {"answered": 1, "unanswered": 0, "exited": files.count}
        exited: set[str] = set()
        for worker_id, record in files.workers.items():
            if worker_id in answered:
                shares.append(Share(answered[worker_id].families))
                states["answered"] += 1
            elif _alive(record.pid):
                shares.append(Share(record.families))  # its last written figures
                states["unanswered"] += 1
            else:
                shares.append(Share(record.families, live=False))
                states["exited"] += 1
                exited.add(worker_id)
        page = [workers_family(states) if f.name == "relay_workers" else f
                for f in merge(families, shares)]
        if exited:
            try:
                await asyncio.to_thread(self._fold, exited)
            except OSError as exc:
                LOG.warning("metrics: cannot fold exited workers' figures: %s", exc)
        return generate_latest(_Page(page))


class _Page:
    """What ``generate_latest`` takes: something with ``collect()``."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families
