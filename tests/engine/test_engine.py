"""The engine's consent memory and pending copies, beyond what the shipped rule tests show."""

from __future__ import annotations

from pathlib import Path

from relay.engine import Engine
from relay.engine.results import Meta
from relay.observe.metrics import Metrics
from relay.registry import load_rules
from relay.state.memory import MemoryState
from tests.conftest import SHIPPED_RULES


def _engine() -> tuple[Engine, MemoryState, Metrics]:
    rules = load_rules(SHIPPED_RULES, {})
    state = MemoryState(1000, 3600)
    metrics = Metrics()
    return Engine(rules, state, metrics), state, metrics


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
    engine = Engine(rules, MemoryState(1000, 3600), Metrics())
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
