"""``relay diff``: shadow mode. Recorded events through two rule sets, and what changes.

Each line of the events file is a recorded request, as ``relay.sample`` writes them and as a
rule test's ``given`` reads (``{"source": ..., "headers": {...}, "event": {...}}``), or a
bare envelope (``{"event": "page_view", ...}``, taken as from the rules' browser source). The
events run in file order through each rule set's real engine, in memory, each set with its
own state (so dedup, authority holds and consent memory behave as they would live); per
event and destination the two outcomes are compared, and for copies delivered under both, the
names of their fields.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from relay.engine import Engine
from relay.ledger.record import field_names
from relay.observe.mask import Masker
from relay.observe.metrics import Metrics
from relay.rules.model import Given, Rules
from relay.state.memory import MemoryState
from relay.testing import meta_for, outcomes

ABSENT = "absent"  # the destination is not in that rule set


@dataclass
class Change:
    event_id: str
    destination: str
    before: str
    after: str
    fields_added: list[str] = field(default_factory=list)
    fields_removed: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "destination": self.destination,
                "before": self.before, "after": self.after,
                "fields_added": self.fields_added, "fields_removed": self.fields_removed}


@dataclass
class Report:
    events: int = 0
    changes: list[Change] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "line N: why"

    def as_json(self) -> dict[str, Any]:
        return {"events": self.events, "changes": [c.as_json() for c in self.changes],
                "skipped": self.skipped}


def given_of(record: Any, rules: Rules) -> Given | str:
    """The ``Given`` a line describes, or why it cannot be run against ``rules``."""
    if isinstance(record, str):  # what read_lines says of a line that is not JSON
        return record
    if not isinstance(record, dict):
        return "not a JSON object"
    if isinstance(record.get("event"), dict):
        source = record.get("source")
        headers = record.get("headers") or {}
        if not isinstance(source, str) or not isinstance(headers, dict):
            return "source must be a name and headers an object"
        if source not in rules.sources:
            return f"source '{source}' is not in the rules"
        return Given(source, record["event"], {str(k): str(v) for k, v in headers.items()})
    browser = next((s.name for s in rules.sources.values() if s.type == "browser"), None)
    if browser is None:
        return "a bare envelope needs a browser source in the rules"
    return Given(browser, record)


class _Side:
    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        state = MemoryState(rules.relay.dedup_max_keys, rules.relay.dedup_window)
        self.engine = Engine(rules, state, Metrics(), Masker(os.urandom(32)))

    async def run(self, given: Given) -> tuple[str | None, dict[str, tuple[str, Any]]]:
        batch = await self.engine.process([given.event], meta_for(self.rules, given))
        result = batch.results[0]
        got = outcomes(self.rules, result, batch.releases)
        return result.event_id, {d: (o, sent) for d, (o, _, sent) in got.items()}


async def diff(before: Rules, after: Rules, records: Iterable[tuple[int, Any]]) -> Report:
    """Run ``records`` (line number, parsed line) through both rule sets."""
    report = Report()
    old, new = _Side(before), _Side(after)
    for number, record in records:
        givens = [given_of(record, r) for r in (before, after)]
        problem = next((g for g in givens if isinstance(g, str)), None)
        if problem is not None:
            report.skipped.append(f"line {number}: {problem}")
            continue
        assert isinstance(givens[0], Given) and isinstance(givens[1], Given)
        eid_before, was = await old.run(givens[0])
        eid_after, now = await new.run(givens[1])
        report.events += 1
        eid = str(givens[0].event.get("event_id") or eid_after or eid_before or f"line {number}")
        for dest in sorted(set(was) | set(now)):
            b, b_sent = was.get(dest, (ABSENT, None))
            a, a_sent = now.get(dest, (ABSENT, None))
            b_names = set(field_names(b_sent)) if b_sent is not None else set()
            a_names = set(field_names(a_sent)) if a_sent is not None else set()
            added, removed = sorted(a_names - b_names), sorted(b_names - a_names)
            if b != a or added or removed:
                report.changes.append(Change(eid, dest, b, a, added, removed))
    return report


def read_lines(lines: Sequence[bytes]) -> list[tuple[int, Any]]:
    """(line number, parsed line) for each non-empty line; a line that is not JSON becomes
    the reason, which ``diff`` reports as skipped."""
    out: list[tuple[int, Any]] = []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            out.append((number, orjson.loads(raw)))
        except orjson.JSONDecodeError as exc:
            out.append((number, f"invalid JSON ({exc})"))
    return out
