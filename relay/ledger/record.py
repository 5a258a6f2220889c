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
# Each kept field with the private name a hop may give it instead.
_PUBLIC = tuple((k, "_" + k) for k in ("source", "event", "destination", "purpose", "reason"))
_KEPT = (("consent", "_consent"), ("schema", "_schema"))
_NUMBERS = ("status", "attempt")

Record = tuple[str | None, dict[str, Any], tuple[str, ...]]  # event_id, hop, subjects


def record(name: str, fields: dict[str, Any], at: float) -> Record:
    """What the ledger keeps of one hop: the event it is about, the hop's object, and the
    keyed subject hashes it links to that event (``received`` hops of identified users)."""
    get = fields.get
    hop: dict[str, Any] = {"at": at, "hop": TRACE_NAMES.get(name, name)}
    for key, private in _PUBLIC:
        value = get(key)
        if value is None:
            value = get(private)
        if value is not None:
            hop[key] = value if type(value) is str else str(value)
    for key in _NUMBERS:
        value = get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            hop[key] = value
    payload = get("_payload")  # the spooled copy's JSON: only its field names are kept
    if isinstance(payload, bytes | bytearray | memoryview):
        try:
            hop["fields"] = field_names(orjson.loads(payload))
        except orjson.JSONDecodeError:
            hop["fields"] = []
    for key, private in _KEPT:
        value = get(key, get(private))
        if value is not None:
            hop[key] = value
    eid = get("event_id")
    people = get("_people")
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
    if isinstance(item, dict | list) and item:
        _names(item, "", out)
        out.discard("")  # a top-level "" key names nothing
    return sorted(out)


@functools.lru_cache(maxsize=4096)
def _key(name: str) -> str:
    """A key as the ledger names it (keys repeat from event to event: cached)."""
    return "[redacted]" if may_hold_personal_data(name) else name


# Values that are always leaves, by exact type: most of a copy, named without a call.
_LEAVES = frozenset({str, int, float, bool, type(None)})
# (prefix, the dict's keys in order) -> their dotted names: copies repeat their shapes.
_SHAPES: dict[tuple[str, tuple[Any, ...]], tuple[str, ...]] = {}
SHAPES_KEPT = 4096


def _named(prefix: str, keys: tuple[Any, ...]) -> tuple[str, ...]:
    dot = prefix + "." if prefix else ""
    names = tuple(dot + _key(k if isinstance(k, str) else str(k)) for k in keys)
    if len(_SHAPES) >= SHAPES_KEPT:  # clients' own keys: bounded
        _SHAPES.clear()
    _SHAPES[prefix, keys] = names
    return names


def _names(item: dict[Any, Any] | list[Any], prefix: str, out: set[str]) -> None:
    """The leaves under a non-empty dict or list (every copy a hop names goes through here:
    scalars are named in the loop, only non-empty containers recurse)."""
    leaves = _LEAVES
    if isinstance(item, dict):
        keys = tuple(item)
        names = _SHAPES.get((prefix, keys)) or _named(prefix, keys)
        for name, value in zip(names, item.values(), strict=True):
            if type(value) in leaves or not value or not isinstance(value, dict | list):
                out.add(name)
            else:
                _names(value, name, out)
        return
    name = prefix + "[]"
    for value in item:
        if type(value) in leaves or not value or not isinstance(value, dict | list):
            out.add(name)
        else:
            _names(value, name, out)
