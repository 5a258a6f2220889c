"""Events that wait for a consent choice (relay/engine/waiting.py): a copy released by a
choice is what it would have been had the choice come first, with memory and Redis state.

The rules in ``waiting_rules/`` (what the demo's were before its vendors became vendor
types): analytics and ads opt-in for everyone, the ``minimize`` pipeline with
``click_ids: {keep_for: ads}`` on ``analytics_vendor``, ``ads_vendor`` and ``archive``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from relay.engine import Engine
from relay.engine.results import Batch, Meta
from relay.errors import SpoolUnavailable
from relay.observe.mask import Masker
from relay.observe.metrics import Metrics
from relay.registry import load_rules
from relay.rules.model import Rules
from relay.state import State
from relay.state.memory import MemoryState
from relay.state.redis import RedisState
from relay.state.seal import Sealer
from tests.state.test_state import REDIS_URL

RULES_DIR = Path(__file__).parent / "waiting_rules"
GCLID = "Cj0KCQ-test-gclid"
LANDING = f"http://127.0.0.1:8080/?utm_source=newsletter&gclid={GCLID}"
ALL = {"analytics": "granted", "ads": "granted"}
ANALYTICS_ONLY = {"analytics": "granted", "ads": "denied"}
RECEIVED_MS = 1_795_000_000_000
MASKER = Masker(b"test-masking-key-0123456789")

MakeState = Callable[[], State]


@pytest.fixture(params=["memory", "redis"])
async def make_state(request: pytest.FixtureRequest) -> AsyncIterator[MakeState]:
    """Fresh state stores of one kind; Redis ones are checked reachable and closed after."""
    made: list[State] = []

    def make() -> State:
        state: State
        if request.param == "memory":
            state = MemoryState(1000, 3600)
        else:
            prefix = f"relay-test-{uuid.uuid4().hex}:"
            state = RedisState(REDIS_URL, Sealer(["test-secret"]), prefix=prefix)
        made.append(state)
        return state

    yield make
    for state in made:
        await state.close()


def _rules(extra: str = "", tmp: Path | None = None) -> Rules:
    if not extra:
        return load_rules(RULES_DIR, {})
    assert tmp is not None
    target = tmp / "rules"
    target.mkdir()
    for f in RULES_DIR.glob("*.yaml"):
        (target / f.name).write_text(f.read_text())
    (target / "zz-extra.yaml").write_text(extra)
    return load_rules(target, {})


def _meta(engine: Engine, cid: str = "cid-1") -> Meta:
    return Meta(
        engine.rules.sources["browser"],
        RECEIVED_MS,
        ip="198.51.100.7",
        user_agent="Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36",
        country="DE",
        correlation_id=cid,
    )


def _landing(event_id: str, **extra: Any) -> dict[str, Any]:
    return {"event": "page_view", "event_id": event_id,
            "context": {"page": {"url": LANDING, "title": "Shop"}}, **extra}


def _sent(batch: Batch) -> dict[str, dict[str, Any]]:
    """destination -> the copy committed for it (the spool row, parsed)."""
    return {row.destination: orjson.loads(row.payload) for row in batch.rows}


async def _choose(engine: Engine, consent: dict[str, str], cid: str = "cid-1") -> Batch:
    return await engine.process([{"event": "consent_update", "consent": consent}],
                                _meta(engine, cid))


async def test_ads_granted_after_the_landing_page_view_keeps_its_click_id(
        make_state: MakeState) -> None:
    engine = Engine(_rules(), make_state(), Metrics(), MASKER)
    first = await engine.process([_landing("pv-1")], _meta(engine))
    assert first.rows == []  # nothing spooled before the choice
    assert {c.destination: (c.outcome, c.purpose) for c in first.results[0].copies} == {
        "analytics_vendor": ("held", "analytics"), "ads_vendor": ("held", "ads"),
        "archive": ("held", "analytics")}
    assert first.held == 1

    update = await _choose(engine, ALL)
    sent = _sent(update)
    assert sorted(sent) == ["ads_vendor", "analytics_vendor", "archive"]
    for copy in sent.values():
        assert copy["event_id"] == "pv-1"
        assert copy["context"]["click_ids"] == {"gclid": GCLID}
        assert copy["consent"] == ALL  # the remembered choice, merged in
        assert copy["context"]["page"]["url"] == "http://127.0.0.1:8080/"
        assert copy["context"]["campaign"] == {"source": "newsletter"}
        assert copy["context"]["ip"] == "198.51.100.0"


async def test_ads_denied_after_it_drops_the_click_id(make_state: MakeState) -> None:
    engine = Engine(_rules(), make_state(), Metrics(), MASKER)
    await engine.process([_landing("pv-1")], _meta(engine))
    update = await _choose(engine, ANALYTICS_ONLY)
    sent = _sent(update)
    assert sorted(sent) == ["analytics_vendor", "archive"]
    for copy in sent.values():
        assert "click_ids" not in copy["context"]
        assert GCLID not in orjson.dumps(copy).decode()
        assert copy["consent"] == ANALYTICS_ONLY
    [released] = update.releases
    assert {c.destination: c.outcome for c in released.copies}["ads_vendor"] == "suppressed"


@pytest.mark.parametrize("choice", [ALL, ANALYTICS_ONLY], ids=["accept-all", "analytics-only"])
@pytest.mark.parametrize("own_consent", [None, {"functional": "granted"}],
                         ids=["no-consent", "own-consent-key"])
async def test_released_copy_equals_the_copy_of_the_same_event_after_the_choice(
        make_state: MakeState, choice: dict[str, str], own_consent: dict[str, str] | None) -> None:
    """One browser: the landing page view before its choice (released by it), then the same
    page view again after the choice. Apart from ``event_id``, each destination gets the
    same copy."""
    engine = Engine(_rules(), make_state(), Metrics(), MASKER)
    extra = {"consent": own_consent} if own_consent else {}
    await engine.process([_landing("before", **extra)], _meta(engine))
    released = _sent(await _choose(engine, choice))
    after = _sent(await engine.process([_landing("after", **extra)], _meta(engine)))
    assert sorted(released) == sorted(after) and released
    for dest in released:
        assert released[dest].pop("event_id") == "before"
        assert after[dest].pop("event_id") == "after"
        assert released[dest] == after[dest], dest


async def test_a_partial_choice_routes_what_it_decides_and_keeps_the_rest_waiting(
        make_state: MakeState) -> None:
    engine = Engine(_rules(), make_state(), Metrics(), MASKER)
    await engine.process([_landing("pv-1")], _meta(engine))
    first = await _choose(engine, {"analytics": "granted"})
    assert sorted(_sent(first)) == ["analytics_vendor", "archive"]
    [entry] = first.releases
    assert {c.destination: (c.outcome, c.purpose) for c in entry.copies}["ads_vendor"] == (
        "held", "ads")
    assert "click_ids" not in _sent(first)["archive"]["context"]  # ads undecided: not granted
    later = await _choose(engine, {"ads": "granted"})
    ads = _sent(later)["ads_vendor"]
    assert ads["context"]["click_ids"] == {"gclid": GCLID}
    assert ads["consent"] == ALL  # both choices, remembered
    assert (await _choose(engine, {"ads": "denied"})).releases == []  # nothing left waiting


async def test_when_reading_consent_is_decided_with_the_choice(
        make_state: MakeState, tmp_path: Path) -> None:
    extra = """destinations:
  retarget:
    type: log
    purpose: analytics
    events: [page_view]
    when: {consent.ads: granted}
  landing_only:
    type: log
    purpose: analytics
    events: [page_view]
    when: {context.page.title: Landing}
"""
    rules = _rules(extra, tmp_path)
    for choice, outcome in ((ALL, "delivered"), (ANALYTICS_ONLY, "dropped")):
        engine = Engine(rules, make_state(), Metrics(), MASKER)
        first = await engine.process([_landing("pv-1")], _meta(engine))
        got = {c.destination: c.outcome for c in first.results[0].copies}
        # A ``when`` that does not read consent is decided at once; one that does waits.
        assert got["landing_only"] == "dropped" and got["retarget"] == "held"
        update = await _choose(engine, choice)
        [entry] = update.releases
        assert {c.destination: c.outcome for c in entry.copies}["retarget"] == outcome
        after = await engine.process([_landing("pv-2")], _meta(engine))
        assert {c.destination: c.outcome for c in after.results[0].copies}["retarget"] == outcome


async def test_the_event_waits_once_before_any_pipeline(tmp_path: Path) -> None:
    state = MemoryState(1000, 3600)
    engine = Engine(_rules(), state, Metrics(), MASKER)
    await engine.process([_landing("pv-1")], _meta(engine))
    [(_, item)] = state._pending["cid-1"]
    assert dict(item.waits) == {"analytics_vendor": "analytics", "ads_vendor": "ads",
                                "archive": "analytics"}
    kept = orjson.loads(item.body)
    assert kept["context"]["page"]["url"] == LANDING  # no pipeline has run on it
    assert "consent" not in kept  # the event's own consent: it carried none
    assert len(item.body) == len(orjson.dumps(kept))  # compact, once for three destinations
    assert await state.pending_counts() == {("analytics_vendor", "analytics"): 1,
                                            ("ads_vendor", "ads"): 1, ("archive", "analytics"): 1}
    await _choose(engine, ANALYTICS_ONLY)
    assert await state.pending_counts() == {}


async def test_a_failed_commit_leaves_the_copies_waiting(make_state: MakeState) -> None:
    """The client hears 503 and retries its choice: the copies are released again. The
    failed request took nothing (its choice is forgotten again), so a process that dies
    before its commit leaves them just as waiting."""
    state = make_state()
    engine = Engine(_rules(), state, Metrics(), MASKER)
    await engine.process([_landing("pv-1")], _meta(engine))
    tried: list[Batch] = []

    async def unwritable(batch: Batch) -> None:
        tried.append(batch)
        raise SpoolUnavailable("disk full")

    with pytest.raises(SpoolUnavailable):
        await engine.process([{"event": "consent_update", "consent": ANALYTICS_ONLY}],
                             _meta(engine), unwritable)
    [failed] = tried
    assert sorted(_sent(failed)) == ["analytics_vendor", "archive"]
    assert await state.consent_for("cid-1") == {}
    assert await state.pending_counts() == {("analytics_vendor", "analytics"): 1,
                                            ("ads_vendor", "ads"): 1, ("archive", "analytics"): 1}
    retry = await _choose(engine, ANALYTICS_ONLY)
    assert sorted(_sent(retry)) == ["analytics_vendor", "archive"]
    assert "duplicate" not in {c.outcome for r in retry.releases for c in r.copies}


async def test_an_event_that_waited_twice_is_released_once(make_state: MakeState) -> None:
    """A 503 (or a process that dies) after an event was made to wait: the client's retry
    makes it wait again; the choice releases it once, the second copy a duplicate."""
    state = make_state()
    engine = Engine(_rules(), state, Metrics(), MASKER)

    async def unwritable(batch: Batch) -> None:
        raise SpoolUnavailable("disk full")

    with pytest.raises(SpoolUnavailable):
        await engine.process([_landing("pv-1")], _meta(engine), unwritable)
    await engine.process([_landing("pv-1")], _meta(engine))
    update = await _choose(engine, ALL)
    assert sorted(_sent(update)) == ["ads_vendor", "analytics_vendor", "archive"]
    assert len(update.rows) == 3
    outcomes = sorted(c.outcome for r in update.releases for c in r.copies)
    assert outcomes == ["delivered"] * 3 + ["duplicate"] * 3
    assert await state.pending_counts() == {}


async def test_a_choice_releases_what_waits_in_its_own_request(make_state: MakeState) -> None:
    """The snippet may send a page view and the consent choice after it in one request."""
    state = make_state()
    engine = Engine(_rules(), state, Metrics(), MASKER)
    batch = await engine.process(
        [_landing("pv-1"), {"event": "consent_update", "consent": ANALYTICS_ONLY}],
        _meta(engine))
    assert sorted(_sent(batch)) == ["analytics_vendor", "archive"]
    assert await state.pending_counts() == {}  # ads was denied: nothing still waits
    assert await state.consent_for("cid-1") == ANALYTICS_ONLY


async def test_a_partial_choice_leaves_the_rest_waiting_once(make_state: MakeState) -> None:
    """Released for analytics, still undecided for ads: the event waits on, once, for ads
    alone, whichever of two copies of the choice settles it."""
    state = make_state()
    engine = Engine(_rules(), state, Metrics(), MASKER)
    await engine.process([_landing("pv-1")], _meta(engine))
    first = await _choose(engine, {"analytics": "granted"})
    assert sorted(_sent(first)) == ["analytics_vendor", "archive"]
    assert await state.pending_counts() == {("ads_vendor", "ads"): 1}
    [item] = await state.waiting("cid-1")
    assert item.waits == {"ads_vendor": "ads"}
    again = await _choose(engine, {"analytics": "granted"}, cid="cid-1")
    assert again.rows == []  # the choice is already remembered: nothing new to release
    assert await state.pending_counts() == {("ads_vendor", "ads"): 1}


async def test_a_full_store_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    from relay.state import memory

    monkeypatch.setattr(memory, "MAX_PENDING", 0)
    metrics = Metrics()
    engine = Engine(_rules(), MemoryState(1000, 3600), metrics, MASKER)
    batch = await engine.process([_landing("pv-1")], _meta(engine))
    assert {c.outcome for c in batch.results[0].copies} == {"suppressed"}
    assert batch.rows == [] and batch.held == 0
    assert "pending store full" in batch.results[0].copies[0].detail
    text = metrics.render().decode()
    assert 'relay_consent_suppressed_total{destination="ads_vendor",purpose="ads"} 1.0' in text


async def test_expiry_is_an_entry_of_its_own() -> None:
    state = MemoryState(1000, 3600)
    engine = Engine(_rules(), state, Metrics(), MASKER)
    await engine.process([_landing("pv-1")], _meta(engine))
    state.clock = lambda: 10.0**12  # far past the window
    [expired] = await engine.expire()
    assert (expired.event_id, expired.status, expired.cid) == ("pv-1", "expired", "cid-1")
    assert {c.destination: (c.outcome, c.purpose) for c in expired.copies} == {
        "analytics_vendor": ("suppressed", "analytics"), "ads_vendor": ("suppressed", "ads"),
        "archive": ("suppressed", "analytics")}
    assert await state.pending_counts() == {}
