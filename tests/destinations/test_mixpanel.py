"""``mixpanel``: settings, the mapping (checked against mixpanel-python's own records and
requests), the request, every kind of answer (the partial 400 included), limits, and the
engine path."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson

from relay.destinations import mixpanel
from relay.dispatch import by_size
from relay.spool.base import Claimed
from relay.types import Event, StepContext

from .engine_path import check_errors, engine_with, run
from .fieldcheck import uncovered
from .helpers import parse

HASHED_EMAIL = "71d4f55f72fa128dfb468a1a3901507c804b74316488744d769d7f4b16696476"
TOKEN = "0123456789abcdef0123456789abcdef"
SA = {"service_account_username": "relay.1a2b3c.mp-service-account",
      "service_account_secret": "sa-secret-0123456789", "project_id": "3141592"}


def settings(**kw: Any) -> mixpanel.MixpanelSettings:
    parsed, errors = parse(mixpanel.parse_settings, {"token": TOKEN, **kw})
    assert errors == []
    assert isinstance(parsed, mixpanel.MixpanelSettings)
    return parsed


def event(**kw: Any) -> Event:
    ev: Event = {
        "event": "purchase", "event_id": "evt_8f14e45f", "time": "2026-11-28T12:00:00.000Z",
        "received_at": "2026-11-28T12:00:01.000Z", "source": "backend",
        "user": {"id": "u_42", "email": HASHED_EMAIL},
        "anonymous_id": "anon-7",
        "context": {"ip": "203.0.113.0", "country": "us",
                    "page": {"url": "https://shop.example/p/1?a=b",
                             "referrer": "https://search.example/q", "title": "Shoes"},
                    "device": {"type": "desktop", "os": "Windows", "browser": "Chrome"},
                    "campaign": {"source": "news", "medium": "email"},
                    "click_ids": {"fbclid": "fb.1"}},
        "properties": {"order_id": "ORD-1", "value": 149.0, "currency": "USD"},
    }
    ev.update(kw)
    return ev


def prepare(ev: Event, s: mixpanel.MixpanelSettings | None = None,
            ctx: StepContext | None = None) -> Event | None:
    return mixpanel.prepare(ev, s or settings(), ctx or StepContext("mp"))


# -- settings ---------------------------------------------------------------------------


def test_settings() -> None:
    s = settings()
    assert (s.endpoint, s.strict, s.event_names) == (
        "https://api.mixpanel.com", True, {"page_view": "$mp_web_page_view"})
    full = settings(**SA, endpoint="https://api-eu.mixpanel.com", strict=False)
    assert (full.project_id, full.strict, full.endpoint) == (
        "3141592", False, "https://api-eu.mixpanel.com")
    for secret in (TOKEN, SA["service_account_secret"], "legacy"):
        assert secret not in repr(settings(**SA)) and secret not in repr(
            settings(api_secret="legacy"))


def test_settings_mistakes() -> None:
    parsed, errors = parse(mixpanel.parse_settings, {
        "token": TOKEN, "service_account_username": "u", "project_id": "my-project",
        "strict": "yes", "region": "eu"})
    assert parsed is None
    assert errors == [
        "R101 destinations.d.settings.region: unknown key 'region'",
        "R104 destinations.d.settings.project_id: a Mixpanel project id is a number",
        "R103 destinations.d.settings: a service account needs service_account_username, "
        "service_account_secret, project_id: missing service_account_secret",
        "R102 destinations.d.settings.strict: expected true or false, got a string",
    ]
    _, both = parse(mixpanel.parse_settings, {"token": TOKEN, "api_secret": "s", **SA})
    assert both == ["R104 destinations.d.settings.api_secret: give either api_secret or a "
                    "service account, not both"]
    assert parse(mixpanel.parse_settings, {})[1] == [
        "R103 destinations.d.settings: missing required key 'token'"]


def test_settings_errors_point_at_file_line_and_column(tmp_path: Path) -> None:
    errors = check_errors(tmp_path, (
        "destinations:\n"
        "  mp:\n"
        "    type: mixpanel\n"
        "    purpose: analytics\n"
        "    settings:\n"
        "      token: abc\n"
        "      service_account_username: relay\n"
        "      project_id: proj\n"))
    assert errors == [
        "zz-test.yaml:6:7: R103 destinations.mp.settings: a service account needs "
        "service_account_username, service_account_secret, project_id: missing "
        "service_account_secret",
        "zz-test.yaml:8:19: R104 destinations.mp.settings.project_id: a Mixpanel project id is "
        "a number (it is in the project's settings, next to the token)",
    ]


def test_credentials_are_masked() -> None:
    from relay.rules.secrets import is_secret_key

    for key in ("token", "api_secret", "service_account_secret"):
        assert is_secret_key(key), key


# -- the mapping ------------------------------------------------------------------------


def test_an_identified_purchase() -> None:
    item = prepare(event())
    assert item == {"event": "purchase", "properties": {
        "order_id": "ORD-1", "value": 149.0, "currency": "USD",
        "$current_url": "https://shop.example/p/1?a=b",
        "$referrer": "https://search.example/q", "$referring_domain": "search.example",
        "$browser": "Chrome", "$os": "Windows",
        "utm_source": "news", "utm_medium": "email", "fbclid": "fb.1",
        "mp_country_code": "US", "ip": "203.0.113.0",
        "$user_id": "u_42", "$device_id": "anon-7",
        "time": 1_795_867_200_000, "distinct_id": "u_42",
        "$insert_id": mixpanel.insert_id("evt_8f14e45f"),
    }}
    # the email (hashed or not) is not sent: /import sets no profile properties
    assert "71d4f55f" not in json.dumps(item)


def test_a_page_view_without_an_ip() -> None:
    ev = event(event="page_view", user=None, properties={})
    del ev["context"]["ip"]
    item = prepare(ev)
    assert item is not None and item["event"] == "$mp_web_page_view"
    props = item["properties"]
    assert props["ip"] == 0  # and ?ip=0 on the request: Mixpanel does not locate the relay
    assert props["distinct_id"] == "anon-7" and "$user_id" not in props
    assert (props["current_page_title"], props["current_domain"], props["current_url_path"],
            props["current_url_protocol"], props["current_url_search"]) == (
        "Shoes", "shop.example", "/p/1", "https:", "?a=b")


def test_insert_id_follows_mixpanels_rules_and_is_stable() -> None:
    for event_id in ("evt_8f14e45f", "ORD 1/2", "x" * 128, "é"):
        value = mixpanel.insert_id(event_id)
        assert mixpanel.INSERT_ID.fullmatch(value) and len(value) <= 36
        assert value == mixpanel.insert_id(event_id)
        assert value.lower() not in mixpanel.PLACEHOLDER_IDS
    assert mixpanel.insert_id("a") != mixpanel.insert_id("b")


def test_events_mixpanel_would_refuse_are_dropped_with_a_reason() -> None:
    ctx = StepContext("mp")
    assert prepare(event(user=None, anonymous_id=None), ctx=ctx) is None
    assert prepare(event(user={"id": "anonymous"}, anonymous_id=None), ctx=ctx) is None
    assert prepare(event(properties={f"p{i}": i for i in range(260)}), ctx=ctx) is None
    big = event(properties={f"p{i}": "x" * 11_000 for i in range(100)}, user={"id": "u"})
    assert prepare(big, ctx=ctx) is None
    assert ctx.notes == [
        "mixpanel: no usable user.id, anonymous_id or correlation id for distinct_id",
        "mixpanel: no usable user.id, anonymous_id or correlation id for distinct_id",
        "mixpanel: more than 253 properties",
        "mixpanel: the record is over Mixpanel's 1 MB per event",
    ]


def test_a_property_cannot_replace_the_required_fields() -> None:
    item = prepare(event(properties={"time": "yesterday", "distinct_id": "x",
                                     "$insert_id": "null"}))
    assert item is not None
    props = item["properties"]
    assert (props["time"], props["distinct_id"]) == (1_795_867_200_000, "u_42")
    assert props["$insert_id"] == mixpanel.insert_id("evt_8f14e45f")


def test_fields_cover_every_path_prepare_can_send() -> None:
    s = settings(properties={"value": "Amount"})
    for ev in (event(), event(event="page_view", user=None),
               event(properties={"items": [{"sku": "a"}], "meta": {"k": 1}})):
        item = prepare(ev, s)
        assert item is not None
        assert uncovered(item, mixpanel.fields(s), ev) == []


# -- mixpanel-python as the oracle ------------------------------------------------------


def _sdk_import(credentials: Any = None, **kw: Any) -> tuple[str, dict[str, Any], str | None]:
    """What mixpanel-python sends for one ``import_data``: (URL, record, Authorization),
    through its own Consumer with the session's ``post`` replaced (nothing leaves)."""
    import requests
    from mixpanel import Consumer, Mixpanel

    seen: list[requests.PreparedRequest] = []

    class Answer:
        status_code = 200
        text = '{"status": 1}'

        def json(self) -> Any:
            return {"status": 1}

    def post(url: str, params: Any = None, data: Any = None, auth: Any = None,
             **_: Any) -> Answer:
        seen.append(requests.Request("POST", url, params=params, data=data,
                                     auth=auth).prepare())
        return Answer()

    consumer = Consumer(credentials=credentials, api_host="api-eu.mixpanel.com")
    consumer._session.post = post
    Mixpanel(TOKEN, consumer=consumer).import_data(
        None, "u_42", "purchase", 1_795_867_200, properties={"value": 1}, **kw)
    [sent] = seen
    form = parse_qs(str(sent.body))
    auth = sent.headers.get("Authorization")
    return str(sent.url), json.loads(form["data"][0]), str(auth) if auth else None


def test_records_have_the_shape_mixpanel_python_sends() -> None:
    _, record, _ = _sdk_import()
    ours = prepare(event(properties={"value": 1}))
    assert ours is not None
    request = mixpanel.build_request([ours], settings())
    [sent] = orjson.loads(request.content)
    assert set(sent) == set(record) == {"event", "properties"}
    sdk_only = {"mp_lib", "$lib_version"}  # the SDK's own name and version
    assert set(record["properties"]) - sdk_only <= set(sent["properties"])
    for key in ("token", "distinct_id"):
        assert sent["properties"][key] == record["properties"][key]
    assert isinstance(sent["properties"]["time"], int)  # ms; the SDK sends seconds


def test_service_account_auth_is_what_mixpanel_python_sends() -> None:
    from mixpanel.credentials import ServiceAccountCredentials

    url, _, auth = _sdk_import(ServiceAccountCredentials(
        username=SA["service_account_username"], secret=SA["service_account_secret"],
        project_id=SA["project_id"]))
    ours = prepare(event())
    assert ours is not None
    request = mixpanel.build_request([ours], settings(**SA,
                                                      endpoint="https://api-eu.mixpanel.com"))
    assert request.headers["authorization"] == auth
    theirs_query, our_query = parse_qs(urlsplit(url).query), parse_qs(request.url.query.decode())
    assert our_query["project_id"] == theirs_query["project_id"] == [SA["project_id"]]
    assert urlsplit(url).path == request.url.path == "/import"
    assert our_query["strict"] == ["1"] and our_query["ip"] == ["0"]  # the SDK's ip=0 too


def test_legacy_api_secret_auth_is_what_mixpanel_python_sends() -> None:
    _, _, auth = _sdk_import(api_secret="legacy-secret")
    ours = prepare(event())
    assert ours is not None
    request = mixpanel.build_request([ours], settings(api_secret="legacy-secret"))
    assert request.headers["authorization"] == auth
    assert "project_id" not in request.url.query.decode()


def test_the_token_alone_authenticates_as_the_basic_user() -> None:
    ours = prepare(event())
    assert ours is not None
    request = mixpanel.build_request([ours], settings())
    assert request.headers["authorization"] == "Basic " + base64.b64encode(
        f"{TOKEN}:".encode()).decode()
    assert str(request.url) == "https://api.mixpanel.com/import?strict=1&ip=0"
    assert request.headers["content-type"] == "application/json"
    assert orjson.loads(request.content)[0]["properties"]["token"] == TOKEN


def test_strict_false_is_strict_0() -> None:
    ours = prepare(event())
    assert ours is not None
    request = mixpanel.build_request([ours], settings(strict=False))
    assert parse_qs(request.url.query.decode())["strict"] == ["0"]


# -- the answers ------------------------------------------------------------------------


def _answer(status: int, body: Any, *, request: httpx.Request | None = None,
            headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(), headers=headers or {},
                          request=request or httpx.Request("POST",
                                                           "https://api.mixpanel.com/import"))


def test_classify_every_answer() -> None:
    ok = mixpanel.classify(_answer(200, {"code": 200, "num_records_imported": 2,
                                         "status": "OK"}))
    assert ok.kind == "ok" and ok.failed == ()
    partial = mixpanel.classify(_answer(400, {
        "code": 400, "error": "some data points in the request failed validation",
        "status": "Bad Request", "num_records_imported": 2,
        "failed_records": [{"index": 1, "insert_id": "x", "field": "properties.time",
                            "message": "'properties.time' is invalid: must be specified as "
                                       "seconds since epoch"}]}))
    assert (partial.kind, partial.status) == ("ok", 400)
    assert partial.failed == ((1, "HTTP 400: mixpanel refused the record: 'properties.time' "
                                  "is invalid: must be specified as seconds since epoch "
                                  "(field properties.time)"),)
    whole = mixpanel.classify(_answer(400, {"code": 400, "error": "invalid JSON"}))
    assert (whole.kind, whole.failed) == ("permanent", ())
    item = prepare(event())
    assert item is not None
    for status in (401, 403):
        for given, named in ((SA, "settings.service_account_secret and settings.project_id"),
                             ({"api_secret": "legacy"}, "check settings.api_secret,"),
                             ({}, "check settings.token,")):
            request = mixpanel.build_request([item], settings(**given))
            auth = mixpanel.classify(_answer(status, {"code": status,
                                                      "error": "Invalid credentials",
                                                      "status": "Unauthorized"},
                                             request=request))
            assert auth.kind == "permanent" and named in auth.detail, auth.detail
            assert "Invalid credentials" in auth.detail
            assert "legacy" not in auth.detail and TOKEN not in auth.detail
    big = mixpanel.classify(_answer(413, {"code": 413, "error": "request exceeds max limit"}))
    assert big.kind == "permanent"
    limited = mixpanel.classify(_answer(429, {"code": 429, "error": "Project exceeded rate "
                                              "limits."}, headers={"Retry-After": "3"}))
    assert (limited.kind, limited.retry_after) == ("retry", 3.0)
    assert mixpanel.classify(_answer(502, {})).kind == "retry"


def test_batches_respect_2000_records_and_10_mb() -> None:
    assert mixpanel.DESTINATION.max_batch == 2000
    limit = mixpanel.DESTINATION.max_bytes
    assert limit is not None
    item = prepare(event(properties={"blob": "x" * 6000}))
    assert item is not None
    row = orjson.dumps(item)
    rows = [Claimed(i, "mp", f"e{i}", row, 0, 0) for i in range(2000)]
    parts = by_size(rows, limit)
    assert len(parts) > 1
    for part in parts:
        request = mixpanel.build_request([orjson.loads(r.payload) for r in part.rows],
                                         settings(**SA))
        assert len(request.content) <= mixpanel.MAX_BODY


# -- the engine path --------------------------------------------------------------------


async def test_through_the_engine(tmp_path: Path) -> None:
    engine = engine_with(tmp_path, "mp", {
        "type": "mixpanel", "purpose": "analytics", "events": "*", "pipeline": "minimize",
        "settings": {"token": TOKEN}})
    copy, item = await run(engine, "mp", {
        "event": "page_view", "event_id": "pv-1", "user": {"email": "Ann@Example.com"},
        "context": {"page": {"url": "https://shop.example/"}}})
    assert copy.outcome == "delivered"
    props = item["properties"]
    assert props["ip"] == "203.0.113.0" and props["distinct_id"] == "cid-1"
    assert props["mp_country_code"] == "US" and "token" not in props  # added at delivery
    assert "Ann@Example.com" not in json.dumps(item)
    copy, item = await run(engine, "mp", {"event": "page_view", "event_id": "pv-2"}, cid=None)
    assert item is None and copy.outcome == "dropped"
    assert copy.detail == ("mixpanel: no usable user.id, anonymous_id or correlation id for "
                           "distinct_id")


def test_a_property_named_ip_cannot_smuggle_an_address_in() -> None:
    ev = event(properties={"ip": "198.51.100.9"})
    del ev["context"]["ip"]
    item = prepare(ev)
    assert item is not None and item["properties"]["ip"] == 0
