"""Does a vendor item hold only what the destination's ``fields`` say it can send?

``uncovered(item, fields, event)`` lists the item's leaf paths that no ``FieldMap`` names.
A ``*`` in ``theirs`` stands for one key, and only counts when the event has that key at
the ``ours`` path (``properties.*`` covers ``properties.plan`` only when the event has
``properties.plan``), so a wildcard cannot hide an invented field.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from relay.types import Event, FieldMap


def leaf_paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(value, dict) and value:
        return [p for k, v in value.items() for p in leaf_paths(v, (*prefix, str(k)))]
    if isinstance(value, list) and value:
        return [p for v in value for p in leaf_paths(v, (*prefix[:-1], prefix[-1] + "[]"))]
    return [prefix]


def _has(event: Event, dotted: str) -> bool:
    value: Any = event
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return False
        value = value[key]
    return True


def _covers(fm: FieldMap, path: tuple[str, ...], event: Event) -> bool:
    theirs = fm.theirs.split(".")
    if len(theirs) > len(path):
        return False
    ours = fm.ours
    for mine, seen in zip(theirs, path, strict=False):
        if mine == "*":
            ours = ours.replace("*", seen.removesuffix("[]"), 1)
        elif mine != seen:
            return False
    return "*" not in fm.theirs or _has(event, ours)


def uncovered(item: Event, fields: Sequence[FieldMap], event: Event,
              constants: Iterable[str] = ()) -> list[str]:
    fixed = set(constants)
    out = []
    for path in leaf_paths(item):
        dotted = ".".join(path)
        if dotted in fixed or any(_covers(fm, path, event) for fm in fields):
            continue
        out.append(dotted)
    return out
