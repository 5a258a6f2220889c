"""Hop lines: a relay in process is driven through every hop docs/monitoring.md lists, and
each line carries the fields the table there gives it: every one it lists outside
parentheses, and none it does not list."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from relay.app import create_app
from relay.observe.log import HOP_NAMES, HOPS
from relay.runtime import Runtime
from relay.state.memory import MemoryState
from tests.conftest import BACKEND_SECRET

DOCS = Path(__file__).resolve().parents[2] / "docs" / "monitoring.md"
US, EU = {"cf-ipcountry": "US"}, {"cf-ipcountry": "DE"}
EXTRA = """
destinations:
  down:
    type: webhook
    purpose: analytics
    events: [page_view]
    settings: {url: "http://down.test/hook"}
    retry: {attempts: 100, max_backoff: 1h, max_age: 24h}
  refusing:
    type: webhook
    purpose: analytics
    events: [page_view]
    settings: {url: "http://refusing.test/hook"}
  ads_log: {type: log, purpose: ads, events: [page_view]}
"""


def documented() -> dict[str, tuple[set[str], set[str]]]:
    """The table: hop -> (fields always there, fields there when they apply)."""
    out = {}
    for line in DOCS.read_text().split("## Hop log lines", 1)[1].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        hop = re.fullmatch(r"`([a-z-]+)`", cells[0])
        if not hop or len(cells) != 3:
            continue
        always: set[str] = set()
        sometimes: set[str] = set()
        for part in re.split(r",\s*(?![^()]*\))", cells[2]):
            name = re.match(r"\(?`(\w+)`", part.strip())
            assert name, part
            (sometimes if part.strip().startswith("(") else always).add(name.group(1))
        out[hop.group(1)] = (always, sometimes)
    return out


def _signed(body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    data = json.dumps(body).encode()
    t = int(time.time())
    mac = hmac.new(BACKEND_SECRET.encode(), f"{t}.".encode() + data, hashlib.sha256)
    return data, {"content-type": "application/json",
                  "x-relay-signature": f"t={t},v1={mac.hexdigest()}"}


def _vendors(request: httpx.Request) -> httpx.Response:
    return httpx.Response(503 if request.url.host == "down.test" else 400)


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [orjson.loads(r.getMessage()) for r in caplog.records if r.name == HOPS.name]


async def _until(caplog: pytest.LogCaptureFixture, *hops: str) -> None:
    for _ in range(250):
        if set(hops) <= {line["hop"] for line in _lines(caplog)}:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {hops} hop in {[line['hop'] for line in _lines(caplog)]}")


async def test_every_hop_line_carries_what_the_docs_list(
    rules_dir: Path, env: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (rules_dir / "zz-log.yaml").write_text(EXTRA)
    events = rules_dir / "events.yaml"
    events.write_text(events.read_text().replace('"*": reject', '"*": quarantine'))
    app = create_app(rules_dir, var_dir=tmp_path / "var", env=env,
                     transport=httpx.MockTransport(_vendors))
    runtime: Runtime = app.state.relay
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
    order = {"order_id": "O-1", "value": 5, "currency": "USD"}
    try:
        with caplog.at_level(logging.INFO, logger=HOPS.name):
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
                await runtime.ensure_started()
                pv = {"event": "page_view", "event_id": "h-1", "consent": {"ads": "denied"}}
                assert (await c.post("/e", json=pv, headers=US)).json()["accepted"] == 1
                assert (await c.post("/e", json=pv, headers=US)).json()["duplicates"] == 1
                buy = {"event": "purchase", "event_id": "h-2", "properties": order}
                assert (await c.post("/e", json=buy, headers=US)).json()["held"] == 1
                body, headers = _signed({**buy, "context": {"country": "US"}})
                assert (await c.post("/hook/backend", content=body, headers=headers)).json()[
                    "accepted"] == 1
                r = await c.post("/e", json=buy, headers=US)
                assert r.json()["duplicates"] == 1, r.text
                body, headers = _signed({"event": "purchase", "event_id": "h-3"})
                r = await c.post("/hook/backend", content=body, headers=headers)
                assert r.status_code == 400, r.text  # its contract: rejected, with its id
                assert (await c.post("/e", json={"event": ""}, headers=US)).status_code == 400
                r = await c.post("/e", json={"event": "newsletter", "event_id": "h-4"},
                                 headers=US)
                assert r.json()["quarantined"] == 1
                runtime.engine._prepares["archive"] = lambda sent, settings, ctx: None
                await c.post("/e", json={"event": "page_view", "event_id": "h-5"}, headers=US)
                del runtime.engine._prepares["archive"]
                await c.post("/e", json={"event": "page_view", "event_id": "h-6"}, headers=EU)
                await c.post("/e", json={"event": "consent_update",
                                         "consent": {"analytics": "granted"}}, headers=EU)
                c.cookies.clear()  # another visitor, who never chooses
                await c.post("/e", json={"event": "page_view", "event_id": "h-7"}, headers=EU)
                await c.post("/e", json={"event": "purchase", "event_id": "h-8",
                                         "properties": order}, headers=US)
                await _until(caplog, "delivered", "retried", "dead-lettered")
                assert isinstance(runtime.state, MemoryState)
                runtime.state.clock = lambda: 10.0**12  # past every window
                await runtime.expire()
                await runtime.dispatcher.replay("refusing")
    finally:
        await runtime.stop()
    lines = _lines(caplog)
    table = documented()
    assert set(table) == set(HOP_NAMES), "the docs' hops are the relay's"
    seen = {line["hop"] for line in lines}
    assert seen == set(table), f"not driven through: {set(table) - seen}"
    for line in lines:
        always, sometimes = table[line["hop"]]
        keys = set(line) - {"ts", "hop"}
        assert always <= keys <= always | sometimes, line
        assert None not in line.values(), line
    spooled = next(x for x in lines if x["hop"] == "spooled" and x["event_id"] == "h-1")
    assert spooled["consent"] == {"analytics": "granted", "ads": "denied"}
    assert {x.get("event_id") for x in lines if x["hop"] == "rejected"} == {"h-3", None}
