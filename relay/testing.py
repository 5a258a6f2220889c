"""``relay test``: run the rules' own ``tests:`` through the real engine, in memory.

Each case starts from empty state; its ``given`` steps run in order (so dedup, authority and
pending consent can be tested) and the expectations are checked against the last step's
decisions: its own copies, over those of the waiting events a consent choice in it released.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from relay.engine import Engine
from relay.engine.identity import client_ip
from relay.engine.results import Meta, Result
from relay.observe.mask import Masker
from relay.observe.metrics import Metrics
from relay.paths import MISSING
from relay.paths import get as get_path
from relay.rules.model import Given, Rules, RuleTest
from relay.state.memory import MemoryState

TEST_PEER = "192.0.2.10"  # TEST-NET-1: what a rule test's browser connects from
TEST_CORRELATION = "rule-test-browser"


@dataclass
class CaseResult:
    name: str
    failures: list[str] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.failures


def meta_for(rules: Rules, given: Given) -> Meta:
    source = rules.sources[given.source]
    headers = {k.lower(): str(v) for k, v in given.headers.items()}
    relay = rules.relay
    country = headers.get(relay.country_header.lower()) if relay.country_header else None
    if country is None:
        country = headers.get("cf-ipcountry")  # the common CDN header, for tests without one set
    browser = source.type == "browser"
    return Meta(
        source=source,
        received_ms=int(time.time() * 1000),
        ip=client_ip(relay.client_ip, headers, TEST_PEER) if browser else None,
        user_agent=headers.get("user-agent") if browser else None,
        country=country,
        gpc=browser and headers.get("sec-gpc") == "1",
        # Browsers always have a correlation cookie; tests share one per case unless set.
        correlation_id=headers.get("x-test-correlation-id", TEST_CORRELATION) if browser else None,
        verify_correlation=lambda value: value,
    )


def outcomes(
    rules: Rules, result: Result, released: Sequence[Result] = ()
) -> dict[str, tuple[str, str, Any]]:
    """destination -> (outcome, detail, sent copy) for one event's result; the copies of
    the events it ``released`` (a consent choice) count where the event has none of its own."""
    out: dict[str, tuple[str, str, Any]] = {}
    for dest in rules.destinations:
        if result.status in ("rejected", "held", "quarantined"):
            out[dest] = (
                "rejected" if result.status != "held" else "held",
                result.error or "",
                None,
            )
        elif result.status == "duplicate" and not result.copies:
            out[dest] = ("duplicate", "; ".join(result.notes), None)
        else:
            out[dest] = ("dropped", "not routed: the event is not in its events", None)
    for copy in [c for r in released for c in r.copies] + result.copies:
        out[copy.destination] = (copy.outcome, copy.detail, copy.sent)
    return out


async def run_case(rules: Rules, case: RuleTest) -> CaseResult:
    state = MemoryState(rules.relay.dedup_max_keys, rules.relay.dedup_window)
    # Nothing a case masks is kept or compared between runs: any key will do.
    engine = Engine(rules, state, Metrics(), Masker(os.urandom(32)))
    result: Result | None = None
    released: list[Result] = []
    for given in case.given:
        batch = await engine.process([given.event], meta_for(rules, given))
        result, released = batch.results[0], batch.releases
    report = CaseResult(case.name)
    if result is None:
        report.failures.append("no given event")
        return report
    got = outcomes(rules, result, released)
    for dest, expectation in case.expect.items():
        outcome, detail, sent = got.get(dest, ("dropped", "unknown destination", None))
        report.outcomes[dest] = outcome
        if outcome != expectation.outcome:
            why = f" ({detail})" if detail else ""
            report.failures.append(f"{dest}: expected {expectation.outcome}, got {outcome}{why}")
            continue
        if expectation.fields:
            report.failures.extend(_field_diff(dest, expectation.fields, sent))
    return report


def _field_diff(dest: str, expected: Mapping[str, Any], sent: Any) -> list[str]:
    lines = []
    for path, want in expected.items():
        have = get_path(sent, path) if sent is not None else MISSING
        if have == want or (want is None and have is MISSING):  # null: absent or null
            continue
        have_s = "(absent)" if have is MISSING else orjson.dumps(have).decode()
        lines.append(
            f"{dest}.{path}:\n    - expected {orjson.dumps(want).decode()}\n    + sent     {have_s}"
        )
    return lines


async def run_tests(rules: Rules) -> list[CaseResult]:
    return [await run_case(rules, case) for case in rules.tests]
