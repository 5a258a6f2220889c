"""What the debug view and the quarantine store get from the engine: masked by meaning."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson

from relay.engine import Engine
from relay.engine.results import Meta, debug_entries
from relay.observe.debug import DebugFeed
from relay.observe.log import digest
from relay.observe.mask import Masker
from relay.observe.metrics import Metrics
from relay.registry import load_rules
from relay.state.memory import MemoryState
from relay.types import Verdict
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
