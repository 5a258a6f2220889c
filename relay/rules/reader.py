"""``Reader``: one parse run of the rules (the reporter, the catalog of what rules can
name, the references to check at the end) and the helpers every section's parser shares."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from relay.rules.catalog import Catalog
from relay.rules.codes import (
    BAD_AUTHORITY,
    BAD_FIELD_PATH,
    BAD_HEADER,
    BAD_NAME,
    EMPTY_SECRET,
    UNKNOWN_DESTINATION,
    UNKNOWN_EVENT,
    UNKNOWN_PIPELINE,
    UNKNOWN_PURPOSE,
    UNKNOWN_SOURCE,
)
from relay.rules.diagnostics import Reporter, suggest
from relay.rules.fields import BAD_VALUE, At
from relay.rules.model import Rules
from relay.rules.source import UNSET_VARIABLE, RawRules

NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_URL_PATH = re.compile(r"^(/[A-Za-z0-9._~%!$&'()*+,;=:@-]+)+$")
_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_DOTTED = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")
STALE_LINES_SHOWN = 12


def options(choices: Iterable[str]) -> str:
    """The hint that lists every allowed word."""
    return f"expected one of: {', '.join(sorted(choices))}"


@dataclass(frozen=True, slots=True)
class Ref:
    kind: str  # purpose | source | authority | event | pipeline | destination
    name: str
    at: At
    key: bool = False  # report at the key (a name used as a mapping key) rather than the value


_REF_CODES = {
    "purpose": UNKNOWN_PURPOSE, "source": UNKNOWN_SOURCE, "authority": UNKNOWN_SOURCE,
    "event": UNKNOWN_EVENT, "pipeline": UNKNOWN_PIPELINE, "destination": UNKNOWN_DESTINATION,
}
_REF_SECTIONS = {
    "purpose": "purposes", "source": "sources", "authority": "sources", "event": "events",
    "pipeline": "pipelines", "destination": "destinations",
}


class Reader:
    """One parse run: the reporter, the references to check at the end, shared helpers."""

    def __init__(self, raw: RawRules, catalog: Catalog) -> None:
        self.raw = raw
        self.catalog = catalog
        self.rep: Reporter = raw.reporter
        self.refs: list[Ref] = []
        self.root = At(raw.tree, (), self.rep)

    def ref(self, kind: str, at: At) -> str | None:
        """The name at ``at``, recorded to be checked against section ``kind``."""
        name = at.string()
        if name is not None:
            self.refs.append(Ref(kind, name, at))
        return name

    def refer(self, kind: str, name: str, at: At, *, key: bool = False) -> None:
        """Record ``name`` (read by the caller) to be checked against section ``kind``."""
        self.refs.append(Ref(kind, name, at, key))

    @staticmethod
    def options(choices: Iterable[str]) -> str:
        return options(choices)

    def entries(
        self, at: At, pattern: re.Pattern[str] = NAME, code: str = BAD_NAME,
        hint: str = "use letters, digits, '_', '.' and '-', at most 64 characters",
        skip: str = "",
    ) -> list[tuple[str, At]]:
        """A named section's entries; a key that is not a usable name is reported."""
        if not at.present:
            return []
        children = at.mapping()
        out: list[tuple[str, At]] = []
        for key, child in (children or {}).items():
            if key == skip:
                continue
            if pattern.match(key):
                out.append((key, child))
            else:
                self.rep.error(child.path, code, f"'{key}' is not a valid name", hint, key=True)
        return out

    def header(self, at: At) -> str | None:
        text = at.string()
        if text is not None and not _HEADER.match(text):
            at.error(BAD_HEADER, f"'{text}' is not an HTTP header name",
                     "use letters, digits and '-', like CF-IPCountry")
            return None
        return text

    def is_token(self, text: str) -> bool:
        """An HTTP token: a header or cookie name."""
        return bool(_HEADER.match(text))

    def secrets(self, at: At, what: str) -> tuple[str, ...]:
        """A secret or a list of them (newest last); empty ones (an unset ``${VAR:-}``) drop."""
        items = at.items() if isinstance(at.value, list) else [at]
        found = tuple(s for s in (i.string(allow_empty=True) for i in items) if s)
        unset = any(d.code == UNSET_VARIABLE and d.path[: len(at.path)] == at.path
                    for d in self.rep.diagnostics)
        if not found and not unset:
            at.error(EMPTY_SECRET, f"the {what} is empty",
                     "set the environment variable it comes from")
        return found

    def positive(self, at: At, default: float) -> float:
        seconds = at.duration(default)
        if seconds is not None and seconds <= 0:
            at.error(BAD_VALUE, "must be more than zero")
            return default
        return default if seconds is None else seconds

    def url_path(self, at: At, code: str, example: str) -> str | None:
        text = at.string()
        if text is not None and not _URL_PATH.match(text):
            at.error(code, f"'{text}' is not a path that starts with '/' and does not end with '/'",
                     f"like {example}")
            return None
        return text

    def is_dotted(self, text: str) -> bool:
        return bool(_DOTTED.match(text))

    def dotted_list(self, at: At) -> tuple[str, ...]:
        out: list[str] = []
        for item in at.items() if at.present else ():
            text = item.string()
            if text is not None and not _DOTTED.match(text):
                item.error(BAD_FIELD_PATH, f"'{text}' is not a dotted field path",
                           "like context.page.url")
            elif text is not None:
                out.append(text)
        return tuple(out)

    def check_refs(self, rules: Rules) -> None:
        stale: dict[tuple[str, str], list[Ref]] = {}  # (file, name): test expectations
        for ref in self.refs:
            section = self.raw.tree.get(_REF_SECTIONS[ref.kind])
            known = {k for k in section if k != "*"} if isinstance(section, dict) else set()
            noun = "source" if ref.kind == "authority" else ref.kind
            if ref.name in known:
                source = rules.sources.get(ref.name)
                if ref.kind == "authority" and source is not None and source.type == "browser":
                    ref.at.error(BAD_AUTHORITY, f"source '{ref.name}' is a browser source",
                                 "the authority must be a webhook or segment source")
                continue
            if ref.kind == "event" and rules.events.fallback == "accept":
                continue  # events without a contract are accepted, so any name can arrive
            if ref.kind == "destination" and ref.at.path[:1] == ("tests",):
                file = self.rep.mark(ref.at.path, key=ref.key).file
                stale.setdefault((file, ref.name), []).append(ref)
                continue
            hint = suggest(ref.name, known) or (
                f"defined {noun}s: {', '.join(sorted(known))}" if known
                else f"no {noun}s are defined; add it under '{_REF_SECTIONS[ref.kind]}:'"
            )
            self.rep.error(ref.at.path, _REF_CODES[ref.kind], f"unknown {noun} '{ref.name}'",
                           hint, key=ref.key)
        for (file, name), refs in stale.items():
            self._stale_tests(file, name, refs)

    def _stale_tests(self, file: str, name: str, refs: list[Ref]) -> None:
        """Tests that expect a destination the rules no longer define: one diagnostic per
        file and name (a renamed destination leaves every case naming the old name)."""
        section = self.raw.tree.get("destinations")
        known = set(section) if isinstance(section, dict) else set()
        first = refs[0]
        if len(refs) == 1:
            hint = suggest(name, known) or (
                f"defined destinations: {', '.join(sorted(known))}" if known
                else "no destinations are defined; add it under 'destinations:'")
            self.rep.error(first.at.path, UNKNOWN_DESTINATION, f"unknown destination '{name}'",
                           hint, key=first.key)
            return
        lines = [self.rep.mark(r.at.path, key=r.key).line for r in refs]
        shown = ", ".join(str(n) for n in lines[:STALE_LINES_SHOWN])
        if len(lines) > STALE_LINES_SHOWN:
            shown += ", ..."
        where = f"in the expect of the cases at lines {shown}"
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        if close:
            hint = (f"did you rename it to '{close[0]}'? then rename it too {where}, or remove "
                    "it there")
        elif known:
            hint = (f"the destinations are {', '.join(sorted(known))}: rename '{name}' to one "
                    f"of them {where}, or remove it there")
        else:
            hint = f"no destinations are defined: remove '{name}' {where}"
        self.rep.error(
            first.at.path, UNKNOWN_DESTINATION,
            f"{len(refs)} test cases in {file} expect destination '{name}', which the rules do "
            "not define: the tests are stale",
            hint,
            key=first.key,
        )
