"""Hops to ledger records (pure): what the ledger keeps of each hop, grouped per event.

The ledger thread gets hops as they were emitted (name, fields, unix time) and writes, per
event, ONE row for all of its hops seen in the same flush: the hops a request causes
(received, the decisions, spooled) arrive together, a delivery later. A row's ``hops`` is a
JSON list of objects with the columns of the ``hops`` view (``at``, ``hop``, ``source``,
``event``, ``destination``, ``purpose``, ``status``, ``attempt``, ``reason``, ``fields``,
plus ``consent`` and ``schema`` on ``spooled``); empty ones are left out.

    >>> record("dead-lettered", {"event_id": "e1", "destination": "ga4", "status": 400}, 1.5)
    ('e1', {'at': 1.5, 'hop': 'dead_lettered', 'destination': 'ga4', 'status': 400}, ())
"""

from __future__ import annotations

import functools
from typing import Any

import orjson

from relay.personal import may_hold_personal_data

# The hop names of ``relay trace`` (log lines write "dead-lettered").
TRACE_NAMES = {"dead-lettered": "dead_lettered"}
_PUBLIC = ("source", "event", "destination", "purpose", "reason")
_NUMBERS = ("status", "attempt")

Record = tuple[str | None, dict[str, Any], tuple[str, ...]]  # event_id, hop, subjects


def record(name: str, fields: dict[str, Any], at: float) -> Record:
    """What the ledger keeps of one hop: the event it is about, the hop's object, and the
    keyed subject hashes it links to that event (``received`` hops of identified users)."""
    hop: dict[str, Any] = {"at": at, "hop": TRACE_NAMES.get(name, name)}
    for key in _PUBLIC:
        value = fields.get(key)
        if value is None:
            value = fields.get("_" + key)
        if value is not None:
            hop[key] = value if isinstance(value, str) else str(value)
    for key in _NUMBERS:
        value = fields.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            hop[key] = value
    payload = fields.get("_payload")  # the spooled copy's JSON: only its field names are kept
    if isinstance(payload, bytes | bytearray | memoryview):
        try:
            hop["fields"] = field_names(orjson.loads(payload))
        except orjson.JSONDecodeError:
            hop["fields"] = []
    for key in ("consent", "schema"):
        value = fields.get(key, fields.get("_" + key))
        if value is not None:
            hop[key] = value
    eid = fields.get("event_id")
    people = fields.get("_people")
    subjects = tuple(p for p in people if isinstance(p, str)) if isinstance(people, list) else ()
    return (eid if isinstance(eid, str) else None), hop, subjects


def field_names(item: Any) -> list[str]:
    """The sorted dotted names of the leaves of a copy (``[]`` marks a list), never the
    values; a key that may hold personal data (a client's key could be an email) is named
    ``[redacted]``.

    >>> field_names({"user": {"em": ["x"]}, "value": 1})
    ['user.em[]', 'value']
    """
    out: set[str] = set()
    _names(item, "", out)
    return sorted(out)


@functools.lru_cache(maxsize=4096)
def _key(name: str) -> str:
    """A key as the ledger names it (keys repeat from event to event: cached)."""
    return "[redacted]" if may_hold_personal_data(name) else name


def _names(item: Any, prefix: str, out: set[str]) -> None:
    if isinstance(item, dict) and item:
        for key, value in item.items():
            name = _key(key if isinstance(key, str) else str(key))
            _names(value, f"{prefix}.{name}" if prefix else name, out)
    elif isinstance(item, list) and item:
        for value in item:
            _names(value, prefix + "[]", out)
    elif prefix:
        out.add(prefix)
