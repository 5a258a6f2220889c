"""The ``segment`` destination against a Segment stand-in (tests/e2e/standins/segment.py)
with a real ``relay serve``: delivered with no stand-in problems, a denied purpose never
reaches it, a retry keeps each messageId, a refused write key dead-letters naming the setting,
and a round trip from Segment's Python library through the relay's Segment endpoints and out
through the destination keeps the messageId, the event and its properties."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from segment.analytics import Client

from .conftest import MakeRelay
from .rulesdir import FAST_BREAKER, FAST_RETRY
from .standins.base import Reply
from .standins.segment import SegmentStandIn
from .wire import (
    US,
    client,
    new_event_id,
    page_view,
    post_backend,
    post_browser,
    purchase,
    wait_until,
)

WRITE_KEY = "e2e-segment-destination-key-1f9c"
SOURCE_KEY = "e2e-segment-source-write-key-77a0"
CHROME = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like "
                        "Gecko) Chrome/126.0.0.0 Safari/537.36"}


@pytest.fixture
def segment() -> Iterator[SegmentStandIn]:
    vendor = SegmentStandIn(WRITE_KEY)
    yield vendor
    vendor.close()


def destination(vendor: SegmentStandIn, *, purpose: str = "analytics",
                write_key: str = WRITE_KEY, **extra: Any) -> dict[str, Any]:
    return {"type": "segment", "purpose": purpose, "events": "*", "pipeline": "minimize",
            "settings": {"write_key": write_key, "endpoint": vendor.endpoint},
            "timeout": "2s", "retry": dict(FAST_RETRY), "circuit_breaker": dict(FAST_BREAKER),
            "legal_basis": "consent", "retention": "1 day", **extra}


def accepted(vendor: SegmentStandIn, ids: set[str], what: str) -> dict[str, dict[str, Any]]:
    def done() -> dict[str, dict[str, Any]] | None:
        got = {m["messageId"]: m for m in vendor.accepted}
        return got if ids <= set(got) else None
    return wait_until(done, 20, what)


def test_browser_and_backend_events_are_delivered(relays: MakeRelay,
                                                  segment: SegmentStandIn) -> None:
    relay = relays(destinations={"seg": destination(segment)})
    view = page_view(user={"email": "Ann@Example.com"})
    order = purchase(user={"id": "u_42"})
    with client() as http:
        r = post_browser(http, relay, view, headers=CHROME)
        assert r.status_code == 202, r.text
        assert post_backend(http, relay, order).status_code == 202
    got = accepted(segment, {view["event_id"], order["event_id"]}, "both events at Segment")
    assert segment.problems == []
    pv, paid = got[view["event_id"]], got[order["event_id"]]
    assert (pv["type"], pv["context"]["ip"]) == ("page", "127.0.0.0")  # truncated
    assert "userAgent" not in pv["context"]  # the pipeline generalized it to a device
    assert pv["anonymousId"]  # the correlation id: a browser event has no user id
    assert pv["context"]["traits"]["email"] != "Ann@Example.com"  # hashed by the pipeline
    assert pv["context"]["page"]["url"] == "https://shop.example/p"
    assert pv["context"]["campaign"] == {"source": "e2e"}
    assert (paid["type"], paid["event"], paid["userId"]) == ("track", "Order Completed",
                                                             "u_42")
    assert paid["properties"]["order_id"] == order["properties"]["order_id"]
    (request,) = [r for r in segment.requests if r.items]
    assert request.headers["authorization"] == "Basic " + base64.b64encode(
        f"{WRITE_KEY}:".encode()).decode()


def test_a_denied_purpose_never_reaches_segment(relays: MakeRelay,
                                                segment: SegmentStandIn) -> None:
    relay = relays(destinations={"seg": destination(segment, purpose="ads")})
    denied = page_view(consent={"ads": "denied"})
    granted = page_view(consent={"ads": "granted"})
    with client() as http:
        assert post_browser(http, relay, denied).status_code == 202
        assert post_browser(http, relay, granted).status_code == 202
    accepted(segment, {granted["event_id"]}, "the granted page view at Segment")
    sent = [m["messageId"] for r in segment.requests for m in (r.json() or {}).get("batch", [])]
    assert denied["event_id"] not in sent
    assert segment.problems == []


@pytest.mark.parametrize("failure", [
    Reply.json(500, {"success": False, "message": "Internal Server Error"}),
    Reply.json(429, {"success": False, "message": "Too Many Requests"}, ("Retry-After", "1")),
], ids=["500", "429"])
def test_a_retry_keeps_each_message_id(relays: MakeRelay, segment: SegmentStandIn,
                                       failure: Reply) -> None:
    segment.fail_next(1, failure)
    relay = relays(destinations={"seg": destination(segment)})
    events = [page_view() for _ in range(3)]
    with client() as http:
        assert post_browser(http, relay, events).status_code == 202
    ids = {e["event_id"] for e in events}
    accepted(segment, ids, f"three page views after a {failure.status}")
    first, *later = segment.requests
    assert first.reply is not None and first.reply.status == failure.status
    retried = [m["messageId"] for r in later for m in r.json()["batch"]]
    assert {m["messageId"] for m in first.json()["batch"]} == ids == set(retried)
    if failure.status == 429:
        assert later[0].at - first.at >= 0.9  # Retry-After: 1 honoured
    assert segment.problems == [] and segment.duplicates == 0


def test_a_refused_write_key_is_dead_lettered_naming_the_setting(
        relays: MakeRelay, segment: SegmentStandIn) -> None:
    relay = relays(destinations={"seg": destination(segment, write_key="wrong-key-0000")})
    event = page_view()
    with client() as http:
        assert post_browser(http, relay, event).status_code == 202
        letters = wait_until(lambda: http.get(relay.admin_url("/dlq")).json(), 20,
                             "the dead letter")
    (letter,) = letters
    assert (letter["destination"], letter["event_id"], letter["status"]) == (
        "seg", event["event_id"], 401)
    assert "settings.write_key" in letter["response"] and "Invalid write key" in letter[
        "response"]
    assert len(segment.requests) == 1  # not retried
    assert "wrong-key-0000" not in relay.log_text()


def test_round_trip_from_segments_library_through_the_relay_to_segment(
        relays: MakeRelay, segment: SegmentStandIn) -> None:
    """In: the Python library's own messages, one posted to ``/t/v1/track`` as the library
    would post a single call (it only ever posts ``/v1/batch`` itself: that is the other
    leg). Out: the segment destination. Same messageId, event and properties."""
    relay = relays(sources={"apps": {"type": "segment", "write_keys": [SOURCE_KEY]}},
                   events={"Order Completed": {}, "identify": {}},
                   destinations={"seg": destination(segment, pipeline=None)})
    properties = {"order_id": "O-42", "revenue": 12.5, "currency": "EUR",
                  "products": [{"sku": "S1", "quantity": 2}]}
    library = Client(SOURCE_KEY, host=relay.base + "/t", send=False)
    _, single = library.track(user_id="u_42", event="Order Completed", properties=properties,
                              context={"country": "US"})
    single = {k: v for k, v in json.loads(json.dumps(single)).items() if v is not None}
    with client() as http:
        r = http.post(relay.url("/v1/track"), json=single, headers={
            "Authorization": "Basic " + base64.b64encode(f"{SOURCE_KEY}:".encode()).decode()})
        assert r.status_code == 200 and r.json() == {"success": True}, r.text
    sender = Client(SOURCE_KEY, host=relay.base + "/t", upload_interval=0.1)
    _, batched = sender.identify(user_id="u_42", traits={"plan": "pro", "email": "a@b.example"},
                                 context={"country": "US"})
    sender.flush()
    sender.join()
    got = accepted(segment, {single["messageId"], batched["messageId"]},
                   "both messages at Segment, out of the relay")
    out = got[single["messageId"]]
    assert (out["type"], out["event"], out["userId"]) == ("track", "Order Completed", "u_42")
    assert out["properties"] == properties
    identify = got[batched["messageId"]]
    assert identify["type"] == "identify"
    assert identify["traits"] == {"plan": "pro", "email": "a@b.example"}
    assert segment.problems == []


def test_event_ids_are_message_ids_across_many(relays: MakeRelay,
                                               segment: SegmentStandIn) -> None:
    """A backlog goes out in batches within Segment's limits, every event once."""
    relay = relays(destinations={"seg": destination(segment)})
    ids: set[str] = set()
    with client() as http:
        for _ in range(6):
            batch = [page_view(new_event_id("many"), properties={"pad": "x" * 2000})
                     for _ in range(25)]
            assert post_browser(http, relay, batch, headers=US).status_code == 202
            ids |= {e["event_id"] for e in batch}
    accepted(segment, ids, "150 page views at Segment")
    assert segment.problems == [] and segment.duplicates == 0

