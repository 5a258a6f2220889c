"""Embedding: the relay mounts inside an existing Starlette or FastAPI app."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import relay
from relay.app import create_admin_app
from relay.runtime import Runtime


async def _home(request: object) -> PlainTextResponse:
    return PlainTextResponse("shop")


async def _roundtrip(host: Starlette | FastAPI, relay_app: Starlette) -> None:
    transport = httpx.ASGITransport(app=host)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        assert (await c.get("/")).text == "shop"
        r = await c.post("/t/e", json={"event": "page_view"}, headers={"cf-ipcountry": "US"})
        assert r.status_code == 202, r.text
        assert (await c.get("/t/healthz")).status_code == 200
    admin = create_admin_app(relay_app)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=admin), base_url="http://a"
    ) as c:
        metrics = (await c.get("/metrics")).text
        assert 'relay_events_received_total{event="page_view",source="browser"} 1.0' in metrics
        ready = (await c.get("/readyz")).json()
        assert ready["ready"] and ready["rules_version"]
        rules = (await c.get("/rules")).text
        assert "test-backend-secret" not in rules and "test-cookie-secret" not in rules
    runtime: Runtime = relay_app.state.relay
    await runtime.stop()


async def test_mount_in_starlette(rules_dir: Path, env: dict[str, str], tmp_path: Path) -> None:
    relay_app = relay.create_app(str(rules_dir), var_dir=tmp_path / "var", env=env)
    host = Starlette(routes=[Route("/", _home)])
    host.mount("/t", relay_app)
    await _roundtrip(host, relay_app)


async def test_mount_in_fastapi(rules_dir: Path, env: dict[str, str], tmp_path: Path) -> None:
    relay_app = relay.create_app(str(rules_dir), var_dir=tmp_path / "var", env=env)
    host = FastAPI()

    @host.get("/", response_class=PlainTextResponse)
    async def home() -> str:
        return "shop"

    host.mount("/t", relay_app)
    await _roundtrip(host, relay_app)


async def test_generated_secret_is_kept(
    rules_dir: Path, env: dict[str, str], tmp_path: Path
) -> None:
    env = {k: v for k, v in env.items() if k != "RELAY_SECRET"}
    app1 = relay.create_app(str(rules_dir), var_dir=tmp_path / "var", env=env)
    secret = (tmp_path / "var" / "cookie-secret").read_text()
    app2 = relay.create_app(str(rules_dir), var_dir=tmp_path / "var", env=env)
    assert (tmp_path / "var" / "cookie-secret").read_text() == secret
    r1: Runtime = app1.state.relay
    r2: Runtime = app2.state.relay
    value = r1.signer.issue(None).value
    assert r2.signer.verify(value) is not None


async def test_debug_feed_shows_decisions_and_delivery_attempts(
    rules_dir: Path, env: dict[str, str], tmp_path: Path
) -> None:
    import asyncio

    relay_app = relay.create_app(str(rules_dir), var_dir=tmp_path / "var", env=env)
    runtime: Runtime = relay_app.state.relay
    mine = runtime.debug.subscribe(None)
    transport = httpx.ASGITransport(app=relay_app, client=("198.51.100.23", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        r = await c.post(
            "/e",
            json={"event": "page_view", "event_id": "dbg-1", "user": {"email": "ann@example.com"}},
            headers={"cf-ipcountry": "US"},
        )
        assert r.status_code == 202
        others = runtime.debug.subscribe("someone-else")
        decision = await asyncio.wait_for(mine.get(), 5)
        attempt = await asyncio.wait_for(mine.get(), 5)
    assert decision["event_id"] == "dbg-1" and decision["copies"][0]["outcome"] == "delivered"
    assert "ann@example.com" not in str(decision) and "198.51.100.23" not in str(decision)
    assert attempt["delivery"] == "archive" and attempt["outcome"] == "ok"
    assert attempt["event_ids"] == ["dbg-1"]
    assert others.empty()  # a viewer filtering on another browser sees neither
    await runtime.stop()


async def test_create_app_keeps_its_state_under_var_dir(
    rules_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped rules' ``sqlite:///var/spool.db`` and ``var/events.jsonl`` land in var_dir,
    as the cookie secret does, whatever the working directory."""
    import asyncio

    monkeypatch.chdir(tmp_path)
    state = tmp_path / "srv" / "relay"
    env = {"BACKEND_SIGNING_SECRET": "test-app-backend-signing-secret"}
    relay_app = relay.create_app(str(rules_dir), var_dir=state, env=env)
    runtime: Runtime = relay_app.state.relay
    assert runtime.rules.relay.spool == f"sqlite:///{state}/spool.db"
    transport = httpx.ASGITransport(app=relay_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        r = await c.post("/e", json={"event": "page_view", "event_id": "var-1"},
                         headers={"cf-ipcountry": "US"})
        assert r.status_code == 202, r.text
        for _ in range(100):
            if (state / "events.jsonl").exists():
                break
            await asyncio.sleep(0.05)
    await runtime.stop()
    assert '"event_id":"var-1"' in (state / "events.jsonl").read_text()
    assert (state / "spool.db").exists() and (state / "cookie-secret").exists()
    assert not (tmp_path / "var").exists()
