"""What the debug view and the quarantine store get from the engine: masked by meaning."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson

from relay.engine import Engine
from relay.engine.results import Meta, debug_entries, debug_entry
from relay.observe.debug import DebugFeed
from relay.observe.log import digest
from relay.observe.mask import Masker
from relay.observe.metrics import Metrics
from relay.registry import load_rules
from relay.state.memory import MemoryState
from relay.types import DestinationDef, Event, StepContext, Verdict
from tests.conftest import SHIPPED_RULES

MASKER = Masker(b"test-masking-key-0123456789")
UA = "Mozilla/5.0 (X11; Linux x86_64) Chrome/125.0.0.0 Safari/537.36 ResultsProbe/1"


def _engine(tmp_path: Path, fallback: str = "reject") -> Engine:
    rules_dir = tmp_path / "rules"
    shutil.copytree(SHIPPED_RULES, rules_dir)
    events = rules_dir / "events.yaml"
    events.write_text(events.read_text().replace('"*": reject', f'"*": {fallback}'))
    return Engine(load_rules(rules_dir, {}), MemoryState(1000, 3600), Metrics(), MASKER)


def _meta(engine: Engine, ip: str, cid: str = "cid-results-1") -> Meta:
    return Meta(engine.rules.sources["browser"], 1_795_000_000_123, ip=ip, user_agent=UA,
                country="US", correlation_id=cid)


async def test_the_debug_view_shows_real_times_and_tells_addresses_apart(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    sent: list[dict[str, Any]] = []
    for ip in ("203.0.113.77", "198.51.100.23"):
        batch = await engine.process(
            [{"event": "page_view", "event_id": f"pv-{ip[:3]}", "time": "2026-11-28T19:20:17.188Z",
              "context": {"page": {"url": "http://127.0.0.1:8080/p?n=2"}}}],
            _meta(engine, ip),
        )
        [entry] = debug_entries(batch, MASKER)
        [copy] = entry["copies"]
        sent.append(copy["sent"])
        assert entry["cid"] == digest("cid-results-1") == copy["sent"]["correlation_id"]
    for copy in sent:
        assert copy["time"] == "2026-11-28T19:20:17.188Z"
        assert copy["received_at"] == "2026-11-18T11:06:40.123Z"
        assert copy["context"]["page"]["url"] == "http://127.0.0.1:8080/p"  # n: by the url step
    # What the archive receives is the truncated address; the view shows it, tagged.
    assert sent[0]["context"]["ip"] == f"203.0.113.0 {MASKER.tag('203.0.113.0')}"
    assert sent[1]["context"]["ip"] == f"198.51.100.0 {MASKER.tag('198.51.100.0')}"


async def test_a_rejected_name_and_its_error_are_masked_in_the_debug_view(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    batch = await engine.process([{"event": "call 555 010 4477 from 203.0.113.77",
                                   "event_id": "r1"}], _meta(engine, "203.0.113.77"))
    [entry] = debug_entries(batch, MASKER)
    assert entry["status"] == "rejected"
    tag = MASKER.tag("203.0.113.77")
    assert entry["event"] == f"call [phone] from 203.0.113.0 {tag}"
    assert entry["error"] == f"event: no contract for 'call [phone] from 203.0.113.0 {tag}'"


async def test_a_quarantined_copy_is_masked_by_meaning(tmp_path: Path) -> None:
    engine = _engine(tmp_path, fallback="quarantine")
    raw = {"event": "signup 555 010 4477", "event_id": "q1", "time": "2026-11-28T19:20:17.188Z",
           "user": {"email": "Ann@Example.com"},
           "properties": {"plan": "pro", "seats": 12, "note": "mail ann@example.com"}}
    batches = [await engine.process([{**raw, "event_id": f"q{i}"}], _meta(engine, ip))
               for i, ip in enumerate(("203.0.113.77", "203.0.113.78"))]
    stored = [b.quarantined[0] for b in batches]
    assert stored[0].event == "signup [phone]"
    assert stored[0].error == "event: no contract for 'signup [phone]'"
    payloads = [orjson.loads(q.payload) for q in stored]
    first = payloads[0]
    assert first["time"] == "2026-11-28T19:20:17.188Z"
    assert first["user"] == {"email": f"[email {MASKER.tag('ann@example.com')}]"}
    assert first["properties"] == {"plan": "pro", "seats": 12, "note": "mail [email]"}
    assert first["context"]["user_agent"] == f"[user agent {MASKER.tag(UA)}]"
    # Quarantine keeps the raw event's shape: two visitors of one /24 stay apart.
    ips = [p["context"]["ip"] for p in payloads]
    assert ips == [f"203.0.113.0 {MASKER.tag('203.0.113.77')}",
                   f"203.0.113.0 {MASKER.tag('203.0.113.78')}"]
    blob = b"".join(q.payload for q in stored).decode()
    for raw_value in ("203.0.113.77", "203.0.113.78", "ann@example.com", "Ann@Example",
                      "4477", "ResultsProbe", "cid-results-1"):
        assert raw_value not in blob, raw_value


async def test_a_delivery_attempt_shows_the_vendors_answer_masked() -> None:
    feed = DebugFeed(MASKER)
    queue = feed.subscribe(None)
    feed.publish([{"event_id": "e1", "cid": None}])
    answer = 'HTTP 400: {"error": "bad ip 203.0.113.77 for ann@example.com at 2026-11-28"}'
    feed.attempt("crm", ["e1"], Verdict("permanent", answer, 400), 400)
    queue.get_nowait()
    entry = queue.get_nowait()
    tag = MASKER.tag("203.0.113.77")
    assert entry["detail"] == (
        f'HTTP 400: {{"error": "bad ip 203.0.113.0 {tag} for [email] at 2026-11-28"}}')


# -- what the debug view needs for its diff: the input, and each copy before its mapping --

EMAIL = "Ann.Lee@Example.com"
RAW = ("198.51.100.23", "Ann.Lee", "ann.lee@example.com", "ResultsProbe", "cid-results-1",
       "555 010 4477", "4477")


def _watched(engine: Engine) -> Engine:
    engine.watched = lambda: True
    return engine


def _assert_masked(entry: dict[str, Any]) -> None:
    blob = orjson.dumps(entry).decode()
    for raw in RAW:
        assert raw not in blob, raw


async def test_an_entry_shows_the_input_and_each_copys_changes_masked(tmp_path: Path) -> None:
    engine = _watched(_engine(tmp_path))
    raw = {"event": "page_view", "event_id": "pv-in",
           "user": {"email": EMAIL, "phone": "+1 555 010 4477"},
           "context": {"page": {"url": "https://shop.example/p?utm_source=news&gclid=g1"}},
           "properties": {"note": "call 555 010 4477"}}
    batch = await engine.process([raw], _meta(engine, "198.51.100.23"))
    [entry] = debug_entries(batch, MASKER, 1_795_000_009_000)
    _assert_masked(entry)
    assert (entry["source"], entry["at"]) == ("browser", "2026-11-18T11:06:40.123Z")
    arrived = entry["input"]
    # The input is the event as it arrived, with the context the relay filled in, masked.
    assert arrived["context"]["ip"] == f"198.51.100.0 {MASKER.tag('198.51.100.23')}"
    assert arrived["context"]["user_agent"] == f"[user agent {MASKER.tag(UA)}]"
    assert arrived["user"]["email"] == f"[email {MASKER.tag(EMAIL.lower())}]"
    assert arrived["properties"]["note"] == "call [phone]"
    assert arrived["correlation_id"] == digest("cid-results-1")
    [copy] = entry["copies"]
    kinds = {c["path"]: c["change"] for c in copy["changes"]}
    assert kinds["user.email"] == "hashed" and kinds["user.phone"] == "hashed"
    assert kinds["context.ip"] == "truncated"
    assert kinds["context.user_agent"] == "dropped"
    assert kinds["context.page.url"] == "changed"
    assert kinds["context.campaign.source"] == "added"
    assert kinds["properties.note"] == "redacted"
    assert "context.click_ids.gclid" not in kinds  # ads is granted in the US: kept


async def test_without_a_viewer_no_input_is_kept(tmp_path: Path) -> None:
    engine = _engine(tmp_path)  # nobody watches: the hot path copies nothing
    batch = await engine.process([{"event": "page_view", "event_id": "pv-n"}],
                                 _meta(engine, "198.51.100.23"))
    assert batch.results[0].input is None
    [entry] = debug_entries(batch, MASKER)
    assert entry["input"] is None and "changes" not in entry["copies"][0]


async def test_a_rejected_event_shows_what_was_sent_masked(tmp_path: Path) -> None:
    engine = _watched(_engine(tmp_path))
    raw = {"event": "bad name!", "event_id": "r2", "user": {"email": EMAIL},
           "context": {"ip": "198.51.100.23"}}
    bad_id = {"event": "page_view", "event_id": " ann.lee@example.com"}
    unknown = {"event": "mystery", "event_id": "r3"}
    batch = await engine.process([raw, "not an object", bad_id, unknown],
                                 _meta(engine, "198.51.100.23"))
    first, second, third, fourth = debug_entries(batch, MASKER)
    assert first["status"] == "rejected" and first["error"].startswith("event:")
    assert first["input"]["user"]["email"] == f"[email {MASKER.tag(EMAIL.lower())}]"
    assert first["input"]["context"]["ip"].startswith("198.51.100.0 #")
    assert first["event_id"] is None  # refused by the envelope: not known to be an id
    assert second["input"] == "not an object"
    assert third["status"] == "rejected" and third["input"]["event_id"] == " [email]"
    # Refused by its contract: the id passed the envelope, and is shown.
    assert (fourth["status"], fourth["event_id"]) == ("rejected", "r3")
    for entry in (first, second, third, fourth):
        _assert_masked(entry)


async def test_the_authority_flow_names_whom_a_copy_waits_for_and_what_confirmed_it(
        tmp_path: Path) -> None:
    engine = _watched(_engine(tmp_path))
    purchase: dict[str, Any] = {"event": "purchase", "event_id": "o-1",
                "properties": {"order_id": "O1", "value": 10, "currency": "USD"},
                "context": {"page": {"url": "https://shop.example/thanks?gclid=g2"}}}
    held = await engine.process([purchase], _meta(engine, "198.51.100.23"))
    [entry] = debug_entries(held, MASKER)
    assert (entry["status"], entry["held_for"], entry["copies"]) == ("held", "backend", [])
    assert entry["cid"] == digest("cid-results-1")

    backend = Meta(engine.rules.sources["backend"], 1_795_000_001_000,
                   verify_correlation=lambda v: "cid-results-1" if v == "signed" else None)
    confirmed = await engine.process(
        [{**purchase, "correlation_id": "signed", "context": {"country": "US"},
          "user": {"email": EMAIL},
          "properties": {**purchase["properties"], "internal_note": "VIP"}}], backend)
    [entry] = debug_entries(confirmed, MASKER)
    assert (entry["status"], entry["confirms"], entry["source"]) == ("accepted", "o-1", "backend")
    assert entry["merged"] == ["context.page.url", "context.click_ids", "context.user_agent"]
    assert entry["cid"] == digest("cid-results-1")
    kinds = {c["path"]: c["change"] for c in entry["copies"][0]["changes"]}
    assert kinds["properties.internal_note"] == "dropped"  # the contract drops it
    assert kinds["context.page.url"] == "added"  # merged from the browser's copy
    assert kinds["user.email"] == "hashed"
    _assert_masked(entry)


async def test_an_unconfirmed_browser_copy_expires_as_an_entry_for_its_browser(
        tmp_path: Path) -> None:
    engine = _watched(_engine(tmp_path))
    purchase = {"event": "purchase", "event_id": "o-2",
                "properties": {"order_id": "O2", "value": 10, "currency": "USD"}}
    await engine.process([purchase], _meta(engine, "198.51.100.23"))
    assert isinstance(engine.state, MemoryState)
    engine.state.clock = lambda: 10.0**12
    [expired] = await engine.expire()
    entry = debug_entry(expired, MASKER, 1_795_000_009_000)
    assert (entry["status"], entry["event_id"], entry["held_for"]) == ("expired", "o-2", "backend")
    assert entry["cid"] == digest("cid-results-1")
    assert entry["at"] == "2026-11-18T11:06:49.000Z"
    assert entry["notes"] == ["not confirmed by backend within confirm_window"]


async def test_a_vendor_copy_is_compared_before_its_mapping(tmp_path: Path) -> None:
    def to_vendor(ev: Event, settings: Any, ctx: StepContext) -> Event | None:
        # A mapping may take from what it is given: the diff must not see that.
        return {"name": ev["event"], "em": ev.get("user", {}).pop("email", None)}

    kinds = {"log": DestinationDef(parse_settings=lambda at: None, max_batch=1,
                                   prepare=to_vendor)}
    rules_dir = tmp_path / "rules"
    shutil.copytree(SHIPPED_RULES, rules_dir)
    (rules_dir / "zz-vendor.yaml").write_text(
        "destinations:\n  vendor: {type: log, purpose: analytics, events: [page_view],"
        " pipeline: minimize}\n")
    engine = Engine(load_rules(rules_dir, {}), MemoryState(1000, 3600), Metrics(), MASKER,
                    kinds=kinds, watched=lambda: True)
    batch = await engine.process([{"event": "page_view", "event_id": "pv-v",
                                   "user": {"email": EMAIL}}], _meta(engine, "198.51.100.23"))
    [entry] = debug_entries(batch, MASKER)
    copy = next(c for c in entry["copies"] if c["destination"] == "vendor")
    assert set(copy["sent"]) == {"name", "em"}  # what the vendor receives
    kinds_seen = {c["path"]: c["change"] for c in copy["changes"]}
    assert kinds_seen["user.email"] == "hashed" and "name" not in kinds_seen
    _assert_masked(entry)
