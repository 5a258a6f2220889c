"""Hops to ledger rows (pure): which hops a ledger keeps, and what each says about a copy.

    >>> rows("delivered", {"event_id": "e1", "destination": "ga4", "status": 204,
    ...                    "attempt": 1}, 1764331200.0).copy.outcome
    'delivered'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

# The hop names of ``relay trace`` (log lines write "dead-lettered").
TRACE_NAMES = {"dead-lettered": "dead_lettered"}
# Hops about one destination's copy, and the outcome each leaves it in.
COPY_OUTCOMES = frozenset({
    "suppressed", "held", "duplicate", "dropped", "spooled", "released", "delivered",
    "retried", "dead_lettered", "replayed",
})
DELIVERY = frozenset({"delivered", "retried", "dead_lettered"})


@dataclass(frozen=True, slots=True)
class HopRow:
    at: float
    event_id: str | None
    hop: str
    source: str | None
    event: str | None
    destination: str | None
    purpose: str | None
    status: int | None
    attempt: int | None
    reason: str | None
    fields: str | None  # JSON list of dotted names


@dataclass(frozen=True, slots=True)
class CopyRow:
    event_id: str
    destination: str
    outcome: str
    at: float
    source: str | None = None
    event: str | None = None
    consent: str | None = None  # JSON {purpose: state}
    schema: int | None = None
    fields: str | None = None
    attempt: int | None = None


@dataclass(frozen=True, slots=True)
class Rows:
    hop: HopRow
    copy: CopyRow | None
    people: tuple[str, ...]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def rows(name: str, fields: dict[str, Any], at: float) -> Rows:
    """What the ledger keeps of one hop."""
    hop = TRACE_NAMES.get(name, name)
    eid = _text(fields.get("event_id"))
    dest = _text(fields.get("destination"))
    sent = fields.get("_fields")
    names = orjson.dumps(sorted(sent)).decode() if isinstance(sent, list | tuple) else None
    reason = fields.get("reason")
    row = HopRow(
        at, eid, hop, _text(fields.get("source") or fields.get("_source")),
        _text(fields.get("event") or fields.get("_event")), dest,
        _text(fields.get("purpose")), _int(fields.get("status")), _int(fields.get("attempt")),
        str(reason) if reason is not None else None, names,
    )
    copy = None
    if eid is not None and dest is not None and hop in COPY_OUTCOMES:
        consent = fields.get("_consent", fields.get("consent"))
        copy = CopyRow(
            eid, dest, hop, at, row.source, row.event,
            orjson.dumps(consent, option=orjson.OPT_SORT_KEYS).decode()
            if isinstance(consent, dict) else None,
            _int(fields.get("_schema", fields.get("schema"))), names, row.attempt,
        )
    people = fields.get("_people")
    subjects = tuple(p for p in people if isinstance(p, str)) if isinstance(people, list) else ()
    return Rows(row, copy, subjects if eid is not None else ())
