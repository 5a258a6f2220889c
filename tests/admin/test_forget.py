"""``POST /forget`` and the dead-letter actions on the admin listener, in process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

import relay.app as relay
from relay.app import create_admin_app
from relay.runtime import Runtime
from relay.spool.base import Claimed, Row


@pytest.fixture
async def app(rules_dir: Path, env: dict[str, str], tmp_path: Path) -> AsyncIterator[Starlette]:
    relay_app = relay.create_app(str(rules_dir), var_dir=tmp_path / "var", env=env)
    runtime: Runtime = relay_app.state.relay
    await runtime.ensure_started()
    yield relay_app
    await runtime.stop()


@pytest.fixture
async def admin(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_admin_app(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://a") as c:
        yield c


@pytest.mark.parametrize(("body", "error"), [
    (b"not json", "not JSON"),
    (b"[]", "JSON object"),
    (b"{}", "exactly one"),
    (b'{"user_id": "a", "email": "b@c.example"}', "exactly one"),
    (b'{"name": "Ann"}', "unknown key"),
    (b'{"user_id": " "}', "non-empty"),
])
async def test_forget_says_what_is_wrong_with_the_body(
        admin: httpx.AsyncClient, body: bytes, error: str) -> None:
    r = await admin.post("/forget", content=body)
    assert r.status_code == 400 and error in r.json()["error"]


async def test_forget_answers_the_receipt(admin: httpx.AsyncClient) -> None:
    r = await admin.post("/forget", json={"user_id": "u_admin_1"})
    assert r.status_code == 200
    receipt = r.json()
    assert receipt["relay"]["complete"] and receipt["relay"]["events"] == 0
    assert [d["name"] for d in receipt["destinations"]] == ["archive"]
    assert "u_admin_1" not in r.text
    assert (await admin.get("/forget")).status_code == 405


async def test_the_dead_letter_actions(app: Starlette, admin: httpx.AsyncClient) -> None:
    spool = app.state.relay.spool
    await spool.put([Row("archive", "e1", b"{}"), Row("archive", "e2", b"{}")])
    claimed: list[Claimed] = await spool.claim("archive", 10, 30)
    await spool.dead(claimed, 400, "no", 1)
    assert (await admin.get("/dlq/count")).json()["count"] == 2
    assert (await admin.post("/dlq/replay", json={"destination": "nope"})).status_code == 404
    assert (await admin.post("/dlq/purge", json={"through": "all"})).status_code == 400
    first = (await admin.get("/dlq")).json()[0]["id"]
    assert (await admin.post("/dlq/purge", json={"through": first})).json() == {"purged": 1}
    assert (await admin.post("/dlq/replay")).json() == {"replayed": 1}
    assert (await admin.get("/dlq/count", params={"destination": "archive"})).json() == {
        "count": 0, "last": 0}
