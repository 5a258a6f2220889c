"""The ``segment`` destination: settings, the message ``prepare`` makes (checked against what
Segment's own Python library sends for the same call, without network), the fields it can
send, the batch request, Segment's answers, and the 500 KB cut."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime
from typing import Any

import httpx
import orjson
import pytest
import segment.analytics.request as segment_request
from segment.analytics import Client

from relay.destinations import DESTINATIONS
from relay.destinations.segment import (
    MAX_MESSAGE_BYTES,
    MAX_REQUEST_BYTES,
    SegmentSettings,
    build_request,
    classify,
    fields,
    parse_settings,
    prepare,
)
from relay.dispatch import by_size
from relay.spool.base import Claimed
from relay.types import Event, StepContext
from tests.destinations.helpers import parse

KEY = "seg-write-key-0123456789"
SETTINGS = SegmentSettings(KEY)
TIME = "2026-11-28T12:00:00.000Z"
NOW = 1_795_867_200.0  # 2026-11-28 12:00:00 UTC


def ev(name: str = "purchase", **extra: Any) -> Event:
    event: Event = {"event": name, "event_id": "e-1", "time": TIME, "user": {"id": "u_42"},
                    "properties": {"order_id": "O-1", "value": 10.0, "currency": "USD"}}
    event.update(extra)
    return event


def run(event: Event, settings: SegmentSettings = SETTINGS) -> tuple[Event | None, list[str]]:
    ctx = StepContext("seg")
    return prepare(event, settings, ctx), ctx.notes


# -- settings -----------------------------------------------------------------------------

def test_settings_defaults_and_overrides() -> None:
    settings, errors = parse(parse_settings, {"write_key": KEY})
    assert errors == []
    assert settings.url == "https://api.segment.io/v1/batch"
    assert settings.event_names["purchase"] == "Order Completed"
    eu, errors = parse(parse_settings, {
        "write_key": KEY, "endpoint": "https://events.eu1.segmentapis.com/",
        "event_names": {"purchase": "Checkout Done", "lead": "Lead Created"},
        "properties": {"value": "revenue"}})
    assert errors == []
    assert eu.url == "https://events.eu1.segmentapis.com/v1/batch"
    assert eu.event_names["purchase"] == "Checkout Done"
    assert eu.event_names["add_to_cart"] == "Product Added"  # merged over the defaults
    assert eu.properties == {"value": "revenue"}
    assert KEY not in repr(eu)


@pytest.mark.parametrize(("value", "expected"), [
    (None, "R103 destinations.d.settings: missing required key 'settings'"),
    ({}, "R103 destinations.d.settings: missing required key 'write_key'"),
    ({"write_key": KEY, "endpiont": "x"}, "R101 destinations.d.settings.endpiont: unknown key"),
    ({"write_key": "a:b"}, "R104 destinations.d.settings.write_key: a write key has no ':'"),
    ({"write_key": ""}, "R104 destinations.d.settings.write_key: must not be empty"),
    ({"write_key": KEY, "endpoint": "ftp://x"}, "R104 destinations.d.settings.endpoint: "),
    ({"write_key": KEY, "event_names": {"purchase": " "}},
     "R104 destinations.d.settings.event_names.purchase: the vendor's event name is empty"),
])
def test_settings_mistakes(value: Any, expected: str) -> None:
    _, errors = parse(parse_settings, value)
    assert any(e.startswith(expected) for e in errors), errors
    assert not any("a:b" in e for e in errors)  # the key is never echoed


# -- prepare ------------------------------------------------------------------------------

def test_a_track_message() -> None:
    event = ev(anonymous_id="anon-1", consent={"analytics": "granted", "ads": "denied"},
               context={"ip": "203.0.113.0", "user_agent": "UA/1", "locale": "en-US",
                        "page": {"url": "https://shop.example/p", "title": "P", "x": 1},
                        "campaign": {"source": "news", "medium": "email"},
                        "country": "US", "device": {"type": "desktop"}})
    event["user"]["email"] = "71d4f55f72fa128dfb468a1a3901507c804b74316488744d769d7f4b16696476"
    msg, notes = run(event)
    assert notes == []
    assert msg == {
        "type": "track", "event": "Order Completed", "messageId": "e-1", "timestamp": TIME,
        "userId": "u_42", "anonymousId": "anon-1",
        "properties": {"order_id": "O-1", "value": 10.0, "currency": "USD"},
        "context": {"ip": "203.0.113.0", "userAgent": "UA/1", "locale": "en-US",
                    "page": {"url": "https://shop.example/p", "title": "P"},
                    "campaign": {"source": "news", "medium": "email"},
                    "consent": {"categoryPreferences": {"analytics": True, "ads": False}},
                    "traits": {"email": event["user"]["email"]}},
    }


def test_only_what_the_pipeline_kept_is_sent() -> None:
    msg, _ = run(ev(context={"page": {"url": "https://shop.example/"}}))
    assert msg is not None
    assert "ip" not in msg["context"] and "userAgent" not in msg["context"]


def test_names_and_properties_maps() -> None:
    settings = SegmentSettings(KEY, properties={"value": "revenue"},
                               event_names={"purchase": "Paid"})
    msg, _ = run(ev(), settings)
    assert msg is not None and msg["event"] == "Paid"
    assert msg["properties"] == {"order_id": "O-1", "revenue": 10.0, "currency": "USD"}
    assert run(ev("newsletter"))[0]["event"] == "newsletter"  # type: ignore[index]


def test_page_screen_identify_group_alias() -> None:
    page, _ = run(ev("page_view", properties={"name": "Docs", "path": "/docs"}))
    assert page is not None and (page["type"], page["name"]) == ("page", "Docs")
    assert page["properties"] == {"name": "Docs", "path": "/docs"} and "event" not in page
    assert run(ev("screen_view", properties={}))[0]["type"] == "screen"  # type: ignore[index]
    user = {"id": "u_42", "email": "ann@example.com", "first_name": "Ann",
            "date_of_birth": "1990-01-31",
            "address": {"city": "Paris", "region": "IDF", "postal_code": "75001"}}
    identify, _ = run(ev("identify", user=user, properties={"plan": "pro"}))
    assert identify is not None and identify["type"] == "identify"
    assert identify["traits"] == {"plan": "pro", "email": "ann@example.com",
                                  "firstName": "Ann", "birthday": "1990-01-31",
                                  "address": {"city": "Paris", "state": "IDF",
                                              "postalCode": "75001"}}
    assert "context" not in identify  # the traits are not repeated in context.traits
    group, _ = run(ev("group", properties={"group_id": "acme", "name": "Acme"}))
    assert group is not None
    assert (group["type"], group["groupId"], group["traits"]) == ("group", "acme",
                                                                   {"name": "Acme"})
    alias, _ = run(ev("alias", properties={"previous_id": "anon-1"}))
    assert alias is not None
    assert (alias["type"], alias["userId"], alias["previousId"]) == ("alias", "u_42", "anon-1")


def test_the_correlation_id_stands_in_for_an_anonymous_id() -> None:
    msg, _ = run(ev(user={}, correlation_id="cid-1"))
    assert msg is not None and msg["anonymousId"] == "cid-1" and "userId" not in msg
    both, _ = run(ev(anonymous_id="anon-1", correlation_id="cid-1"))
    assert both is not None and both["anonymousId"] == "anon-1"


@pytest.mark.parametrize(("event", "why"), [
    (ev(user={}), "Segment needs a userId or an anonymousId"),
    (ev("group", properties={"name": "Acme"}), "properties.group_id"),
    (ev("alias", properties={}), "properties.previous_id"),
    (ev("alias", user={}, anonymous_id="a", properties={"previous_id": "p"}), "user.id"),
    (ev(properties={"pad": "x" * MAX_MESSAGE_BYTES}), "over Segment's limit of 32768"),
])
def test_what_segment_would_refuse_is_dropped_with_the_reason(event: Event, why: str) -> None:
    msg, notes = run(event)
    assert msg is None
    assert len(notes) == 1 and notes[0].startswith("segment: ") and why in notes[0]


def _paths(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, dict) and value:
        return [p for k, v in value.items() for p in _paths(v, f"{prefix}{k}.")]
    return [prefix.rstrip(".")]


def _covered(path: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        regex = re.escape(pattern).replace(r"\*", ".+")
        if re.fullmatch(regex, path):
            return True
    return False


EVERYTHING: Event = {
    "event": "x", "event_id": "e", "time": TIME, "anonymous_id": "a", "correlation_id": "c",
    "consent": {"analytics": "granted"},
    "user": {"id": "u", "email": "e", "phone": "p", "first_name": "f", "last_name": "l",
             "date_of_birth": "d", "secret": "never sent",
             "address": {"street": "s", "city": "c", "region": "r", "postal_code": "p",
                         "country": "FR", "floor": "never sent"}},
    "context": {"ip": "i", "user_agent": "u", "locale": "l", "timezone": "t", "group_id": "g",
                "page": {k: k for k in ("url", "referrer", "title", "path", "search", "hash")},
                "campaign": {"source": "s", "name": "n"}, "country": "FR", "gpc": True,
                "click_ids": {"gclid": "x"}, "device": {"type": "desktop"},
                "library": {"name": "l"}},
    "properties": {"order_id": "o", "value": 1, "nested": {"a": [1, 2]}, "name": "n",
                   "category": "c", "group_id": "g", "previous_id": "p"},
    "source": "s", "received_at": TIME, "schema": 2,
}


@pytest.mark.parametrize("name", ["purchase", "page_view", "screen_view", "identify", "group",
                                  "alias"])
def test_prepare_never_sends_a_field_fields_omits(name: str) -> None:
    settings = SegmentSettings(KEY, properties={"value": "revenue"})
    msg, notes = run({**EVERYTHING, "event": name}, settings)
    assert msg is not None, notes
    theirs = [f.theirs for f in fields(settings)]
    sent = _paths(msg)
    assert [p for p in sent if not _covered(p, theirs)] == []
    assert "never sent" not in json.dumps(msg) and "gclid" not in json.dumps(msg)
    ours = {f.ours.split(".*")[0] for f in fields(settings)}
    assert {"user.id", "event_id", "context.ip", "user.email", "consent"} <= ours


def test_fields_name_the_renamed_properties() -> None:
    maps = fields(SegmentSettings(KEY, properties={"value": "revenue"}))
    assert any((f.ours, f.theirs) == ("properties.value", "properties.revenue") for f in maps)


# -- what Segment's own library sends ------------------------------------------------------

def _oracle(call: str, **kwargs: Any) -> dict[str, Any]:
    """The message ``segment-analytics-python`` makes for a call (``send=False``: queued
    nowhere, nothing leaves), without the fields only a library adds, and without the
    ``null`` ones it sends for arguments not given (``"anonymousId": null``: absent)."""
    client = Client(KEY, send=False)
    ok, msg = getattr(client, call)(**kwargs)
    assert ok
    msg = {k: v for k, v in json.loads(json.dumps(msg)).items() if v is not None}
    msg.pop("integrations", None)
    msg["context"].pop("library")
    if not msg["context"]:
        del msg["context"]
    return dict(msg)


def _same_time(a: str, b: str) -> bool:
    return datetime.fromisoformat(a) == datetime.fromisoformat(b)


WHEN = datetime.fromisoformat("2026-11-28T12:00:00+00:00")
ORACLE_CASES: list[tuple[Event, str, dict[str, Any]]] = [
    (ev(context={"ip": "203.0.113.0", "page": {"url": "https://s.example/"}}), "track",
     {"user_id": "u_42", "event": "Order Completed",
      "properties": {"order_id": "O-1", "value": 10.0, "currency": "USD"},
      "context": {"ip": "203.0.113.0", "page": {"url": "https://s.example/"}}}),
    (ev("page_view", properties={"name": "Docs", "url": "https://s.example/docs"}), "page",
     {"user_id": "u_42", "name": "Docs",
      "properties": {"name": "Docs", "url": "https://s.example/docs"}}),
    (ev("screen_view", user={}, anonymous_id="a-1", properties={"name": "Home"}), "screen",
     {"anonymous_id": "a-1", "name": "Home", "properties": {"name": "Home"}}),
    (ev("identify", user={"id": "u_42", "email": "ann@example.com"},
        properties={"plan": "pro"}), "identify",
     {"user_id": "u_42", "traits": {"plan": "pro", "email": "ann@example.com"}}),
    (ev("group", properties={"group_id": "acme", "name": "Acme"}), "group",
     {"user_id": "u_42", "group_id": "acme", "traits": {"name": "Acme"}}),
    (ev("alias", properties={"previous_id": "anon-1"}), "alias",
     {"user_id": "u_42", "previous_id": "anon-1"}),
]


@pytest.mark.parametrize(("event", "call", "kwargs"), ORACLE_CASES,
                         ids=[c for _, c, _ in ORACLE_CASES])
def test_the_message_is_what_segments_library_sends(
    event: Event, call: str, kwargs: dict[str, Any]
) -> None:
    msg, notes = run(event)
    assert msg is not None, notes
    theirs = _oracle(call, timestamp=WHEN, message_id="e-1", **kwargs)
    assert _same_time(msg.pop("timestamp"), theirs.pop("timestamp"))
    assert msg == theirs


def test_the_request_is_what_segments_library_posts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The library's ``post`` with its network call replaced: same URL, auth and body
    shape (the library also repeats the key as ``writeKey``; Segment takes either)."""
    captured: dict[str, Any] = {}

    def fake_post(url: str, **kwargs: Any) -> Any:
        captured.update(url=url, **kwargs)
        response = httpx.Response(200, json={})
        response.status_code = 200
        return response

    monkeypatch.setattr(segment_request._session, "post", fake_post)
    items = [run(ev())[0], run(ev(event_id="e-2"))[0]]
    segment_request.post(KEY, host="https://api.segment.io", batch=items)
    ours = build_request(items, SETTINGS, now=NOW)  # type: ignore[arg-type]
    assert str(ours.url) == captured["url"]
    assert ours.headers["authorization"] == captured["headers"]["Authorization"]
    assert ours.headers["content-type"] == captured["headers"]["Content-Type"]
    theirs = json.loads(captured["data"])
    body = orjson.loads(ours.content)
    assert set(body) == set(theirs) - {"writeKey"}
    assert body["batch"] == theirs["batch"]
    assert body["sentAt"] == "2026-11-28T12:00:00.000Z"


# -- the request and the answers --------------------------------------------------------

def test_build_request() -> None:
    request = build_request([{"a": 1}], SegmentSettings(KEY, endpoint="http://127.0.0.1:9/x"),
                            now=NOW + 0.5)
    assert (request.method, str(request.url)) == ("POST", "http://127.0.0.1:9/x/v1/batch")
    assert request.headers["authorization"] == "Basic " + base64.b64encode(
        f"{KEY}:".encode()).decode()
    assert orjson.loads(request.content) == {"batch": [{"a": 1}],
                                             "sentAt": "2026-11-28T12:00:00.500Z"}


def response(status: int, body: bytes = b"", **headers: str) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers)


def test_classify() -> None:
    assert classify(response(200, b'{"success":true}')).kind == "ok"
    bad = classify(response(400, b'{"message":"Exceed payload limit"}'))
    assert bad.kind == "permanent" and "Exceed payload limit" in bad.detail
    for status in (401, 403):
        auth = classify(response(status, b"Unauthorized"))
        assert auth.kind == "permanent" and "settings.write_key" in auth.detail
    limited = classify(response(429, b"", **{"Retry-After": "7"}))
    assert (limited.kind, limited.retry_after) == ("retry", 7.0)
    for status in (500, 502, 503, 504, 408):
        assert classify(response(status)).kind == "retry"
    assert classify(response(404)).kind == "permanent"


def test_a_claim_is_cut_at_segments_500_kb() -> None:
    """Rows of 30 KB messages: every request the dispatcher builds stays within 500 KB."""
    items = [run(ev(event_id=f"e-{i}", properties={"pad": "x" * 30_000}))[0]
             for i in range(40)]
    rows = [Claimed(i, "seg", f"e-{i}", orjson.dumps(item), 0.0, 0)
            for i, item in enumerate(items)]
    parts = by_size(rows, DESTINATIONS["segment"].max_bytes)
    assert len(parts) > 1
    for part in parts:
        request = build_request([items[i] for i in part.indices], SETTINGS)  # type: ignore[misc]
        assert len(request.content) <= MAX_REQUEST_BYTES
    assert sorted(i for p in parts for i in p.indices) == list(range(40))


def test_registered() -> None:
    definition = DESTINATIONS["segment"]
    assert definition.vendor == "Segment" and definition.prepare is prepare
    assert definition.max_bytes is not None and definition.max_bytes < MAX_REQUEST_BYTES
