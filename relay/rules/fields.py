"""Typed reads of the raw rules tree that report mistakes instead of raising.

Every parser in the project (rule sections, pipeline step options, destination settings)
reads through ``At``: ``at.get("purpose").string()`` returns the value or ``None`` after
reporting ``R102 ...: expected a string, got a list``. Reading never stops at the first error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from relay.rules.diagnostics import Path, Reporter, dotted, suggest

T = TypeVar("T")

# Codes shared by all parsers; section-specific codes live with their parser (docs/errors.md).
UNKNOWN_KEY = "R101"
WRONG_TYPE = "R102"
MISSING_KEY = "R103"
BAD_VALUE = "R104"
UNKNOWN_CHOICE = "R105"
BAD_DURATION = "R106"
BAD_PATTERN = "R107"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}


def parse_duration(value: Any) -> float | None:
    """``"30m"`` -> 1800.0; ``90`` -> 90.0 (seconds); ``None`` when it is not a duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    return None


def type_name(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


class At:
    """A value in the rules tree, its key path, and the reporter its mistakes go to."""

    __slots__ = ("path", "rep", "value")

    def __init__(self, value: Any, path: Path, rep: Reporter) -> None:
        self.value = value
        self.path = path
        self.rep = rep

    def __repr__(self) -> str:
        return f"At({dotted(self.path)}={self.value!r})"

    @property
    def present(self) -> bool:
        return self.value is not None

    def error(self, code: str, message: str, hint: str | None = None) -> None:
        self.rep.error(self.path, code, message, hint)

    def wrong_type(self, expected: str) -> None:
        self.error(WRONG_TYPE, f"expected {expected}, got {type_name(self.value)}")

    # -- containers -------------------------------------------------------------------

    def mapping(
        self,
        allowed: Iterable[str] | None = None,
        required: Sequence[str] = (),
    ) -> dict[str, At] | None:
        """The mapping's entries as ``At`` values. Unknown and missing keys are reported."""
        if not isinstance(self.value, dict):
            self.wrong_type("a mapping")
            return None
        allowed_set = set(allowed) if allowed is not None else None
        out: dict[str, At] = {}
        for key, value in self.value.items():
            key_s = str(key)
            child = At(value, (*self.path, key_s), self.rep)
            if allowed_set is not None and key_s not in allowed_set:
                self.rep.error(
                    child.path,
                    UNKNOWN_KEY,
                    f"unknown key '{key_s}'",
                    suggest(key_s, allowed_set)
                    or f"expected one of: {', '.join(sorted(allowed_set))}",
                    key=True,
                )
                continue
            out[key_s] = child
        for key in required:
            if key not in out and key not in self.value:
                self.error(MISSING_KEY, f"missing required key '{key}'")
        return out

    def get(self, key: str) -> At:
        """The child at ``key`` (``At(None, ...)`` when absent); no report for absence."""
        value = self.value.get(key) if isinstance(self.value, dict) else None
        return At(value, (*self.path, key), self.rep)

    def items(self) -> list[At]:
        if not isinstance(self.value, list):
            self.wrong_type("a list")
            return []
        return [At(v, (*self.path, i), self.rep) for i, v in enumerate(self.value)]

    # -- scalars ----------------------------------------------------------------------

    def string(self, default: str | None = None, *, allow_empty: bool = False) -> str | None:
        if self.value is None:
            return default
        if isinstance(self.value, bool) or not isinstance(self.value, str | int | float):
            self.wrong_type("a string")
            return default
        text = str(self.value)
        if not text and not allow_empty:
            self.error(BAD_VALUE, "must not be empty")
            return default
        return text

    def number(self, default: float | None = None) -> float | None:
        if self.value is None:
            return default
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            self.wrong_type("a number")
            return default
        return float(self.value)

    def integer(self, default: int | None = None, *, minimum: int | None = None) -> int | None:
        if self.value is None:
            return default
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            self.wrong_type("a whole number")
            return default
        if minimum is not None and self.value < minimum:
            self.error(BAD_VALUE, f"must be at least {minimum}, got {self.value}")
            return default
        return self.value

    def boolean(self, default: bool | None = None) -> bool | None:
        if self.value is None:
            return default
        if not isinstance(self.value, bool):
            self.wrong_type("true or false")
            return default
        return self.value

    def choice(self, options: Sequence[str], default: str | None = None) -> str | None:
        text = self.string()
        if text is None:
            return default
        if text not in options:
            self.error(
                UNKNOWN_CHOICE,
                f"unknown value '{text}'",
                suggest(text, options) or f"expected one of: {', '.join(options)}",
            )
            return default
        return text

    def duration(self, default: float | None = None) -> float | None:
        if self.value is None:
            return default
        seconds = parse_duration(self.value)
        if seconds is None:
            self.error(
                BAD_DURATION,
                f"'{self.value}' is not a duration",
                "use a number of seconds or a number with ms, s, m, h, d or w, like 30m",
            )
            return default
        return seconds

    def string_list(self, *, allow_single: bool = True) -> tuple[str, ...] | None:
        """A list of strings; a lone string is taken as a list of one when allowed."""
        if self.value is None:
            return None
        if isinstance(self.value, str) and allow_single:
            return (self.value,)
        out: list[str] = []
        for item in self.items():
            text = item.string()
            if text is not None:
                out.append(text)
        return tuple(out) if isinstance(self.value, list) else None

    def regex(self) -> re.Pattern[str] | None:
        text = self.string()
        if text is None:
            return None
        try:
            return re.compile(text)
        except re.error as exc:
            self.error(BAD_PATTERN, f"invalid regular expression: {exc}")
            return None
