"""``file``: append each event as one JSON line (JSONL) to a local file.

A batch is written with ONE ``os.write`` on an ``O_APPEND`` descriptor, so batches from
concurrent workers (or processes) never interleave inside a line. ``fsync: true`` makes each
batch durable before it is acknowledged; by default the page cache is trusted, as for any log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from relay.errors import Retryable
from relay.rules.fields import At
from relay.types import DestinationDef, Event

MAX_BATCH = 500
FILE_MODE = 0o640  # events may hold (hashed) personal data: not world-readable


@dataclass(frozen=True, slots=True)
class FileSettings:
    path: str
    fsync: bool = False


def parse_settings(at: At) -> FileSettings | None:
    entries = at.mapping(allowed=("path", "fsync"), required=("path",))
    if entries is None:
        return None
    path = at.get("path").string()
    fsync = at.get("fsync").boolean(False)
    if path is None:
        return None
    return FileSettings(path=path, fsync=bool(fsync))


def place(settings: FileSettings, resolve: Callable[[str], str]) -> FileSettings:
    """The settings with ``path`` resolved (under the var directory, by ``relay serve``)."""
    return dataclasses.replace(settings, path=resolve(settings.path))


def render(events: Sequence[Event]) -> bytes:
    """The JSONL bytes for a batch: one line per event."""
    return b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in events)


def _append(path: str, data: bytes, fsync: bool) -> None:
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    try:
        view = memoryview(data)
        while view:  # a regular file takes it all at once unless the disk fills up
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


INLINE_BYTES = 64 * 1024  # smaller appends cost less than the hand-off to a thread


async def write(events: Sequence[Event], settings: FileSettings) -> None:
    data = render(events)
    try:
        if settings.fsync or len(data) > INLINE_BYTES:
            await asyncio.to_thread(_append, settings.path, data, settings.fsync)
        else:  # a page-cache append of a few KB: microseconds, no thread needed
            _append(settings.path, data, False)
    except OSError as exc:
        raise Retryable(f"file {settings.path}: {exc.strerror or exc}") from exc


DESTINATION = DestinationDef(
    parse_settings=parse_settings,
    max_batch=MAX_BATCH,
    write=write,
    place=place,
    vendor="none: a file on the relay's host (settings.path)",
    doc="Append events as JSON lines to settings.path (a relative path is under the var "
    "directory; optionally fsync each batch).",
)
