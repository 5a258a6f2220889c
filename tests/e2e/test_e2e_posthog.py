"""``posthog`` end to end: a real ``relay serve`` delivering to the PostHog stand-in."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator

import pytest

from .conftest import MakeRelay
from .standins.base import Reply
from .standins.posthog import PostHogStandIn
from .vendordest import (
    EMAIL,
    RAW_IP,
    TRUNCATED_IP,
    backend_purchase,
    browser_page_view,
    dead_letters,
    destination,
)
from .wire import DebugStream, client, post_backend, post_browser, wait_until

KEY = "phc_e2eProjectKey0123456789abcdefghijklmnop"


@pytest.fixture
def vendor() -> Iterator[PostHogStandIn]:
    standin = PostHogStandIn(KEY)
    yield standin
    standin.close()


def _ph(vendor: PostHogStandIn, key: str = KEY) -> dict[str, object]:
    return destination("posthog", {"api_key": key, "endpoint": vendor.endpoint})


def test_events_arrive_in_posthogs_format_and_only_what_may(
        relays: MakeRelay, vendor: PostHogStandIn) -> None:
    relay = relays(destinations={"ph": _ph(vendor)})
    page, denied, order = (browser_page_view(), browser_page_view(
        consent={"analytics": "denied"}), backend_purchase())
    with client() as http:
        assert post_browser(http, relay, page).status_code == 202
        assert post_browser(http, relay, denied).status_code == 202
        assert post_backend(http, relay, order).status_code == 202
        wait_until(lambda: len(vendor.accepted) >= 2, 15, "two events at the PostHog stand-in")
        time.sleep(1.5)  # the denied one would have arrived by now
    assert vendor.problems == []
    by_name = {e["event"]: e for e in vendor.accepted}
    assert set(by_name) == {"$pageview", "purchase"}, vendor.accepted
    pv, buy = by_name["$pageview"], by_name["purchase"]
    assert pv["properties"]["$current_url"] == "https://shop.example/p/1"  # cleaned
    assert pv["properties"]["utm_source"] == "news" and pv["properties"]["gclid"] == "g1"
    assert pv["properties"]["$process_person_profile"] is False
    assert buy["distinct_id"] == "u_42" and buy["properties"]["$ip"] == TRUNCATED_IP
    assert buy["properties"]["$browser"] == "Chrome" and buy["properties"]["value"] == 149.5
    # the email only as the SHA-256 of the normalized address
    assert buy["properties"]["$set"] == {
        "email_sha256": hashlib.sha256(EMAIL.strip().lower().encode()).hexdigest()}
    bodies = b"".join(r.body for r in vendor.requests)
    for raw in (EMAIL.encode(), EMAIL.lower().encode(), RAW_IP.encode(),
                denied["event_id"].encode()):
        assert raw not in bodies


def test_a_rate_limited_batch_is_delivered_once_with_the_same_uuid(
        relays: MakeRelay, vendor: PostHogStandIn) -> None:
    vendor.fail_next(1, Reply(429, b"rate limited", (("Content-Type", "text/plain"),
                                                      ("Retry-After", "1"))))
    relay = relays(destinations={"ph": _ph(vendor)})
    with client() as http:
        assert post_backend(http, relay, backend_purchase()).status_code == 202
        wait_until(lambda: vendor.accepted, 15, "the purchase after a 429")
    first, second = vendor.requests[:2]
    assert first.reply is not None and first.reply.status == 429
    assert second.at - first.at >= 0.9, "Retry-After: 1 was not honoured"
    sent = [json.loads(r.body)["batch"][0]["uuid"] for r in (first, second)]
    assert sent[0] == sent[1] and vendor.uuids == [sent[0]]
    assert len(vendor.accepted) == 1 and vendor.problems == []


def test_a_wrong_api_key_is_dead_lettered_naming_the_setting(
        relays: MakeRelay, vendor: PostHogStandIn) -> None:
    relay = relays(destinations={"ph": _ph(vendor, key="phc_not_this_project")})
    with client() as http:
        assert post_backend(http, relay, backend_purchase()).status_code == 202
        [letter] = dead_letters(http, relay, "ph", 1)
    assert letter["status"] == 401
    assert "settings.api_key" in str(letter["response"])
    assert "API key is not valid" in str(letter["response"])
    assert len(vendor.requests) == 1, "an auth error must not be retried"
    assert vendor.accepted == []


def test_without_the_ip_posthog_is_told_not_to_geolocate(
        relays: MakeRelay, vendor: PostHogStandIn) -> None:
    ph = _ph(vendor)
    ph["pipeline"] = "no_ip"
    relay = relays(destinations={"ph": ph}, pipelines={
        "no_ip": [{"ip": "strip"}, {"user_agent": "drop"}, {"hash": ["user.email"]}]})
    with client() as http:
        assert post_backend(http, relay, backend_purchase()).status_code == 202
        [item] = wait_until(lambda: vendor.accepted, 15, "the purchase")
    assert "$ip" not in item["properties"] and item["properties"]["$geoip_disable"] is True
    assert vendor.problems == []


def test_the_debug_view_shows_a_dropped_copy_with_the_reason_and_masks_the_ids(
        relays: MakeRelay, vendor: PostHogStandIn) -> None:
    relay = relays(destinations={"ph": _ph(vendor)})
    nobody = backend_purchase(user={})  # a backend event with no id of anyone
    someone = backend_purchase(user={"id": "user-probe-4711"})
    with client() as http, DebugStream(relay) as debug:
        assert post_backend(http, relay, nobody).status_code == 202
        assert post_backend(http, relay, someone).status_code == 202
        wait_until(lambda: len([e for e in debug.entries() if "copies" in e]) >= 2, 10,
                   "both events in the debug stream")
        wait_until(lambda: vendor.accepted, 15, "the identified purchase")
    entries = {e["event_id"]: e for e in debug.entries() if "copies" in e}
    [dropped] = [c for c in entries[nobody["event_id"]]["copies"] if c["destination"] == "ph"]
    assert dropped["outcome"] == "dropped" and dropped["sent"] is None
    assert dropped["detail"] == ("posthog: no user.id, anonymous_id or correlation id for "
                                 "distinct_id")
    [sent] = [c for c in entries[someone["event_id"]]["copies"] if c["destination"] == "ph"]
    assert sent["sent"]["distinct_id"].startswith("[distinct_id #")
    assert "user-probe-4711" not in debug.text and RAW_IP not in debug.text
    assert len(vendor.accepted) == 1 and vendor.problems == []
