"""The debug view's page and stream on the admin app: a self-contained page that runs only
its own code, a stream that says whose events it shows, and the admin token."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse

import relay
from relay.admin.debug import debug_stream, viewer
from relay.app import create_admin_app
from relay.observe.log import digest
from relay.runtime import Runtime

TOKEN = "test-admin-token-0123456789"


@pytest.fixture
async def app(rules_dir: Path, env: dict[str, str], tmp_path: Path) -> AsyncIterator[Starlette]:
    relay_app = relay.create_app(str(rules_dir), var_dir=tmp_path / "var", env=env)
    yield relay_app
    runtime: Runtime = relay_app.state.relay
    await runtime.stop()


def _admin(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_admin_app(app)),
                             base_url="http://127.0.0.1:9901")


def _request(app: Starlette, query: str = "", cookie: str | None = None) -> Request:
    headers = [(b"cookie", f"_rc={cookie}".encode())] if cookie else []
    return Request({"type": "http", "method": "GET", "path": "/debug/stream", "headers": headers,
                    "query_string": query.encode(), "app": app})


def _sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


async def test_the_page_runs_only_its_own_inline_code(app: Starlette) -> None:
    async with _admin(app) as admin:
        r = await admin.get("/debug")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    policy = dict(part.strip().split(" ", 1) for part in r.headers["content-security-policy"]
                  .split(";"))
    [script] = re.findall(r"<script>(.*?)</script>", html, re.S)
    [style] = re.findall(r"<style>(.*?)</style>", html, re.S)
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == _sha(script) and policy["style-src"] == _sha(style)
    assert policy["connect-src"] == "'self'"
    assert "unsafe" not in r.headers["content-security-policy"]
    assert r.headers["referrer-policy"] == "no-referrer"  # its URL may hold ?token=
    assert r.headers["cache-control"] == "no-store"
    # No external asset of any kind: no src/href at all, no URL with a scheme or host.
    assert not re.search(r"\b(src|href)\s*=", html)
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, re.I)
    assert "@import" not in style and "url(" not in style
    # Feed text is only ever set as text.
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function"):
        assert sink not in script, sink


async def test_the_stream_says_whose_events_it_shows(app: Starlette) -> None:
    runtime: Runtime = app.state.relay
    cookie = runtime.signer.issue(None).value
    own = runtime.signer.verify(cookie)
    assert own is not None
    mine = digest(own)
    shown = {
        "none": viewer(runtime, _request(app)),
        "cookie": viewer(runtime, _request(app, cookie=cookie)),
        "tampered": viewer(runtime, _request(app, cookie=cookie[:-2] + "xx")),
        "cid": viewer(runtime, _request(app, "cid=abc123", cookie=cookie)),
        "all": viewer(runtime, _request(app, "all=1", cookie=cookie)),
    }
    assert {k: (v["by"], v["cid"], v["cookie"]) for k, v in shown.items()} == {
        "none": ("all", None, None),
        "cookie": ("cookie", mine, mine),
        "tampered": ("all", None, None),
        "cid": ("cid", "abc123", mine),
        "all": ("all", None, mine),
    }
    assert shown["none"]["destinations"] == {
        "archive": {"type": "file", "purpose": "analytics", "pipeline": "minimize"}}
    assert shown["none"]["events"] == ["page_view", "purchase", "signup"]


async def _chunks(response: StreamingResponse, n: int) -> list[bytes]:
    out: list[bytes] = []
    async for chunk in response.body_iterator:
        out.append(chunk if isinstance(chunk, bytes) else str(chunk).encode())
        if len(out) == n:
            break
    return out


async def test_the_stream_starts_with_its_retry_time_and_viewer_then_the_entries(
        app: Starlette) -> None:
    runtime: Runtime = app.state.relay
    response = await debug_stream(_request(app, "cid=abc123"))
    assert isinstance(response, StreamingResponse)
    assert response.media_type == "text/event-stream"
    first, second = await _chunks(response, 2)
    assert first == b": connected\nretry: 1000\n\n"
    assert second.startswith(b"event: viewer\ndata: ") and second.endswith(b"\n\n")
    hello: dict[str, Any] = orjson.loads(second.split(b"data: ", 1)[1])
    assert (hello["by"], hello["cid"]) == ("cid", "abc123")
    assert runtime.debug.listening
    runtime.debug.publish([{"event_id": "other", "cid": "zzz"},
                           {"event_id": "e1", "cid": "abc123"}])
    [third] = await _chunks(response, 1)
    assert orjson.loads(third.removeprefix(b"data: ")) == {"event_id": "e1", "cid": "abc123"}
    iterator: Any = response.body_iterator
    await iterator.aclose()
    assert not runtime.debug.listening  # the viewer is gone with its stream


async def test_behind_the_admin_token_the_page_opens_with_it_in_the_url(
        rules_dir: Path, env: dict[str, str], tmp_path: Path) -> None:
    (rules_dir / "zz-admin.yaml").write_text(f"relay:\n  admin: {{token: {TOKEN}}}\n")
    relay_app = relay.create_app(str(rules_dir), var_dir=tmp_path / "var", env=env)
    try:
        async with _admin(relay_app) as admin:
            assert (await admin.get("/debug")).status_code == 401
            assert (await admin.get("/debug?token=wrong")).status_code == 401
            page = await admin.get(f"/debug?token={TOKEN}")
            assert page.status_code == 200 and "EventSource" in page.text
            # The page builds its stream's URL from its own, token included.
            assert 'q.set("token", token)' in page.text
    finally:
        runtime: Runtime = relay_app.state.relay
        await runtime.stop()
