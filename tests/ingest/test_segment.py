"""``POST {prefix}/v1/{call}`` in-process: Segment's calls and short paths, the write key in
the header or the body, gzip, Segment's limits and answers. The real libraries against
``relay serve`` are in tests/e2e/test_e2e_segment_ingest.py and tests/browser/."""

from __future__ import annotations

import base64
import gzip
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette

from relay.app import create_app
from relay.ingest.segment import (
    MAX_MESSAGE_BYTES,
    MAX_REQUEST_BYTES,
    basic_write_key,
    segment_error,
)
from relay.runtime import Runtime
from relay.spool.base import Quarantined, Row

WRITE_KEY = "test-segment-write-key-7f3a"
OTHER_KEY = "another-segment-write-key-9c1"
RULES = f"""
sources:
  apps: {{type: segment, write_keys: [{WRITE_KEY}, {OTHER_KEY}]}}
events:
  Order Completed:
    properties:
      order_id: {{type: string, required: true}}
  identify:
    properties:
      plan: {{type: string, enum: [free, pro]}}
  group: {{}}
  alias: {{}}
  screen_view: {{}}
"""


def auth(key: str = WRITE_KEY) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def track(mid: str = "m-1", **extra: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "track", "event": "Order Completed", "messageId": mid,
                           "userId": "u_42", "properties": {"order_id": "O-1"},
                           "context": {"country": "US"}}
    msg.update(extra)
    return msg


@pytest.fixture
async def seg_app(rules_dir: Path, env: dict[str, str], tmp_path: Path
                  ) -> AsyncIterator[Starlette]:
    (rules_dir / "zz-segment.yaml").write_text(RULES)
    app = create_app(rules_dir, var_dir=tmp_path / "var", env=env)
    yield app
    runtime: Runtime = app.state.relay
    await runtime.stop()


@pytest.fixture
async def rows(seg_app: Starlette, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What each request committed to the spool (the archive's copies), as it arrives."""
    runtime: Runtime = seg_app.state.relay
    await runtime.ensure_started()
    seen: list[dict[str, Any]] = []
    put = runtime.spool.put

    async def recording(batch: Any, quarantined: Any = ()) -> None:
        seen.extend(orjson.loads(r.payload) for r in batch)
        await put(batch, quarantined)

    monkeypatch.setattr(runtime.spool, "put", recording)
    return seen


@pytest.fixture
async def seg(seg_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=seg_app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        yield c


JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(("path", "event"), [
    ("/v1/track", "Order Completed"), ("/v1/t", "Order Completed"),
    ("/v1/page", "page_view"), ("/v1/p", "page_view"),
    ("/v1/screen", "screen_view"), ("/v1/s", "screen_view"),
    ("/v1/identify", "identify"), ("/v1/i", "identify"),
    ("/v1/group", "group"), ("/v1/g", "group"),
    ("/v1/alias", "alias"), ("/v1/a", "alias"),
])
async def test_every_call_and_its_short_path(
    seg: httpx.AsyncClient, rows: list[dict[str, Any]], path: str, event: str
) -> None:
    msg = {**track("m-" + path[4:]), "groupId": "g1", "previousId": "p1"}
    r = await seg.post(path, json=msg, headers=auth())
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True}
    assert [(row["event"], row["event_id"]) for row in rows] == [(event, "m-" + path[4:])]


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/b", "/v1/import"])
async def test_batch_and_its_short_paths(
    seg: httpx.AsyncClient, rows: list[dict[str, Any]], path: str
) -> None:
    body = {"batch": [track("b-1"), {**track("b-2"), "type": "identify",
                                     "traits": {"plan": "pro"}}],
            "sentAt": "2026-11-28T12:00:00Z"}
    r = await seg.post(path, json=body, headers=auth())
    assert r.status_code == 200, r.text
    assert [(row["event"], row["event_id"]) for row in rows] == [
        ("Order Completed", "b-1"), ("identify", "b-2")]


async def test_an_unknown_call_is_404_and_logged(
    seg: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="relay"):
        r = await seg.post("/v1/x", json=track(), headers=auth())
    assert r.status_code == 404
    assert r.json()["code"] == "not_found" and "t, p, s, i, g, a, b" in r.json()["message"]
    assert any("no Segment call" in rec.getMessage() for rec in caplog.records)


async def test_write_key_in_the_body_as_analytics_js_sends_it(
    seg: httpx.AsyncClient, rows: list[dict[str, Any]]
) -> None:
    body = orjson.dumps({**track("wk-1"), "writeKey": WRITE_KEY})
    r = await seg.post("/v1/t", content=body, headers={"content-type": "text/plain"})
    assert r.status_code == 200, r.text
    assert [row["event_id"] for row in rows] == ["wk-1"]


async def test_write_key_in_both_places_must_agree(seg: httpx.AsyncClient) -> None:
    same = await seg.post("/v1/t", json={**track("wk-2"), "writeKey": WRITE_KEY},
                          headers=auth())
    assert same.status_code == 200
    # Both keys are valid, but not the same: which source is meant?
    r = await seg.post("/v1/t", json={**track("wk-3"), "writeKey": OTHER_KEY}, headers=auth())
    assert r.status_code == 401
    assert "not the one in the Authorization header" in r.json()["message"]


@pytest.mark.parametrize(("headers", "body", "says"), [
    ({}, track(), "missing writeKey"),
    (auth("nope-nope-nope-nope"), track(), "unknown writeKey"),
    ({}, {**track(), "writeKey": "nope-nope-nope-nope"}, "unknown writeKey"),
    ({}, {**track(), "writeKey": 42}, "writeKey: expected a string"),
    ({"authorization": "Basic !!!"}, track(), "not base64"),
])
async def test_missing_or_wrong_write_key_is_401(
    seg: httpx.AsyncClient, caplog: pytest.LogCaptureFixture,
    headers: dict[str, str], body: dict[str, Any], says: str,
) -> None:
    with caplog.at_level(logging.WARNING, logger="relay"):
        r = await seg.post("/v1/track", json=body, headers=headers)
    assert r.status_code == 401
    data = r.json()
    assert data["success"] is False and data["code"] == "unauthorized"
    assert says in data["message"] and data["error"] == data["message"]
    assert "nope-nope" not in caplog.text  # a key is never logged


async def test_a_basic_key_is_checked_before_the_body_is_read(seg: httpx.AsyncClient) -> None:
    r = await seg.post("/v1/track", content=b"{not json", headers={**JSON, **auth("x" * 20)})
    assert r.status_code == 401


def test_basic_write_key() -> None:
    assert basic_write_key(auth()) == WRITE_KEY
    assert basic_write_key({"authorization": "Bearer t"}) is None
    assert basic_write_key({}) is None
    with pytest.raises(ValueError):
        basic_write_key({"authorization": "Basic %%%"})


async def test_gzip_bodies(seg: httpx.AsyncClient, rows: list[dict[str, Any]]) -> None:
    body = gzip.compress(orjson.dumps({"batch": [track("gz-1"), track("gz-2")]}))
    r = await seg.post("/v1/batch", content=body,
                       headers={**JSON, **auth(), "content-encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert [row["event_id"] for row in rows] == ["gz-1", "gz-2"]


@pytest.mark.parametrize(("encoding", "body", "status", "says"), [
    ("gzip", b"not gzip at all", 400, "not valid gzip"),
    ("gzip", gzip.compress(b'{"batch": []}')[:-6], 400, "ends early"),
    ("br", b"{}", 415, "Content-Encoding 'br'"),
], ids=["not-gzip", "truncated", "brotli"])
async def test_bad_compressed_bodies(
    seg: httpx.AsyncClient, encoding: str, body: bytes, status: int, says: str
) -> None:
    r = await seg.post("/v1/batch", content=body,
                       headers={**JSON, **auth(), "content-encoding": encoding})
    assert r.status_code == status
    assert says in r.json()["message"]


async def test_a_zip_bomb_is_413(seg: httpx.AsyncClient) -> None:
    """100 MB of zeros gzip to about 100 KB; decompression stops at the limit."""
    bomb = gzip.compress(b"0" * 100_000_000, compresslevel=9)
    assert len(bomb) < MAX_REQUEST_BYTES
    r = await seg.post("/v1/batch", content=bomb,
                       headers={**JSON, **auth(), "content-encoding": "gzip"})
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large" and "decompressed" in r.json()["message"]


async def test_segment_limits_not_the_browser_ones(
    seg: httpx.AsyncClient, rows: list[dict[str, Any]]
) -> None:
    """A 450 KB batch of 150 messages (what analytics-python sends) is taken whole; the
    browser's 64 KiB and 50 events do not apply."""
    batch = [track(f"big-{i}", properties={"order_id": f"O-{i}", "pad": "x" * 2000})
             for i in range(150)]
    body = orjson.dumps({"batch": batch})
    assert 64 * 1024 < len(body) < MAX_REQUEST_BYTES
    r = await seg.post("/v1/batch", content=body, headers={**JSON, **auth()})
    assert r.status_code == 200, r.text
    assert len(rows) == 150


async def test_a_request_over_500_kib_is_413(seg: httpx.AsyncClient) -> None:
    body = b'{"batch": [' + b"1," * (MAX_REQUEST_BYTES // 2) + b"1]}"
    r = await seg.post("/v1/batch", content=body, headers={**JSON, **auth()})
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"


async def test_a_message_over_32_kib_is_refused_alone(
    seg: httpx.AsyncClient, rows: list[dict[str, Any]]
) -> None:
    """Segment refuses a message over 32 KB. In a batch only that message is refused (the
    others are accepted); alone, it is a 400, which no Segment library retries."""
    huge = track("huge", properties={"order_id": "O", "pad": "x" * MAX_MESSAGE_BYTES})
    r = await seg.post("/v1/batch", json={"batch": [track("ok-1"), huge]}, headers=auth())
    assert r.status_code == 200
    assert r.json()["rejected"][0]["index"] == 1
    assert "over Segment's limit of 32768" in r.json()["rejected"][0]["error"]
    assert [row["event_id"] for row in rows] == ["ok-1"]
    alone = await seg.post("/v1/track", json=huge, headers=auth())
    assert alone.status_code == 400 and alone.json()["code"] == "invalid_message"


async def test_rejections_name_segment_fields(seg: httpx.AsyncClient) -> None:
    batch = [
        track("r-0"),
        {**track(), "messageId": " padded"},
        {**track("r-2"), "type": "identify", "traits": {"plan": "gold"}},
        {**track("r-3"), "type": "bogus"},
        {"type": "track", "event": "Order Completed", "messageId": "r-4"},
        {**track("r-5"), "timestamp": "yesterday"},
    ]
    r = await seg.post("/v1/batch", json={"batch": batch}, headers=auth())
    assert r.status_code == 200, r.text
    errors = {x["index"]: x["error"] for x in r.json()["rejected"]}
    assert errors[1].startswith("messageId: must not start or end with whitespace")
    assert errors[2].startswith("traits.plan: must be one of")
    assert errors[3].startswith("type: 'bogus' is not one of track, page")
    assert errors[4].startswith("userId or anonymousId: required")
    assert errors[5].startswith("timestamp: expected an ISO-8601 time")
    assert set(errors) == {1, 2, 3, 4, 5}


@pytest.mark.parametrize(("path", "body", "code", "says"), [
    ("/v1/batch", b"{nope", "invalid_json", "invalid JSON"),
    ("/v1/batch", b'{"batch": {}}', "invalid_request", "batch: expected"),
    ("/v1/batch", b'{"batch": []}', "invalid_request", "no messages"),
    ("/v1/track", b"[1]", "invalid_request", "expected a JSON object"),
])
async def test_malformed_bodies_are_400(
    seg: httpx.AsyncClient, path: str, body: bytes, code: str, says: str
) -> None:
    r = await seg.post(path, content=body, headers={**JSON, **auth()})
    assert r.status_code == 400
    assert r.json()["code"] == code and says in r.json()["message"]


async def test_too_many_messages_is_413(seg: httpx.AsyncClient) -> None:
    r = await seg.post("/v1/batch", json={"batch": [{}] * 2501}, headers=auth())
    assert r.status_code == 413 and "at most 2500" in r.json()["message"]


async def test_other_content_types_are_415(seg: httpx.AsyncClient) -> None:
    r = await seg.post("/v1/track", content=orjson.dumps(track()),
                       headers={"content-type": "application/x-www-form-urlencoded", **auth()})
    assert r.status_code == 415 and "application/json" in r.json()["message"]


async def test_spool_failure_is_a_retryable_503(
    seg: httpx.AsyncClient, seg_app: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relay.errors import SpoolUnavailable

    runtime: Runtime = seg_app.state.relay
    await runtime.ensure_started()

    async def broken(rows: list[Row], quarantined: list[Quarantined] = []) -> None:  # noqa: B006
        raise SpoolUnavailable("disk full")

    monkeypatch.setattr(runtime.spool, "put", broken)
    r = await seg.post("/v1/track", json=track("s-1"), headers=auth())
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert r.json()["success"] is False
    monkeypatch.undo()
    again = await seg.post("/v1/track", json=track("s-1"), headers=auth())
    assert again.status_code == 200 and again.json() == {"success": True}


async def test_a_repeated_message_is_a_duplicate_not_an_error(seg: httpx.AsyncClient) -> None:
    first = await seg.post("/v1/track", json=track("d-1"), headers=auth())
    again = await seg.post("/v1/track", json=track("d-1"), headers=auth())
    assert first.status_code == again.status_code == 200
    assert again.json() == {"success": True}


async def test_identify_traits_reach_the_event(
    seg: httpx.AsyncClient, rows: list[dict[str, Any]]
) -> None:
    msg = {"type": "identify", "messageId": "id-1", "userId": "u_42",
           "context": {"country": "US"},
           "traits": {"email": "Ann@Example.com", "plan": "pro", "firstName": "Ann"}}
    r = await seg.post("/v1/identify", json=msg, headers=auth())
    assert r.status_code == 200, r.text
    (row,) = rows
    assert row["properties"] == {"plan": "pro"}
    assert row["user"]["id"] == "u_42" and row["user"]["first_name"] == "Ann"
    assert len(row["user"]["email"]) == 64  # the shipped pipeline hashed it


def test_segment_error_renames_fields() -> None:
    assert segment_error("event_id: required; time: bad", "track") == (
        "messageId: required; timestamp: bad")
    assert segment_error("properties.plan: x; properties.a.b: y", "identify") == (
        "traits.plan: x; traits.a.b: y")
    assert segment_error("properties.plan: x", "track") == "properties.plan: x"
    assert segment_error("context.user_agent: too long", None) == "context.userAgent: too long"


async def test_without_allowed_origins_any_page_may_post_with_the_write_key(
    seg: httpx.AsyncClient
) -> None:
    r = await seg.post("/v1/t", json=track("m-any"),
                       headers={**auth(), "origin": "https://elsewhere.example"})
    assert r.status_code == 200, r.text


async def test_allowed_origins_refuse_other_pages_403(
    rules_dir: Path, env: dict[str, str], tmp_path: Path
) -> None:
    (rules_dir / "zz-segment.yaml").write_text(RULES.replace(
        "{type: segment,", "{type: segment, allowed_origins: [https://shop.example],"))
    app = create_app(rules_dir, var_dir=tmp_path / "var", env=env)
    rt: Runtime = app.state.relay
    try:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            r = await c.post("/v1/t", json=track("m-evil"),
                             headers={**auth(), "origin": "https://evil.example"})
            assert r.status_code == 403
            assert r.json()["success"] is False and r.json()["code"] == "forbidden"
            assert "origin https://evil.example" in r.json()["message"]
            for headers in ({"origin": "https://shop.example"}, {}):  # a page; a server
                r = await c.post("/v1/t", json=track("m-" + str(len(headers))),
                                 headers={**auth(), **headers})
                assert r.status_code == 200, r.text
        get = rt.metrics.registry.get_sample_value
        assert get("relay_origin_refused_total", {"source": "apps"}) == 1
    finally:
        await rt.stop()
