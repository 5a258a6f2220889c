"""The engine's consent memory and pending copies, beyond what the shipped rule tests show."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from relay.engine import Engine
from relay.engine.results import Meta
from relay.observe.log import HOPS
from relay.observe.mask import Masker
from relay.observe.metrics import Metrics
from relay.registry import load_rules
from relay.state.memory import MemoryState
from tests.conftest import SHIPPED_RULES

MASKER = Masker(b"test-masking-key-0123456789")


def _engine() -> tuple[Engine, MemoryState, Metrics]:
    rules = load_rules(SHIPPED_RULES, {})
    state = MemoryState(1000, 3600)
    metrics = Metrics()
    return Engine(rules, state, metrics, MASKER), state, metrics


def _browser(engine: Engine, cid: str = "cid-1", country: str = "DE") -> Meta:
    return Meta(
        engine.rules.sources["browser"],
        1_795_000_000_000,
        ip="198.51.100.7",
        user_agent="UA",
        country=country,
        correlation_id=cid,
    )


async def test_remembered_consent_applies_to_later_events() -> None:
    engine, _, _ = _engine()
    meta = _browser(engine)
    await engine.process([{"event": "consent_update", "consent": {"analytics": "granted"}}], meta)
    batch = await engine.process([{"event": "page_view", "event_id": "p1"}], meta)
    assert [c.outcome for c in batch.results[0].copies] == ["delivered"]
    other = await engine.process(
        [{"event": "page_view", "event_id": "p2"}], _browser(engine, cid="cid-2")
    )
    assert [c.outcome for c in other.results[0].copies] == ["held"]
    assert other.rows == []  # waiting copies never reach the spool


async def test_only_the_rules_purposes_are_remembered() -> None:
    engine, state, _ = _engine()
    meta = _browser(engine)
    junk = {f"junk{i}": "granted" for i in range(50)}
    await engine.process(
        [{"event": "page_view", "event_id": "p1", "consent": {"analytics": "granted", **junk}}],
        meta,
    )
    assert await state.consent_for("cid-1") == {"analytics": "granted"}
    batch = await engine.process([{"event": "page_view", "event_id": "p2"}], meta)
    assert batch.rows[0].payload.count(b"junk") == 0  # remembered consent only


async def test_consent_on_a_normal_event_releases_waiting_copies() -> None:
    engine, _, _ = _engine()
    meta = _browser(engine)
    first = await engine.process([{"event": "page_view", "event_id": "p1"}], meta)
    assert first.rows == []
    second = await engine.process(
        [{"event": "page_view", "event_id": "p2", "consent": {"analytics_storage": "granted"}}],
        meta,
    )
    assert sorted(r.event_id for r in second.rows) == ["p1", "p2"]


async def test_expired_pending_copies_are_counted_as_suppressed() -> None:
    engine, state, metrics = _engine()
    await engine.process([{"event": "page_view", "event_id": "p1"}], _browser(engine))
    state.clock = lambda: 10**12  # far past the pending window
    await engine.expire()
    text = metrics.render().decode()
    assert 'relay_consent_suppressed_total{destination="archive",purpose="analytics"} 1.0' in text


async def test_backend_events_are_never_pending() -> None:
    engine, _, _ = _engine()
    meta = Meta(engine.rules.sources["backend"], 1_795_000_000_000, country="DE")
    batch = await engine.process([{"event": "page_view", "event_id": "b1"}], meta)
    assert [c.outcome for c in batch.results[0].copies] == ["suppressed"]


async def test_a_partial_choice_keeps_the_other_purpose_waiting(rules_dir: Path) -> None:
    (rules_dir / "zz-ads.yaml").write_text(
        "destinations:\n  ads_log: {type: log, purpose: ads, events: [page_view]}\n"
    )
    rules = load_rules(rules_dir, {})
    engine = Engine(rules, MemoryState(1000, 3600), Metrics(), MASKER)
    meta = _browser(engine)
    first = await engine.process([{"event": "page_view", "event_id": "p1"}], meta)
    assert {c.destination: c.outcome for c in first.results[0].copies} == {
        "archive": "held",
        "ads_log": "held",
    }
    update = await engine.process(
        [{"event": "consent_update", "consent": {"analytics": "granted"}}], meta
    )
    assert [(r.destination, r.event_id) for r in update.rows] == [("archive", "p1")]
    assert update.results[0].copies == []  # the choice itself goes nowhere
    [released] = update.releases  # the waiting event, as an entry of its own
    assert (released.event_id, released.status) == ("p1", "released")
    assert {c.destination: c.outcome for c in released.copies} == {
        "archive": "delivered",
        "ads_log": "held",
    }
    later = await engine.process([{"event": "consent_update", "consent": {"ads": "granted"}}], meta)
    assert [(r.destination, r.event_id) for r in later.rows] == [("ads_log", "p1")]


async def test_the_page_may_turn_gpc_on_but_never_off() -> None:
    engine, _, _ = _engine()
    on = await engine.process(
        [{"event": "page_view", "event_id": "g1", "context": {"gpc": True}}],
        _browser(engine, country="US"),
    )
    sent = on.rows[0].payload
    assert b'"gpc":true' in sent
    meta = Meta(
        engine.rules.sources["browser"],
        1_795_000_000_000,
        country="US",
        gpc=True,
        correlation_id="cid-9",
    )
    off = await engine.process(
        [{"event": "page_view", "event_id": "g2", "context": {"gpc": False}}], meta
    )
    assert b'"gpc":true' in off.rows[0].payload


HOSTILE = ["5550104477", "203.0.113.77", "ann@example.com", "Ann", "HOSTILE-mark"]


def _strict_engine(tmp_path: Path) -> Engine:
    rules_dir = tmp_path / "rules"
    shutil.copytree(SHIPPED_RULES, rules_dir)
    (rules_dir / "zz-strict.yaml").write_text(
        "events:\n"
        "  strict:\n"
        "    properties: {plan: {type: string, enum: [free, pro]}}\n"
        "    additional_properties: reject\n"
    )
    return Engine(load_rules(rules_dir, {}), MemoryState(1000, 3600), Metrics(), MASKER)


@pytest.fixture
def hop_lines() -> Iterator[list[str]]:
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler, level = Capture(), HOPS.level
    HOPS.addHandler(handler)
    HOPS.setLevel(logging.INFO)
    yield lines
    HOPS.removeHandler(handler)
    HOPS.setLevel(level)


async def test_a_rejected_event_is_logged_without_text_the_client_chose(
    tmp_path: Path, hop_lines: list[str]
) -> None:
    """Hostile names, keys and values: the hop line says what was wrong in the relay's and
    the rules' words only, while the client's answer still says exactly what to fix."""
    engine = _strict_engine(tmp_path)
    meta = Meta(engine.rules.sources["backend"], 1_795_000_000_000)
    cases: list[tuple[dict[str, object], str, str]] = [
        ({"event": "call 5550104477 or 203.0.113.77 HOSTILE-mark", "event_id": "r1"},
         "event: no contract for 'call 5550104477 or 203.0.113.77 HOSTILE-mark'",
         "event: no contract"),
        ({"event": "ann@example.com", "event_id": "r2"},
         "event: may contain only letters, digits, spaces and _ . : / -",
         "event: may contain only letters, digits, spaces and _ . : / -"),
        ({"event": "strict", "event_id": "r3",
          "properties": {"plan": "Ann", "ann@example.com": 1, "HOSTILE-mark": 2}},
         "properties.plan: must be one of: free, pro; properties.ann@example.com: not in the "
         "contract; properties.HOSTILE-mark: not in the contract",
         "properties.plan: must be one of: free, pro; properties: 2 not in the contract"),
        ({"event": "strict", "event_id": "r4", "consent": {"ann@example.com": "maybe"}},
         "consent.ann@example.com: expected 'granted', 'denied' or a boolean",
         "consent: expected 'granted', 'denied' or a boolean"),
        ({"event": "strict", "event_id": "r5",
          "properties": {"HOSTILE-mark": {"ann@example.com": "x" * 3000}}},
         "properties.HOSTILE-mark.ann@example.com: longer than 2048 characters",
         "properties: longer than 2048 characters"),
    ]
    batch = await engine.process([raw for raw, _, _ in cases], meta)
    assert [r.error for r in batch.results] == [answer for _, answer, _ in cases]
    rejected = [orjson.loads(line) for line in hop_lines if '"rejected"' in line]
    assert [h["error"] for h in rejected] == [logged for _, _, logged in cases]
    assert [h.get("event") for h in rejected] == [None, None, "strict", "strict", "strict"]
    text = "\n".join(hop_lines)
    assert [s for s in HOSTILE if s in text] == []


async def test_an_event_without_a_contract_is_logged_with_its_name_masked(
    tmp_path: Path, hop_lines: list[str]
) -> None:
    rules_dir = tmp_path / "rules"
    shutil.copytree(SHIPPED_RULES, rules_dir)
    events = rules_dir / "events.yaml"
    events.write_text(events.read_text().replace('"*": reject', '"*": quarantine'))
    engine = Engine(load_rules(rules_dir, {}), MemoryState(1000, 3600), Metrics(), MASKER)
    meta = Meta(engine.rules.sources["backend"], 1_795_000_000_000)
    name = "call 5550104477 from 203.0.113.77 HOSTILE-mark"
    batch = await engine.process([{"event": name, "event_id": "q1"}], meta)
    assert batch.results[0].status == "quarantined"
    logged = {h["hop"]: h["event"] for h in map(orjson.loads, hop_lines)}
    masked = f"call [phone] from 203.0.113.0 {MASKER.tag('203.0.113.77')} HOSTILE-mark"
    assert logged == {"received": masked, "quarantined": masked}
    assert "5550104477" not in "".join(hop_lines) and "203.0.113.77" not in "".join(hop_lines)


async def test_a_vendor_mapping_runs_before_the_spool_and_may_refuse() -> None:
    """``DestinationDef.prepare``: the spool row is the vendor's item; None drops the copy
    with the reason; a mapping that raises costs only its own copy."""
    from relay.destinations import DESTINATIONS
    from relay.types import DestinationDef, Event, StepContext

    def prepare(event: Event, settings: object, ctx: StepContext) -> Event | None:
        if event["event"] == "signup":
            raise RuntimeError("a bug in the mapping")
        if "ads" not in ctx.granted:
            ctx.notes.append("no ads consent: nothing to send")
            return None
        return {"name": event["event"].upper(), "id": event["event_id"]}

    kinds = {**DESTINATIONS, "file": DestinationDef(
        parse_settings=lambda at: None, max_batch=10, prepare=prepare)}
    rules = load_rules(SHIPPED_RULES, {})
    engine = Engine(rules, MemoryState(1000, 3600), Metrics(), MASKER, kinds)
    us = _browser(engine, country="US")
    batch = await engine.process([{"event": "page_view", "event_id": "v1"}], us)
    assert [orjson.loads(r.payload) for r in batch.rows] == [{"name": "PAGE_VIEW", "id": "v1"}]
    batch = await engine.process(
        [{"event": "page_view", "event_id": "v2", "consent": {"ads": "denied"}}], us)
    [copy] = batch.results[0].copies
    assert (copy.outcome, copy.detail) == ("dropped", "no ads consent: nothing to send")
    assert batch.rows == []
    batch = await engine.process([{"event": "signup", "event_id": "s1"}], us)
    assert [c.outcome for c in batch.results[0].copies] == ["dropped"]
    assert batch.results[0].status == "accepted"
