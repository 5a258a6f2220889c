"""Field steps: ``drop`` named fields, ``allow`` only named fields, ``set`` fixed values.

    - drop: [properties.internal_note, user.id]
    - allow: [properties.value, properties.currency, context.page.url]
    - set: {properties.currency: EUR, context.app: shop}

``allow`` always keeps the envelope's own keys (``ALWAYS_KEPT``). Also home to the option
readers shared by the other steps (dotted path lists, a required choice).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from relay.fieldset import FieldSet, shape
from relay.paths import delete, set_
from relay.rules.fields import BAD_VALUE, MISSING_KEY, At
from relay.types import Event, StepContext

ALWAYS_KEPT = frozenset({"event", "event_id", "time", "source", "received_at", "schema", "consent"})
MAX_NOTED_PATHS = 10


# -- option readers shared by the steps ---------------------------------------------------


def valid_path(path: str) -> bool:
    return bool(path) and all(path.split("."))


def parse_paths(at: At) -> tuple[str, ...]:
    """A list of dotted field paths (a lone string is a list of one)."""
    if at.value is None:
        at.error(MISSING_KEY, "expected a list of field paths", "like [user.email, user.phone]")
        return ()
    items = [at] if isinstance(at.value, str) else at.items()
    out: list[str] = []
    for item in items:
        path = item.string()
        if path is None:
            continue
        if valid_path(path):
            out.append(path)
        else:
            item.error(BAD_VALUE, f"'{path}' is not a dotted field path", "like user.email")
    return tuple(out)


def parse_choice(at: At, options: Sequence[str], default: str) -> str:
    """One of ``options``; a missing value is an error too."""
    if at.value is None:
        at.error(MISSING_KEY, "expected a value", f"one of: {', '.join(options)}")
        return default
    return at.choice(options, default) or default


# -- drop ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DropOptions:
    paths: tuple[str, ...]


def parse_drop(at: At) -> DropOptions:
    return DropOptions(parse_paths(at))


def paths_drop(fields: FieldSet, options: DropOptions) -> FieldSet:
    for path in options.paths:
        fields = fields.drop(path)
    return fields


def apply_drop(event: Event, options: DropOptions, ctx: StepContext) -> Event:
    """Remove each listed field that is present."""
    for path in options.paths:
        if delete(event, path):
            ctx.count("drop", 1, f"dropped {path}")
    return event


# -- allow --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AllowOptions:
    paths: tuple[str, ...]


def parse_allow(at: At) -> AllowOptions:
    return AllowOptions(parse_paths(at))


Trie = dict[str, "Trie"]  # an empty node keeps the whole value below it


@functools.lru_cache(maxsize=256)
def _trie(paths: tuple[str, ...]) -> Trie:
    root: Trie = {}
    for path in paths:
        node = root
        keys = path.split(".")
        for i, key in enumerate(keys):
            if key in node and not node[key]:
                break  # an ancestor is already kept whole
            if i == len(keys) - 1:
                node[key] = {}
            else:
                node = node.setdefault(key, {})
    return root


def _prune(obj: dict[str, Any], trie: Trie, prefix: str, removed: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        node = trie.get(key)
        if node is None:
            removed.append(prefix + key)
        elif not node:
            out[key] = value
        elif isinstance(value, dict):
            kept = _prune(value, node, f"{prefix}{key}.", removed)
            if kept:
                out[key] = kept
        else:
            removed.append(prefix + key)
    return out


def paths_allow(fields: FieldSet, options: AllowOptions) -> FieldSet:
    return fields.only(options.paths, ALWAYS_KEPT)


def apply_allow(event: Event, options: AllowOptions, ctx: StepContext) -> Event:
    """Keep only the listed fields (and ``ALWAYS_KEPT``); everything else is removed."""
    return _allow(event, _trie(options.paths), ctx)


def bind_allow(options: AllowOptions) -> Callable[[Event, StepContext], Event]:
    """The step with its paths made into a trie once."""
    trie = _trie(options.paths)
    return lambda event, ctx: _allow(event, trie, ctx)


def _allow(event: Event, trie: Trie, ctx: StepContext) -> Event:
    removed: list[str] = []
    out: Event = {}
    for key, value in event.items():
        if key in ALWAYS_KEPT:
            out[key] = value
            continue
        node = trie.get(key)
        if node is None:
            removed.append(key)
        elif not node:
            out[key] = value
        elif isinstance(value, dict):
            kept = _prune(value, node, key + ".", removed)
            if kept:
                out[key] = kept
        else:
            removed.append(key)
    if removed:
        listed = ", ".join(removed[:MAX_NOTED_PATHS])
        extra = len(removed) - MAX_NOTED_PATHS
        more = f" and {extra} more" if extra > 0 else ""
        ctx.count("allow", len(removed), f"removed fields not allowed: {listed}{more}")
    return out


# -- set ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetOptions:
    values: tuple[tuple[str, Any], ...]


def parse_set(at: At) -> SetOptions:
    entries = at.mapping()
    if entries is None:
        return SetOptions(())
    out: list[tuple[str, Any]] = []
    for path, entry in entries.items():
        if not valid_path(path):
            entry.error(BAD_VALUE, f"'{path}' is not a dotted field path", "like properties.x")
            continue
        out.append((path, entry.value))
    return SetOptions(tuple(out))


def paths_set(fields: FieldSet, options: SetOptions) -> FieldSet:
    for path, value in options.values:
        fields = fields.put(path, shape(value))
    return fields


def apply_set(event: Event, options: SetOptions, ctx: StepContext) -> Event:
    """Set each path to its value, creating parents as needed."""
    for path, value in options.values:
        set_(event, path, copy.deepcopy(value) if isinstance(value, dict | list) else value)
    return event
