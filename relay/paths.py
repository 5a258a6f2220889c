"""Dotted paths into events: ``get(event, "context.page.url")``.

Paths are dot-separated keys; there is no list indexing (rules address named fields).
"""

from __future__ import annotations

from typing import Any, Final


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


def split(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def get(obj: Any, path: str | tuple[str, ...]) -> Any:
    """The value at ``path``, or ``MISSING``."""
    for key in split(path) if isinstance(path, str) else path:
        if not isinstance(obj, dict) or key not in obj:
            return MISSING
        obj = obj[key]
    return obj


def set_(obj: dict[str, Any], path: str | tuple[str, ...], value: Any) -> None:
    """Set ``path``, creating (or replacing non-mapping) parents as needed."""
    keys = split(path) if isinstance(path, str) else path
    for key in keys[:-1]:
        nxt = obj.get(key)
        if not isinstance(nxt, dict):
            nxt = obj[key] = {}
        obj = nxt
    obj[keys[-1]] = value


def delete(obj: dict[str, Any], path: str | tuple[str, ...]) -> bool:
    """Remove ``path``; True when something was removed."""
    keys = split(path) if isinstance(path, str) else path
    for key in keys[:-1]:
        nxt = obj.get(key)
        if not isinstance(nxt, dict):
            return False
        obj = nxt
    return obj.pop(keys[-1], MISSING) is not MISSING
