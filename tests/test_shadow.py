"""``relay diff`` (relay/shadow.py, relay/cli/diff.py) and the sample it reads
(relay/engine/sample.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import orjson

from relay.engine.sample import Sampler, chosen, line
from relay.registry import load_rules
from relay.shadow import diff, read_lines
from tests.conftest import SHIPPED_RULES

US = {"CF-IPCountry": "US"}


def _rules_with(tmp_path: Path, name: str, old: str, new: str) -> Path:
    target = tmp_path / name
    shutil.copytree(SHIPPED_RULES, target)
    path = target / "pipelines.yaml"
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))
    return target


def _records() -> list[bytes]:
    return [
        orjson.dumps({"source": "browser", "headers": US, "event": {
            "event": "page_view", "event_id": "pv1",
            "context": {"page": {"url": "https://shop.example/?gclid=abc"}}}}),
        orjson.dumps({"source": "browser", "headers": {"CF-IPCountry": "DE"},
                      "event": {"event": "page_view", "event_id": "pv2"}}),
        orjson.dumps({"event": "signup", "event_id": "s1", "properties": {"plan": "pro"}}),
        b"not json",
        orjson.dumps({"source": "nope", "event": {"event": "page_view"}}),
    ]


async def test_diff_shows_outcome_and_field_changes(tmp_path: Path) -> None:
    before = load_rules(SHIPPED_RULES, {})
    # The new rules stop keeping click ids for anyone, and the archive loses the URL too.
    after = load_rules(_rules_with(tmp_path, "new", "    - click_ids: {keep_for: ads}\n",
                                   "    - click_ids: drop\n    - drop: [context.page]\n"), {})
    report = await diff(before, after, read_lines(_records()))
    assert report.events == 3
    assert [s.split(":")[0] for s in report.skipped] == ["line 4", "line 5"]
    [change] = [c.as_json() for c in report.changes]
    assert change == {"event_id": "pv1", "destination": "archive", "before": "delivered",
                      "after": "delivered", "fields_added": [],
                      "fields_removed": ["context.click_ids.gclid", "context.page.url"]}
    same = await diff(before, before, read_lines(_records()))
    assert same.changes == [] and same.events == 3


def test_relay_diff_cli_prints_the_contract_shape(tmp_path: Path) -> None:
    new = _rules_with(tmp_path, "new", "    - click_ids: {keep_for: ads}\n",
                      "    - click_ids: drop\n")
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(_records()[:3]) + b"\n")
    done = subprocess.run(
        [sys.executable, "-m", "relay", "diff", "--rules", str(new), "--against",
         str(SHIPPED_RULES), "--events", str(events), "--format", "json"],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["events"] == 3
    assert [(c["event_id"], c["fields_removed"]) for c in body["changes"]] == [
        ("pv1", ["context.click_ids.gclid"])]
    assert set(body["changes"][0]) >= {"event_id", "destination", "before", "after",
                                       "fields_added", "fields_removed"}


def test_the_sample_is_stable_minimized_and_bounded(tmp_path: Path) -> None:
    rules = load_rules(SHIPPED_RULES, {})
    assert chosen("e1", 1.0) and not chosen("e1", 0.0)
    picked = [f"e{i}" for i in range(10_000) if chosen(f"e{i}", 0.1)]
    assert 800 < len(picked) < 1200 and picked == [e for e in picked if chosen(e, 0.1)]
    ev = {"event": "page_view", "event_id": "e1", "source": "browser",
          "received_at": "2026-12-01T00:00:00.000Z", "correlation_id": "cid",
          "user": {"email": "Ann@Example.com"},
          "context": {"ip": "203.0.113.7", "country": "DE", "gpc": True,
                      "page": {"url": "https://shop.example/p?utm_source=x&session=1"}}}
    data = line(rules, ev)
    assert data is not None
    record = orjson.loads(data)
    assert record["source"] == "browser"
    assert record["headers"] == {"CF-IPCountry": "DE", "Sec-GPC": "1"}
    assert "correlation_id" not in record["event"] and "ip" not in record["event"]["context"]
    assert record["event"]["user"]["email"] != "Ann@Example.com"  # hashed, as the pipeline
    assert record["event"]["context"]["page"]["url"] == "https://shop.example/p"
    sampler = Sampler(str(tmp_path / "var" / "sample.jsonl"), 1.0, max_bytes=len(data) * 2)
    for _ in range(3):
        sampler.offer(rules, ev)
    assert len((tmp_path / "var" / "sample.jsonl").read_bytes().splitlines()) == 2  # bounded
