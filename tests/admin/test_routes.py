"""The admin listener's routes over the real app: the consent-pending gauge and the debug
view's entries for copies that wait for a consent choice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

import relay
from relay.app import create_admin_app
from relay.observe.log import digest
from relay.runtime import Runtime
from relay.state.memory import MemoryState

EU = {"cf-ipcountry": "DE"}
PAGE_VIEW = {"event": "page_view", "context": {"page": {"url": "https://shop.example/"}}}


@pytest.fixture
async def app(rules_dir: Path, env: dict[str, str], tmp_path: Path) -> AsyncIterator[Starlette]:
    (rules_dir / "zz-ads.yaml").write_text(
        "destinations:\n  ads_log: {type: log, purpose: ads, events: [page_view]}\n"
    )
    relay_app = relay.create_app(str(rules_dir), var_dir=tmp_path / "var", env=env)
    yield relay_app
    runtime: Runtime = relay_app.state.relay
    await runtime.stop()


def _client(app: Starlette) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("198.51.100.23", 1))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


async def _pending(admin: httpx.AsyncClient) -> dict[tuple[str, str], float]:
    text = (await admin.get("/metrics")).text
    out = {}
    for line in text.splitlines():
        if line.startswith("relay_consent_pending{"):
            labels, value = line.rsplit(" ", 1)
            pairs = dict(p.split("=") for p in labels[len("relay_consent_pending{"):-1].split(","))
            out[(pairs["destination"].strip('"'), pairs["purpose"].strip('"'))] = float(value)
    return out


async def test_consent_pending_gauge_counts_waiting_copies(app: Starlette) -> None:
    admin = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_admin_app(app)),
                              base_url="http://a")
    zero = {("archive", "analytics"): 0.0, ("ads_log", "ads"): 0.0}
    async with _client(app) as c, admin:
        assert await _pending(admin) == zero  # known destinations, nothing waiting
        for _ in range(3):
            assert (await c.post("/e", json=PAGE_VIEW, headers=EU)).json()["held"] == 1
        assert await _pending(admin) == {("archive", "analytics"): 3.0, ("ads_log", "ads"): 3.0}
        await c.post("/e", json={"event": "consent_update", "consent": {"analytics": "granted"}},
                     headers=EU)
        assert await _pending(admin) == {("archive", "analytics"): 0.0, ("ads_log", "ads"): 3.0}
        runtime: Runtime = app.state.relay
        assert isinstance(runtime.state, MemoryState)
        runtime.state.clock = lambda: 10.0**12  # past every window
        await runtime.expire()
        assert await _pending(admin) == zero


async def _entries(queue: asyncio.Queue[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    return [await asyncio.wait_for(queue.get(), 5) for _ in range(n)]


async def test_debug_view_shows_the_wait_and_its_release_as_entries(app: Starlette) -> None:
    runtime: Runtime = app.state.relay
    async with _client(app) as c:
        r = await c.post("/e", json={**PAGE_VIEW, "event_id": "dbg-wait"}, headers=EU)
        cid = runtime.signer.verify(c.cookies["_rc"])
        assert cid is not None
        mine = runtime.debug.subscribe(digest(cid))
        others = runtime.debug.subscribe("someone-else")
        r = await c.post("/e", json={**PAGE_VIEW, "event_id": "dbg-wait-2"}, headers=EU)
        assert r.status_code == 202
        [held] = await _entries(mine, 1)
        assert held["event_id"] == "dbg-wait-2"
        assert {x["destination"]: (x["outcome"], x["purpose"]) for x in held["copies"]} == {
            "archive": ("held", "analytics"), "ads_log": ("held", "ads")}

        await c.post("/e", json={"event": "consent_update", "consent": {"analytics": "granted",
                                                                        "ads": "denied"}},
                     headers=EU)
        choice, first, second = await _entries(mine, 3)
        assert choice["event"] == "consent_update" and choice["copies"] == []
        assert [(e["event_id"], e["status"]) for e in (first, second)] == [
            ("dbg-wait", "released"), ("dbg-wait-2", "released")]
        outcome = {x["destination"]: (x["outcome"], x["purpose"]) for x in second["copies"]}
        assert outcome == {"ads_log": ("suppressed", "ads"), "archive": ("delivered", None)}
        assert second["copies"][1]["sent"]["context"]["ip"] != "198.51.100.23"  # masked

        await c.post("/e", json={**PAGE_VIEW, "event_id": "dbg-wait-3"},
                     headers={"cf-ipcountry": "DE", "cookie": "_rc=other"})
        runtime.debug.unsubscribe(mine)
        everyone = runtime.debug.subscribe(None)
        assert isinstance(runtime.state, MemoryState)
        runtime.state.clock = lambda: 10.0**12
        await runtime.expire()
        [expired] = await _entries(everyone, 1)
        assert (expired["event_id"], expired["status"]) == ("dbg-wait-3", "expired")
        assert {x["outcome"] for x in expired["copies"]} == {"suppressed"}
    assert others.empty()  # a viewer of another browser sees none of it


async def test_metrics_page_reads_the_spool_and_the_process(
        rules_dir: Path, env: dict[str, str], tmp_path: Path) -> None:
    """The oldest waiting copy's age tells a stalled destination; the spool's size, the
    ledger's backlog and the process figures are on the page too."""
    (rules_dir / "zz-down.yaml").write_text(
        "destinations:\n  down:\n    type: webhook\n    purpose: analytics\n"
        "    events: [page_view]\n"
        "    settings: {url: 'http://vendor.test/hook'}\n"
        "    retry: {attempts: 100, max_backoff: 1h, max_age: 24h}\n"
    )
    down = httpx.MockTransport(lambda request: httpx.Response(503))
    app = relay.create_app(str(rules_dir), var_dir=tmp_path / "var", env=env, transport=down)
    runtime: Runtime = app.state.relay
    admin = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_admin_app(app)),
                              base_url="http://a")
    try:
        async with _client(app) as c, admin:
            await runtime.ensure_started()
            r = await c.post("/e", json=PAGE_VIEW, headers={"cf-ipcountry": "US"})
            assert r.status_code == 202, r.text
            await asyncio.sleep(0.3)
            text = (await admin.get("/metrics")).text
    finally:
        await runtime.stop()
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
               for line in text.splitlines() if line and not line.startswith("#")}
    assert samples['relay_spool_depth{destination="down"}'] == 1
    assert 0.3 <= samples['relay_spool_oldest_age_seconds{destination="down"}'] < 60
    assert samples['relay_spool_oldest_age_seconds{destination="archive"}'] == 0
    spool = Path(env["RELAY_SPOOL"].removeprefix("sqlite:///"))
    assert samples["relay_spool_file_bytes"] >= spool.stat().st_size > 0
    assert samples["relay_ledger_pending_hops"] >= 0
    assert samples["relay_ledger_write_seconds_count"] >= 1
    assert samples['relay_workers{state="answered"}'] == 1
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total",
                 "process_open_fds", "process_start_time_seconds"):
        assert samples[name] > 0, name
