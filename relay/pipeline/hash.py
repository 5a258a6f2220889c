"""``hash``: normalize identifiers, then replace them by their SHA-256 (lowercase hex).

    - hash: [user.email, user.phone]
    # "John_Smith@Gmail.com " -> sha256("john_smith@gmail.com")
    # "+1 (555) 010-0000"     -> sha256("+15550100000")

Normalization follows the ad platforms' matching rules: a field whose name contains
``phone`` (or is ``tel`` / ``mobile``) keeps its digits and a leading ``+``; every other
field (email, names, ids) is trimmed and lowercased. A value that already is 64 hex digits
is taken as hashed and left alone. A value that cannot be hashed (an object, a list, a
boolean, or empty after normalization) is removed rather than sent in the clear.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from relay.fieldset import FieldSet
from relay.paths import split
from relay.personal import HEX64, is_phone_field, normalize_identifier
from relay.pipeline.fields import parse_paths
from relay.rules.fields import At
from relay.types import Event, StepContext


@dataclass(frozen=True, slots=True)
class HashOptions:
    paths: tuple[str, ...]


def parse(at: At) -> HashOptions:
    return HashOptions(parse_paths(at))


def normalize(name: str, value: str) -> str:
    """The canonical form of ``value`` for the field ``name`` (its last path segment)."""
    return normalize_identifier(value, is_phone_field(name))


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None


@functools.lru_cache(maxsize=256)
def _target(path: str) -> tuple[tuple[str, ...], str, bool]:
    """``path`` taken apart once: (parent keys, field name, is a phone field)."""
    parent, _, name = path.rpartition(".")
    return (split(parent) if parent else ()), name, is_phone_field(name)


def paths(fields: FieldSet, options: HashOptions) -> FieldSet:
    """Each listed field hashed (or removed: a value that cannot be hashed goes)."""
    for path in options.paths:
        fields = fields.hash(path)
    return fields


@functools.lru_cache(maxsize=64)
def bind(options: HashOptions) -> Callable[[Event, StepContext], Event]:
    """The step with its paths taken apart once."""
    targets = tuple((path, *_target(path), f"hashed {path}", f"removed {path} (nothing to hash)")
                    for path in options.paths)

    def hash_fields(event: Event, ctx: StepContext) -> Event:
        for _path, keys, name, phone, hashed, removed in targets:
            parent: Any = event
            for key in keys:
                parent = parent.get(key) if isinstance(parent, dict) else None
            if not isinstance(parent, dict):
                continue
            value = parent.get(name)
            if value is None:
                continue
            text = value if isinstance(value, str) else _as_text(value)
            if text is not None and len(text) == 64 and HEX64.fullmatch(text):
                continue  # already hashed
            normalized = normalize_identifier(text, phone) if text is not None else ""
            if not normalized:
                del parent[name]
                ctx.count("hash", 1, removed)
                continue
            parent[name] = sha256_hex(normalized)
            ctx.count("hash", 1, hashed)
        return event

    return hash_fields


def apply(event: Event, options: HashOptions, ctx: StepContext) -> Event:
    return bind(options)(event, ctx)
