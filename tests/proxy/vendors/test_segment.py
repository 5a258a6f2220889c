"""Segment messages as analytics-next 1.84 sends them (captured in wire/)."""

from __future__ import annotations

import json
from typing import Any

from relay.proxy.vendors import segment
from relay.proxy.vendors.base import Undecodable
from tests.proxy.vendors.support import EMAIL_SHA256, UA, Captured, captured, hygiene, send

(IDENTIFY,) = captured("segment_seg_v1_i")
(PAGE,) = captured("segment_seg_v1_p")
(TRACK,) = captured("segment_seg_v1_t")


def message(request: Captured, **options: Any) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(send("segment", request, hygiene("segment", **options)).body)
    return out


def test_the_captured_requests_are_what_the_module_expects() -> None:
    page = json.loads(PAGE.body)
    assert PAGE.content_type == "text/plain" and page["type"] == "page"
    assert page["context"]["userAgent"] == UA and "gclid=abc123" in page["context"]["page"]["url"]


def test_round_trip_when_nothing_is_to_be_cleaned() -> None:
    h = hygiene("segment", (), forward_ip="keep", user_agent="pass", keep_click_ids=True)
    for request in (IDENTIFY, PAGE, TRACK):
        assert json.loads(send("segment", request, h).body) == json.loads(request.body)


def test_a_page_call_loses_user_agent_query_and_high_entropy_hints() -> None:
    page = message(PAGE)
    context = page["context"]
    assert "userAgent" not in context
    assert set(context["userAgentData"]) == {"brands", "mobile", "platform"}
    assert "?" not in context["page"]["url"] and context["page"]["search"] == ""
    assert "?" not in page["properties"]["url"] and page["properties"]["search"] == ""
    assert context["campaign"] == {"source": "news"}
    assert page["anonymousId"] and page["messageId"] and page["userId"] == "u_42"


def test_identify_hashes_the_email_trait() -> None:
    assert message(IDENTIFY)["traits"]["email"] == EMAIL_SHA256


def test_user_agent_strip_drops_every_hint() -> None:
    context = message(PAGE, user_agent="strip")["context"]
    assert "userAgent" not in context and "userAgentData" not in context


def test_a_batch() -> None:
    batch = {"batch": [json.loads(TRACK.body), json.loads(PAGE.body)], "sentAt": "x"}
    request = Captured("b", "POST", "/v1/b", "", "text/plain", json.dumps(batch).encode())
    out = json.loads(send("segment", request, hygiene("segment")).body)
    assert out["sentAt"] == "x" and [m["type"] for m in out["batch"]] == ["track", "page"]
    assert out["batch"][0]["properties"]["email"] == "[email]"


def test_refused_and_answer() -> None:
    request = Captured("b", "POST", "/v1/b", "", "text/plain", b'{"batch": [1]}')
    try:
        send("segment", request, hygiene("segment"))
    except Undecodable as exc:
        assert "not a message" in str(exc)
    else:
        raise AssertionError("a batch of numbers was read")
    answer = segment.FORMAT.answer("")
    assert (answer.status, json.loads(answer.body)) == (200, {"success": True})
