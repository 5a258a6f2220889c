"""Segment messages -> envelopes (``relay.ingest.segment_map``): every mapped field, the
clock-skew correction, and what Segment itself would refuse."""

from __future__ import annotations

from typing import Any

import pytest

from relay.engine.envelope import format_ms
from relay.ingest.segment_map import MessageError, corrected_time, envelope, message_id

RECEIVED = 1_795_867_260_000  # 2026-11-28T12:01:00Z


def env(kind: str | None, msg: dict[str, Any], sent_at: Any = None) -> dict[str, Any]:
    out = envelope(kind, msg, sent_at=sent_at, received_ms=RECEIVED)
    assert isinstance(out, dict)
    return out


def test_a_track_message_field_by_field() -> None:
    msg = {
        "type": "track", "event": "Order Completed", "messageId": "m1", "userId": "u1",
        "anonymousId": "a1", "timestamp": "2026-11-28T12:00:00Z",
        "properties": {"order_id": "O1", "revenue": 10},
        "context": {"ip": "203.0.113.9", "userAgent": "UA/1", "locale": "en-US",
                    "page": {"url": "https://shop.example/?utm_source=x", "title": "T"},
                    "campaign": {"source": "x", "medium": "email"}, "timezone": "Europe/Paris",
                    "library": {"name": "analytics.js", "version": "1"}, "groupId": "g1",
                    "device": {"advertisingId": "ad-1"}, "os": {"name": "iOS"},
                    "consent": {"categoryPreferences": {"analytics": True, "ads": False}},
                    "traits": {"email": "ann@example.com", "plan": "not kept"}},
        "integrations": {"All": True}, "_metadata": {"bundled": []}, "writeKey": "wk",
    }
    assert env("track", msg) == {
        "event": "Order Completed",
        "event_id": "m1",
        "time": "2026-11-28T12:00:00Z",
        "user": {"id": "u1", "email": "ann@example.com"},
        "anonymous_id": "a1",
        "properties": {"order_id": "O1", "revenue": 10},
        "context": {"ip": "203.0.113.9", "user_agent": "UA/1", "locale": "en-US",
                    "page": {"url": "https://shop.example/?utm_source=x", "title": "T"},
                    "campaign": {"source": "x", "medium": "email"},
                    "timezone": "Europe/Paris",
                    "library": {"name": "analytics.js", "version": "1"}, "group_id": "g1"},
        "consent": {"analytics": True, "ads": False},
    }


def test_identify_traits_go_to_user_and_properties() -> None:
    msg = {"messageId": "m2", "userId": "u1", "traits": {
        "email": "ann@example.com", "phone": "+1 555", "firstName": "Ann", "last_name": "Lee",
        "birthday": "1990-01-31T00:00:00.000Z", "plan": "pro", "name": "Ann Lee",
        "address": {"street": "1 Main St", "city": "Paris", "state": "IDF",
                    "postalCode": "75001", "country": "FR"}}}
    out = env("identify", msg)
    assert out["event"] == "identify"
    assert out["user"] == {
        "id": "u1", "email": "ann@example.com", "phone": "+1 555", "first_name": "Ann",
        "last_name": "Lee", "date_of_birth": "1990-01-31",
        "address": {"street": "1 Main St", "city": "Paris", "region": "IDF",
                    "postal_code": "75001", "country": "FR"}}
    assert out["properties"] == {"plan": "pro", "name": "Ann Lee"}


def test_group_traits_are_the_groups_properties() -> None:
    out = env("group", {"messageId": "m3", "userId": "u1", "groupId": "acme",
                        "traits": {"name": "Acme", "email": "billing@acme.example"}})
    assert out["event"] == "group"
    assert out["properties"] == {"group_id": "acme", "name": "Acme",
                                 "email": "billing@acme.example"}
    assert out["user"] == {"id": "u1"}  # the group's email is not the user's


def test_alias_page_and_screen() -> None:
    alias = env("alias", {"messageId": "m4", "userId": "u1", "previousId": "anon-1"})
    assert (alias["event"], alias["properties"]) == ("alias", {"previous_id": "anon-1"})
    page = env("page", {"messageId": "m5", "anonymousId": "a", "name": "Docs",
                        "category": "Help", "properties": {"path": "/docs"}})
    assert (page["event"], page["properties"]) == (
        "page_view", {"path": "/docs", "name": "Docs", "category": "Help"})
    assert env("screen", {"messageId": "m6", "anonymousId": "a"})["event"] == "screen_view"


def test_in_a_batch_each_message_names_its_type() -> None:
    assert env(None, {"type": "page", "messageId": "m7", "anonymousId": "a"})["event"] == (
        "page_view")
    with pytest.raises(MessageError, match="type: 'view' is not one of track"):
        env(None, {"type": "view", "messageId": "m8", "anonymousId": "a"})
    with pytest.raises(MessageError, match="type: null is not one of"):
        env(None, {"messageId": "m8", "anonymousId": "a"})


@pytest.mark.parametrize(("kind", "msg", "says"), [
    ("track", {"messageId": "x", "event": "e"}, "userId or anonymousId: required"),
    ("group", {"messageId": "x", "userId": "u"}, "groupId: required"),
    ("alias", {"messageId": "x", "userId": "u"}, "previousId: required"),
    ("identify", {"messageId": "x", "userId": "u", "traits": "pro"}, "traits: expected an"),
    ("track", {"messageId": "x", "userId": "u", "properties": []}, "properties: expected an"),
    ("track", {"messageId": "x", "userId": "u", "context": 1}, "context: expected an object"),
])
def test_what_segment_refuses(kind: str, msg: dict[str, Any], says: str) -> None:
    with pytest.raises(MessageError, match=says):
        env(kind, msg)


def test_not_an_object_is_left_for_the_envelope_check() -> None:
    assert envelope(None, 42, sent_at=None, received_ms=0) == 42


def test_clock_skew_correction() -> None:
    """timestamp = receivedAt - (sentAt - timestamp): a device clock an hour fast."""
    assert corrected_time("2026-11-28T13:00:00Z", "2026-11-28T13:00:05Z", RECEIVED) == (
        "2026-11-28T12:00:55.000Z")
    assert corrected_time("2026-11-28T13:00:00+01:00", "2026-11-28T12:00:05Z", RECEIVED) == (
        "2026-11-28T12:00:55.000Z")
    assert corrected_time(RECEIVED - 10_000, RECEIVED - 5000, RECEIVED) == format_ms(
        RECEIVED - 5000)
    # Without a sentAt, or with one that is not a time, the timestamp is kept as sent.
    assert corrected_time("2026-11-28T13:00:00Z", None, RECEIVED) == "2026-11-28T13:00:00Z"
    assert corrected_time("2026-11-28T13:00:00Z", "soon", RECEIVED) == "2026-11-28T13:00:00Z"
    assert corrected_time("soon", "2026-11-28T13:00:05Z", RECEIVED) == "soon"


def test_a_messages_own_sent_at_wins_over_the_batchs() -> None:
    msg = {"messageId": "m9", "anonymousId": "a", "timestamp": "2026-11-28T12:00:00Z",
           "sentAt": "2026-11-28T12:00:10Z"}
    assert env("page", msg, sent_at="2026-11-28T12:00:30Z")["time"] == (
        "2026-11-28T12:00:50.000Z")
    del msg["sentAt"]
    assert env("page", msg, sent_at="2026-11-28T12:00:30Z")["time"] == (
        "2026-11-28T12:00:30.000Z")
    assert "time" not in env("page", {"messageId": "m", "anonymousId": "a"})


def test_a_missing_message_id_is_made_as_segment_makes_one() -> None:
    msg = {"type": "track", "event": "e", "userId": "u", "timestamp": "2026-11-28T12:00:00Z"}
    first = env("track", {**msg, "sentAt": "2026-11-28T12:00:01Z"})["event_id"]
    retry = env("track", {**msg, "sentAt": "2026-11-28T12:05:00Z", "writeKey": "k"})["event_id"]
    assert first == retry == message_id(msg) and first.startswith("seg-")
    other = env("track", {**msg, "properties": {"a": 1}})["event_id"]
    assert other != first
    untimed = {"type": "track", "event": "e", "userId": "u"}
    assert env("track", untimed)["event_id"] != env("track", untimed)["event_id"]
