"""Diagnostics for rule files: every problem names file, line, column, code and key path.

A ``Diagnostic`` renders as one line (wrapped here)::

    rules/destinations.yaml:14:14: R204 destinations.ga4.purpose: unknown purpose 'analytic'
        (did you mean 'analytics'?)

Parsers never raise on a user mistake: they report to a ``Reporter`` and carry on, so one
``relay check`` run lists every error. The codes are listed with their fixes in docs/errors.md.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Mark:
    file: str
    line: int  # 1-based
    col: int  # 1-based


UNKNOWN_MARK = Mark("<rules>", 0, 0)


def dotted(path: Path) -> str:
    """``("destinations", "ga4", "events", 0)`` -> ``destinations.ga4.events[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


@dataclass(frozen=True, slots=True)
class Diagnostic:
    mark: Mark
    code: str
    path: Path
    message: str
    hint: str | None = None
    severity: str = "error"

    def render(self) -> str:
        where = f"{self.mark.file}:{self.mark.line}:{self.mark.col}"
        text = f"{where}: {self.code} {dotted(self.path) or '<top>'}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


def suggest(word: str, choices: Iterable[str]) -> str | None:
    """A 'did you mean' hint for a near miss, or None."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


@dataclass
class Reporter:
    """Collects diagnostics; ``marks`` maps key paths to where their value starts.

    ``key_marks`` maps a path to where its *key* starts, which is where an unknown or
    misspelt key is reported.
    """

    marks: dict[Path, Mark] = field(default_factory=dict)
    key_marks: dict[Path, Mark] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def mark(self, path: Path, *, key: bool = False) -> Mark:
        table = self.key_marks if key else self.marks
        probe = path
        while probe:
            if probe in table:
                return table[probe]
            if not key and probe in self.marks:
                return self.marks[probe]
            probe = probe[:-1]
        return UNKNOWN_MARK

    def error(
        self, path: Path, code: str, message: str, hint: str | None = None, *, key: bool = False
    ) -> None:
        self.diagnostics.append(Diagnostic(self.mark(path, key=key), code, path, message, hint))

    def warning(
        self, path: Path, code: str, message: str, hint: str | None = None, *, key: bool = False
    ) -> None:
        self.diagnostics.append(
            Diagnostic(self.mark(path, key=key), code, path, message, hint, severity="warning")
        )

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    def sorted(self) -> list[Diagnostic]:
        return sorted(self.diagnostics, key=lambda d: (d.mark.file, d.mark.line, d.mark.col))


class RulesError(Exception):
    """Raised by ``load_rules`` when a rules directory has errors; carries all of them."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        super().__init__("\n".join(d.render() for d in diagnostics))
