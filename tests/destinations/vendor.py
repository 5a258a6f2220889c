"""Helpers for the vendor destination tests: real rule files checked by the real loader (so
mistakes come out as ``file:line:col`` lines), an engine on them, and the check that a vendor
item holds only what the type's ``fields`` declare."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from relay.engine import Engine
from relay.observe.mask import Masker
from relay.observe.metrics import Metrics
from relay.registry import check_rules
from relay.rules.model import Rules
from relay.state.memory import MemoryState
from relay.types import FieldMap

BASE = Path(__file__).resolve().parents[1] / "docs_base" / "base.yaml"
MASKER = Masker(b"test-masking-key-0123456789")


def rules_with(tmp_path: Path, text: str) -> tuple[Rules | None, list[str]]:
    """The small complete base rules plus ``text`` as ``dest.yaml``: (rules, rendered
    diagnostics, their file names relative to the rules directory)."""
    directory = tmp_path / "rules"
    directory.mkdir(exist_ok=True)
    shutil.copyfile(BASE, directory / "base.yaml")
    (directory / "dest.yaml").write_text(text)
    rules, diagnostics = check_rules(directory, {})
    prefix = f"{directory}/"
    return rules, [d.render().replace(prefix, "") for d in diagnostics]


def engine(rules: Rules) -> Engine:
    return Engine(rules, MemoryState(1000, 3600), Metrics(), MASKER)


def leaf_paths(value: Any, prefix: str = "") -> set[str]:
    """Every leaf of a JSON tree as a dotted path, lists marked ``[]``:
    ``{"a": [{"b": 1}]}`` -> ``{"a[].b"}``."""
    if isinstance(value, dict):
        out: set[str] = set()
        for key, child in value.items():
            out |= leaf_paths(child, f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(value, list):
        out = set()
        for child in value:
            out |= leaf_paths(child, prefix + "[]")
        return out or {prefix + "[]"}
    return {prefix}


def _segments(path: str) -> list[str]:
    return path.split(".")


def covered(path: str, theirs: Iterable[str]) -> bool:
    """Whether ``path`` is one of the ``theirs`` patterns (``*`` is any one key)."""
    want = _segments(path)
    for pattern in theirs:
        have = _segments(pattern)
        if len(have) != len(want):
            continue
        pairs = zip(have, want, strict=True)
        if all(h in (w, "*") or (h == "*[]" and w.endswith("[]")) for h, w in pairs):
            return True
    return False


def uncovered(item: Any, fields: Iterable[FieldMap]) -> set[str]:
    """The paths of ``item`` no ``FieldMap`` declares (the test asserts there is none)."""
    theirs = [f.theirs for f in fields]
    return {p for p in leaf_paths(item) if not covered(p, theirs)}
