"""PostHog bodies as posthog-js 1.449 sends them (captured in wire/), through the shipped
minimize pipeline and back in the same encoding."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any
from urllib.parse import parse_qs

import pytest

from relay.proxy.rewrite import Prepared
from relay.proxy.vendors import posthog
from relay.proxy.vendors.base import TooLarge, Undecodable, gzip_bytes
from tests.proxy.vendors.support import (
    EMAIL,
    EMAIL_SHA256,
    UA,
    Captured,
    captured,
    hygiene,
    send,
)


def events(prepared: Prepared) -> list[dict[str, Any]]:
    body = prepared.body
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    if body.startswith(b"data="):
        body = base64.b64decode(parse_qs(body.decode())["data"][0])
    data = json.loads(body)
    batch: list[dict[str, Any]] = data["batch"] if isinstance(data, dict) else data
    return batch


def original(request: Captured) -> list[dict[str, Any]]:
    return events(Prepared(request.body, b""))


def by_event(prepared: Prepared, name: str) -> dict[str, Any]:
    return next(e for e in events(prepared) if e["event"] == name)


GZIPPED = captured("posthog_ph_e")
PAGEVIEW = next(r for r in GZIPPED if original(r)[0]["event"] == "$pageview")
IDENTIFY = next(r for r in GZIPPED if original(r)[0]["event"] == "$identify")
SIGNUP = next(r for r in GZIPPED if original(r)[0]["event"] == "signup")
BEACON_B64, JSON_BODY = captured("posthog_json_ph_e")


def test_the_captured_requests_are_what_the_module_expects() -> None:
    assert all(r.body[:2] == b"\x1f\x8b" and r.content_type == "text/plain" for r in GZIPPED)
    assert all(r.query == "" for r in GZIPPED)  # no compression hint for gzip-js
    assert BEACON_B64.query == "compression=base64"
    assert BEACON_B64.content_type == "application/x-www-form-urlencoded"
    assert JSON_BODY.content_type == "application/json"
    props = original(PAGEVIEW)[0]["properties"]
    assert props["$raw_user_agent"] == UA and "gclid=abc123" in props["$current_url"]


def test_every_encoding_round_trips_when_nothing_is_to_be_cleaned() -> None:
    h = hygiene("posthog", (), forward_ip="keep", user_agent="pass", keep_click_ids=True)
    for request in [*GZIPPED, BEACON_B64, JSON_BODY]:
        out = send("posthog", request, h)
        assert events(out) == original(request), request.name
        assert out.query == request.query.encode()
    assert h.ctx.counts == {}


def test_a_page_view_loses_its_user_agent_query_and_click_ids() -> None:
    out = send("posthog", PAGEVIEW, hygiene("posthog"))
    assert out.body[:2] == b"\x1f\x8b"  # gzip again, as it came: by magic, no header
    assert out.headers["content-encoding"] is None
    props = by_event(out, "$pageview")["properties"]
    assert "$raw_user_agent" not in props
    origin = props["$current_url"]
    assert origin.startswith("http://127.0.0.1:") and origin.endswith("/pages/posthog")
    assert props["$session_entry_url"] == origin
    assert "gclid" not in props and "$session_entry_gclid" not in props
    # utm_* stay: the campaign is not personal, posthog-js copied it already
    assert props["utm_source"] == "news"
    assert props["distinct_id"] == "u_42" and props["token"] == "phc_test"
    assert props["$lib"] == "web" and props["$device_id"]
    text = json.dumps(events(out))
    assert UA not in text and "abc123" not in text and "ann%40example.com" not in text


def test_identify_hashes_the_email_in_set_and_cleans_set_once() -> None:
    out = send("posthog", IDENTIFY, hygiene("posthog"))
    event = by_event(out, "$identify")
    assert event["$set"] == {"email": EMAIL_SHA256, "name": "Ann"}
    once = event["$set_once"]
    assert "?" not in once["$initial_current_url"]
    assert "$initial_gclid" not in once and once["$initial_utm_source"] == "news"


def test_custom_properties_are_redacted() -> None:
    props = by_event(send("posthog", SIGNUP, hygiene("posthog")), "signup")["properties"]
    assert (props["plan"], props["email"], props["note"]) == ("pro", "[email]", "call [phone]")
    assert EMAIL not in json.dumps(props)


def _with_ip(request: Captured, ip: str) -> bytes:
    data = json.loads(gzip.decompress(request.body))
    for event in data["batch"]:
        event["properties"]["$ip"] = ip
    return gzip_bytes(json.dumps(data).encode())


@pytest.mark.parametrize(("forward_ip", "expected"), [
    ("strip", None), ("truncate", "203.0.113.0"), ("keep", "203.0.113.0")])
def test_ip_is_the_stricter_of_pipeline_and_route(forward_ip: str, expected: str | None) -> None:
    # minimize truncates; the route strips, or lets the truncated address through
    out = send("posthog", PAGEVIEW, hygiene("posthog", forward_ip=forward_ip),
               _with_ip(PAGEVIEW, "203.0.113.77"))
    assert by_event(out, "$pageview")["properties"].get("$ip") == expected


def test_without_a_pipeline_the_route_options_still_apply() -> None:
    out = send("posthog", PAGEVIEW, hygiene("posthog", (), forward_ip="strip"),
               _with_ip(PAGEVIEW, "203.0.113.77"))
    props = by_event(out, "$pageview")["properties"]
    assert "$ip" not in props and "gclid" not in props  # the route keeps no click ids
    assert props["$raw_user_agent"] == "Mozilla/5.0 (Linux) Chrome/126"  # generalize
    assert "?utm_source" in props["$current_url"]  # URLs are the pipeline's business


def test_click_ids_stay_when_route_and_pipeline_allow_them() -> None:
    h = hygiene("posthog", granted=frozenset({"analytics", "ads"}), keep_click_ids=True)
    props = by_event(send("posthog", PAGEVIEW, h), "$pageview")["properties"]
    assert props["gclid"] == "abc123"
    h = hygiene("posthog", granted=frozenset({"analytics"}), keep_click_ids=True)
    assert "gclid" not in by_event(send("posthog", PAGEVIEW, h), "$pageview")["properties"]


def test_a_base64_beacon_stays_a_base64_form() -> None:
    out = send("posthog", BEACON_B64, hygiene("posthog"))
    assert out.query == b"compression=base64" and out.body.startswith(b"data=")
    props = by_event(out, "beacon")["properties"]
    assert "$raw_user_agent" not in props and "?" not in props["$current_url"]


def test_a_json_body_stays_json() -> None:
    out = send("posthog", JSON_BODY, hygiene("posthog"))
    assert out.body.startswith(b'{"api_key":"phc_test"')
    assert by_event(out, "signup")["properties"]["email"] == "[email]"


def test_a_flags_request_hashes_person_properties() -> None:
    body = json.dumps({"token": "phc_test", "distinct_id": "u_42",
                       "person_properties": {"email": EMAIL, "$current_url": "https://s.example/?q=1"}})
    request = Captured("flags", "POST", "/flags/", "v=2", "application/json", body.encode())
    out = json.loads(send("posthog", request, hygiene("posthog")).body)
    assert out["person_properties"] == {"email": EMAIL_SHA256, "$current_url": "https://s.example/"}
    assert out["distinct_id"] == "u_42"


def test_a_legacy_get_with_data_in_the_query() -> None:
    data = base64.b64encode(json.dumps(original(SIGNUP)[0]).encode()).decode()
    request = Captured("get", "GET", "/e/", f"data={data}&ver=1", "", b"")
    out = send("posthog", request, hygiene("posthog"))
    assert out.body == b""
    query = parse_qs(out.query.decode())
    assert query["ver"] == ["1"]
    event = json.loads(base64.b64decode(query["data"][0]))
    assert event["properties"]["email"] == "[email]"


@pytest.mark.parametrize(("body", "query", "why"), [
    (b"\x1f\x8b\x08garbage", "", "not valid gzip"),
    (b"{not json", "", "not JSON"),
    (b"data=%%%", "", "not base64"),
    (b"\x00\x01binary", "", "not base64"),
    (b"whatever", "compression=lz64", "lz64"),
    (b"data=NDI=", "", "not an event"),  # base64 of 42
    (b"[42]", "", "not an event"),
])
def test_what_cannot_be_read_is_refused(body: bytes, query: str, why: str) -> None:
    request = Captured("bad", "POST", "/e/", query, "text/plain", body)
    with pytest.raises(Undecodable, match=why):
        send("posthog", request, hygiene("posthog"))


def test_a_gzip_bomb_is_too_large() -> None:
    bomb = gzip_bytes(b'{"event":"x","properties":{"a":"' + b"a" * 3_000_000 + b'"}}')
    request = Captured("bomb", "POST", "/e/", "", "text/plain", bomb)
    with pytest.raises(TooLarge):
        send("posthog", request, hygiene("posthog"))


def test_a_stopped_hit_is_answered_as_posthog_answers() -> None:
    answer = posthog.FORMAT.answer("")
    assert (answer.status, json.loads(answer.body), answer.content_type) == (
        200, {"status": 1}, "application/json")
