"""Paths of a vendor item, in ``FieldMap.theirs``'s form (dotted, ``[]`` for a list)."""

from __future__ import annotations

from typing import Any


def leaf_paths(value: Any, prefix: str = "") -> set[str]:
    """``{"a": {"b": [1, {"c": 2}]}}`` -> ``{"a.b[]", "a.b[].c"}``: every path that holds a
    value that is not an object (a list of scalars is one path, ``a.b[]``)."""
    out: set[str] = set()
    if isinstance(value, dict):
        for key, child in value.items():
            out |= leaf_paths(child, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for child in value:
            out |= leaf_paths(child, prefix + "[]") if isinstance(child, dict | list) else {
                prefix + "[]"}
        if not value:
            out.add(prefix + "[]")
    else:
        out.add(prefix)
    return out
