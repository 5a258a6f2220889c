"""One JSON log line per hop (SPEC section 6), with no personal data.

``hop("delivered", event_id=..., destination=..., status=200)`` writes
``{"ts": ..., "hop": "delivered", "event_id": ..., ...}`` to the ``relay.hops`` logger.
Callers pass only ids, names, outcomes and numbers; ``mask`` and ``digest`` exist for the
rare value that must be referred to without being shown.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import sys
import time
from collections.abc import Callable
from typing import IO, Any

import orjson

HOPS = logging.getLogger("relay.hops")
LOG = logging.getLogger("relay")

HOP_NAMES = (
    "received",
    "rejected",
    "quarantined",
    "duplicate",
    "held",
    "released",
    "expired",
    "suppressed",
    "dropped",
    "spooled",
    "delivered",
    "retried",
    "dead-lettered",
    "replayed",
)


class _LineWriter:
    """Hop lines written by ``relay serve``: buffered, one ``write`` per event-loop turn.

    Three or more lines per event through ``logging`` (a LogRecord, a formatter and a flush
    each) cost more than the rest of the ingest path; here a line is one ``orjson.dumps``.
    Outside a running loop (the CLI) every line is written at once.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.lines: list[bytes] = []

    def write(self, line: bytes) -> None:
        if not self.lines:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:
                self.lines.append(line)
                self.flush()
                return
        self.lines.append(line)

    def flush(self) -> None:
        lines, self.lines = self.lines, []
        if lines:
            try:
                self.stream.write(b"".join(lines))
                self.stream.flush()
            except (OSError, ValueError):  # a closed or full stderr must not break ingest
                pass


_writer: _LineWriter | None = None


HopListener = Callable[[str, dict[str, Any], float], None]
_listeners: list[HopListener] = []


def listen(listener: HopListener) -> Callable[[], None]:
    """Call ``listener(name, fields, unix time)`` for every hop (the delivery ledger); the
    function returned stops it. Listeners see the private fields too (names starting with
    ``_``: the ledger's consent snapshot, field names and subject hashes), which the log line
    never carries."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def hop(name: str, *, at: float | None = None, **fields: Any) -> None:
    """One hop: to every listener, and as a JSON line to the ``relay.hops`` logger without
    its private (``_``) and empty fields. ``at``: when it happened, if not now."""
    logged = HOPS.isEnabledFor(logging.INFO)
    if not logged and not _listeners:
        return
    now = time.time() if at is None else at
    for listener in _listeners:
        listener(name, fields, now)
    if not logged:
        return
    record: dict[str, Any] = {"ts": round(now, 3), "hop": name}
    for key, value in fields.items():  # one pass, no copy of the fields first
        if value is not None and key[0] != "_":
            record[key] = value
    if _writer is not None:
        _writer.write(orjson.dumps(record, default=str, option=orjson.OPT_APPEND_NEWLINE))
    else:
        HOPS.info(orjson.dumps(record, default=str).decode())


@functools.lru_cache(maxsize=4096)
def digest(value: str, length: int = 12) -> str:
    """A short one-way reference to a value (for correlation ids in logs and the debug view).
    Cached: a browser's correlation id comes back with each of its events."""
    return hashlib.sha256(value.encode()).hexdigest()[:length]


def mask(value: str) -> str:
    return value[:2] + "…" if len(value) > 4 else "…"


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if record.name == HOPS.name:
            return record.getMessage()
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def configure(level: str = "INFO", stream: IO[bytes] | None = None) -> None:
    """JSON lines to stderr for the ``relay`` loggers (``relay serve`` calls this); hop
    lines go straight to the stream, buffered per event-loop turn."""
    global _writer
    _writer = _LineWriter(stream or sys.stderr.buffer)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger("relay")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
