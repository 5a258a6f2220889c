"""One JSON log line per hop (SPEC section 6), with no personal data.

``hop("delivered", event_id=..., destination=..., status=200)`` writes
``{"ts": ..., "hop": "delivered", "event_id": ..., ...}`` to the ``relay.hops`` logger.
Callers pass only ids, names, outcomes and numbers; ``mask`` and ``digest`` exist for the
rare value that must be referred to without being shown.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from typing import Any

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


def hop(name: str, **fields: Any) -> None:
    if HOPS.isEnabledFor(logging.INFO):
        record = {"ts": round(time.time(), 3), "hop": name}
        record.update({k: v for k, v in fields.items() if v is not None})
        HOPS.info(orjson.dumps(record, default=str).decode())


def digest(value: str, length: int = 12) -> str:
    """A short one-way reference to a value (for correlation ids in logs and the debug view)."""
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


def configure(level: str = "INFO") -> None:
    """JSON lines to stderr for the ``relay`` loggers (``relay serve`` calls this)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger("relay")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
