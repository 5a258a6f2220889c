"""The public HTTP surface in-process (the same surface runs under relay serve in tests/e2e)."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect

from relay.errors import SpoolUnavailable
from relay.ingest.body import parse_body
from relay.ingest.webhook import check_auth
from relay.rules.model import BearerAuth, HmacAuth, Source
from relay.runtime import Runtime
from relay.spool.base import Quarantined, Row
from relay.web import read_body
from tests.conftest import BACKEND_SECRET, receiver

PAGE_VIEW = {"event": "page_view", "context": {"page": {"url": "https://shop.example/"}}}


def sign(body: bytes, secret: str = BACKEND_SECRET, t: int | None = None) -> str:
    t = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def purchase(eid: str, **props: object) -> dict[str, object]:
    p = {"order_id": "O-1", "value": 10, "currency": "USD", **props}
    return {"event": "purchase", "event_id": eid, "context": {"country": "US"}, "properties": p}


async def test_browser_event_accepted_with_cookie(client: httpx.AsyncClient) -> None:
    r = await client.post("/e", json=PAGE_VIEW, headers={"cf-ipcountry": "US"})
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("_rc=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Max-Age=1800" in cookie and "Secure" not in cookie  # 127.0.0.1


async def test_text_plain_batch_with_partial_rejection(client: httpx.AsyncClient) -> None:
    body = orjson.dumps({"batch": [PAGE_VIEW, {"event": "bad name!"}, {"event": "mystery"}]})
    r = await client.post("/e", content=body, headers={"content-type": "text/plain;charset=UTF-8"})
    assert r.status_code == 202
    data = r.json()
    assert data["accepted"] == 1
    assert [x["index"] for x in data["rejected"]] == [1, 2]
    assert data["rejected"][0]["error"].startswith("event:")


@pytest.mark.parametrize(
    ("body", "ctype", "status"),
    [
        (b"{nope", "application/json", 400),
        (b"", "application/json", 400),
        (b"[]", "application/json", 400),
        (b"{}", "application/json", 400),
        (b"42", "application/json", 400),
        (b'{"event": "page_view"}', "application/xml", 415),
        (b'{"event": "page_view"}', "", 415),
        (orjson.dumps([PAGE_VIEW] * 51), "application/json", 413),
        (b'{"event":"page_view","p":"' + b"x" * 70000 + b'"}', "application/json", 413),
    ],
)
async def test_bad_requests(
    client: httpx.AsyncClient, body: bytes, ctype: str, status: int
) -> None:
    r = await client.post("/e", content=body, headers={"content-type": ctype})
    assert r.status_code == status, r.text
    assert "error" in r.json()
    assert "Traceback" not in r.text


async def test_wrong_method_and_unknown_route(client: httpx.AsyncClient) -> None:
    assert (await client.get("/e")).status_code == 405
    assert (await client.post("/nope", json={})).status_code == 404
    assert (await client.get("/healthz")).status_code == 200


async def test_webhook_auth(client: httpx.AsyncClient) -> None:
    body = orjson.dumps(purchase("w-1"))
    ok = await client.post(
        "/hook/backend",
        content=body,
        headers={"content-type": "application/json", "x-relay-signature": sign(body)},
    )
    assert ok.status_code == 202, ok.text
    stale = sign(body, t=int(time.time()) - 3600)
    for headers in ({}, {"x-relay-signature": stale}, {"x-relay-signature": sign(body, "wrong")}):
        r = await client.post(
            "/hook/backend", content=body, headers={"content-type": "application/json", **headers}
        )
        assert r.status_code == 401, headers
    r = await client.post("/hook/nope", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 404


async def test_webhook_requires_event_id_and_dedups(client: httpx.AsyncClient) -> None:
    no_id = orjson.dumps({k: v for k, v in purchase("x").items() if k != "event_id"})
    r = await client.post(
        "/hook/backend",
        content=no_id,
        headers={"content-type": "application/json", "x-relay-signature": sign(no_id)},
    )
    assert r.status_code == 400 and "event_id" in r.json()["error"]
    body = orjson.dumps(purchase("w-2"))
    headers = {"content-type": "application/json", "x-relay-signature": sign(body)}
    assert (await client.post("/hook/backend", content=body, headers=headers)).json()[
        "accepted"
    ] == 1
    # The backend's retry, signed afresh (the same signed request again is a replay: 401).
    headers["x-relay-signature"] = sign(body, t=int(time.time()) + 1)
    again = await client.post("/hook/backend", content=body, headers=headers)
    assert again.status_code == 202 and again.json()["duplicates"] == 1


async def test_a_replayed_signed_request_is_401(client: httpx.AsyncClient) -> None:
    body = orjson.dumps(purchase("w-replay"))
    signed = sign(body)
    headers = {"content-type": "application/json", "x-relay-signature": signed}
    assert (await client.post("/hook/backend", content=body, headers=headers)).status_code == 202
    t, _, v1 = signed.partition(",")
    for replay in (signed, f"{v1},{t}", f"{signed},v1={'0' * 64}", f" {t} , {v1} "):
        r = await client.post("/hook/backend", content=body,
                              headers={**headers, "x-relay-signature": replay})
        assert r.status_code == 401, (replay, r.text)
        assert "already received (a replay)" in r.json()["error"], r.text
    # The same body under another timestamp is a new request: a duplicate, not a replay.
    r = await client.post("/hook/backend", content=body, headers={
        **headers, "x-relay-signature": sign(body, t=int(time.time()) - 1)})
    assert r.status_code == 202 and r.json()["duplicates"] == 1, r.text


async def test_a_signed_request_that_accepted_nothing_may_be_sent_again(
    client: httpx.AsyncClient,
) -> None:
    """(A 503's retry with the same signature: test_spool_failure_is_503_and_not_a_duplicate.)"""
    rejected = orjson.dumps({"event": "purchase", "event_id": "w-bad", "properties": {}})
    headers = {"content-type": "application/json", "x-relay-signature": sign(rejected)}
    for _ in range(2):
        r = await client.post("/hook/backend", content=rejected, headers=headers)
        assert r.status_code == 400, r.text  # rejected both times, never a replay


async def test_spool_failure_is_503_and_not_a_duplicate(
    client: httpx.AsyncClient, relay_app: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime: Runtime = relay_app.state.relay
    await runtime.ensure_started()

    async def broken(rows: list[Row], quarantined: list[Quarantined] = []) -> None:  # noqa: B006
        raise SpoolUnavailable("disk full")

    body = orjson.dumps(purchase("w-3"))
    headers = {"content-type": "application/json", "x-relay-signature": sign(body)}
    monkeypatch.setattr(runtime.spool, "put", broken)
    r = await client.post("/hook/backend", content=body, headers=headers)
    assert r.status_code == 503 and r.headers["retry-after"]
    monkeypatch.undo()
    r = await client.post("/hook/backend", content=body, headers=headers)
    assert r.json() == {"accepted": 1, "duplicates": 0, "rejected": []}


async def test_archive_receives_minimized_event(
    client: httpx.AsyncClient, tmp_path: Path, relay_app: Starlette
) -> None:
    event = {
        "event": "page_view",
        "event_id": "pv-min",
        "user": {"email": "Ann@Example.com"},
        "context": {"page": {"url": "https://shop.example/?utm_source=x&gclid=abc&email=a@b.co"}},
    }
    r = await client.post(
        "/e", json=event, headers={"cf-ipcountry": "US", "user-agent": "Mozilla/5.0 Firefox/120.0"}
    )
    assert r.status_code == 202
    out = tmp_path / "events.jsonl"
    for _ in range(100):
        if out.exists() and out.read_text():
            break
        import asyncio

        await asyncio.sleep(0.05)
    line = orjson.loads(out.read_text().splitlines()[0])
    assert line["event_id"] == "pv-min"
    assert line["context"]["ip"] == "203.0.113.0"
    assert "user_agent" not in line["context"]
    assert line["user"]["email"] == hashlib.sha256(b"ann@example.com").hexdigest()
    assert "gclid" not in line["context"]["page"]["url"]
    assert "a@b.co" not in out.read_text()


def test_parse_body_shapes() -> None:
    assert parse_body(b'{"event":"a"}', "application/json", 50) == [{"event": "a"}]
    assert parse_body(b'[{"event":"a"}]', "text/plain; charset=utf-8", 50) == [{"event": "a"}]
    assert parse_body(b'{"batch":[{"event":"a"}]}', "application/json", 50) == [{"event": "a"}]


def test_check_auth_bearer() -> None:
    src = Source("s", "webhook", BearerAuth(("tok",)))
    assert check_auth(src, {"authorization": "Bearer tok"}, b"", 0) is None
    assert check_auth(src, {"authorization": "Bearer nope"}, b"", 0)
    assert check_auth(src, {}, b"", 0)
    hsrc = Source("h", "webhook", HmacAuth(("a", "b"), 300))
    assert check_auth(hsrc, {"x-relay-signature": sign(b"{}", "b")}, b"{}", time.time()) is None


async def test_read_body_joins_chunks() -> None:
    receive = receiver(
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"cd", "more_body": False},
    )
    assert await read_body(receive, None, 10) == b"abcd"


async def test_read_body_stops_at_the_limit_without_a_length() -> None:
    receive = receiver(
        {"type": "http.request", "body": b"x" * 8, "more_body": True},
        {"type": "http.request", "body": b"x" * 8, "more_body": True},
        {"type": "http.request", "body": b"never read", "more_body": False},
    )
    assert await read_body(receive, None, 10) is None


async def test_read_body_trusts_a_declared_length_over_the_limit() -> None:
    assert await read_body(receiver(), "11", 10) is None


async def test_read_body_raises_on_disconnect() -> None:
    with pytest.raises(ClientDisconnect):
        await read_body(receiver({"type": "http.disconnect"}), None, 10)


async def test_answer_counts_events_held_for_consent_or_their_authority(
    client: httpx.AsyncClient,
) -> None:
    """``held``: events of the request with a copy waiting (for a consent choice, or for the
    authoritative source); absent when none is, like ``quarantined``."""
    eu = {"cf-ipcountry": "DE"}
    batch = [PAGE_VIEW, {**PAGE_VIEW, "consent": {"analytics": "granted"}}, {"event": "nope!"}]
    r = await client.post("/e", json=batch, headers=eu)
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 2, "duplicates": 0, "held": 1,
                        "rejected": [{"index": 2, "error": r.json()["rejected"][0]["error"]}]}
    browser_purchase = {**purchase("b-held"), "context": {}}
    r = await client.post("/e", json=browser_purchase, headers={"cf-ipcountry": "US"})
    assert r.json() == {"accepted": 1, "duplicates": 0, "held": 1, "rejected": []}
    r = await client.post("/e", json=PAGE_VIEW, headers={"cf-ipcountry": "US"})
    assert r.json() == {"accepted": 1, "duplicates": 0, "rejected": []}


async def test_a_choice_whose_commit_failed_releases_again_on_retry(
    client: httpx.AsyncClient, relay_app: Starlette, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing accepted is lost: a waiting page view released by a choice that got 503 is
    released by the client's retry of that choice."""
    import asyncio

    runtime: Runtime = relay_app.state.relay
    await runtime.ensure_started()
    eu = {"cf-ipcountry": "DE"}
    r = await client.post("/e", json={**PAGE_VIEW, "event_id": "pv-wait"}, headers=eu)
    assert r.json()["held"] == 1
    choice = {"event": "consent_update", "consent": {"analytics": "granted"}}

    async def broken(rows: list[Row], quarantined: list[Quarantined] = []) -> None:  # noqa: B006
        raise SpoolUnavailable("disk full")

    monkeypatch.setattr(runtime.spool, "put", broken)
    r = await client.post("/e", json=choice, headers=eu)
    assert r.status_code == 503, r.text
    monkeypatch.undo()
    r = await client.post("/e", json=choice, headers=eu)
    assert r.status_code == 202, r.text
    out = tmp_path / "events.jsonl"
    for _ in range(100):
        if out.exists() and "pv-wait" in out.read_text():
            break
        await asyncio.sleep(0.05)
    assert [orjson.loads(line)["event_id"] for line in out.read_text().splitlines()] == [
        "pv-wait"
    ]


async def test_an_event_id_with_a_space_at_either_end_is_a_clear_400(
    client: httpx.AsyncClient,
) -> None:
    """The exact request that stalled the webhook destination: its id cannot be a header."""
    r = await client.post(
        "/e",
        content=b'{"event":"page_view","event_id":" x1"}',
        headers={"content-type": "application/json", "cf-ipcountry": "US"},
    )
    assert r.status_code == 400, r.text
    assert r.json() == {
        "accepted": 0,
        "duplicates": 0,
        "rejected": [{"index": 0, "error": "event_id: must not start or end with whitespace"}],
        "error": "event_id: must not start or end with whitespace",
    }


async def test_a_signed_request_whose_first_try_died_mid_accept_is_accepted_again(
    relay_app: Starlette, client: httpx.AsyncClient,
) -> None:
    """A relay killed while accepting a signed request leaves only a tentative replay mark
    (another request's token, alive for seconds): the client's retry of the same signed
    request waits for it to expire and is accepted, never called a replay."""
    from relay.engine.marks import WAIT_SECONDS
    from relay.ingest.webhook import replay_key

    runtime: Runtime = relay_app.state.relay
    await runtime.ensure_started()
    body = orjson.dumps(purchase("w-died"))
    signed = sign(body)
    # what the dead request left: its tentative mark, living less than the wait budget
    await runtime.state.mark([replay_key("backend", signed, body)], "dead-request",
                             WAIT_SECONDS / 8)
    headers = {"content-type": "application/json", "x-relay-signature": signed}
    r = await client.post("/hook/backend", content=body, headers=headers)
    assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
    again = await client.post("/hook/backend", content=body, headers=headers)
    assert again.status_code == 401, again.text  # now it was received: a replay
