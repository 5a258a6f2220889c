"""``mixpanel`` end to end: a real ``relay serve`` delivering to the Mixpanel stand-in."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from .conftest import MakeRelay
from .standins.base import Reply
from .standins.mixpanel import MixpanelStandIn
from .vendordest import (
    EMAIL,
    RAW_IP,
    TRUNCATED_IP,
    backend_purchase,
    browser_page_view,
    dead_letters,
    destination,
)
from .wire import client, post_backend, post_browser, wait_until

TOKEN = "e2e0123456789abcdef0123456789ab"
SA_USER, SA_SECRET, PROJECT = "relay.e2e.mp-service-account", "e2e-sa-secret-4f1b", "2718281"


@pytest.fixture
def vendor() -> Iterator[MixpanelStandIn]:
    standin = MixpanelStandIn(TOKEN, service_account=(SA_USER, SA_SECRET), project_id=PROJECT)
    yield standin
    standin.close()


def _mp(vendor: MixpanelStandIn, secret: str = SA_SECRET) -> dict[str, object]:
    return destination("mixpanel", {
        "token": TOKEN, "service_account_username": SA_USER, "service_account_secret": secret,
        "project_id": PROJECT, "endpoint": vendor.endpoint})


def test_events_arrive_in_mixpanels_format_and_only_what_may(
        relays: MakeRelay, vendor: MixpanelStandIn) -> None:
    relay = relays(destinations={"mp": _mp(vendor)})
    page, denied, order = (browser_page_view(), browser_page_view(
        consent={"analytics": "denied"}), backend_purchase())
    with client() as http:
        assert post_browser(http, relay, page).status_code == 202
        assert post_browser(http, relay, denied).status_code == 202
        assert post_backend(http, relay, order).status_code == 202
        wait_until(lambda: len(vendor.imported) >= 2, 15, "two records at the stand-in")
        time.sleep(1.5)
    assert vendor.problems == []
    by_name = {r["event"]: r["properties"] for r in vendor.imported}
    assert set(by_name) == {"$mp_web_page_view", "purchase"}, vendor.imported
    pv, buy = by_name["$mp_web_page_view"], by_name["purchase"]
    assert pv["current_page_title"] == "Shoes" and pv["utm_source"] == "news"
    assert buy["distinct_id"] == "u_42" and buy["$user_id"] == "u_42"
    assert buy["ip"] == TRUNCATED_IP and buy["mp_country_code"] == "US"
    assert buy["$browser"] == "Chrome" and buy["value"] == 149.5
    bodies = b"".join(r.body for r in vendor.requests)
    for raw in (EMAIL.encode(), EMAIL.lower().encode(), RAW_IP.encode(),
                denied["event_id"].encode()):
        assert raw not in bodies
    for request in vendor.requests:
        assert (request.param("strict"), request.param("project_id")) == ("1", PROJECT)


def test_a_server_error_is_retried_and_imported_once_with_the_same_insert_id(
        relays: MakeRelay, vendor: MixpanelStandIn) -> None:
    vendor.fail_next(1, Reply.json(503, {"code": 503, "error": "unavailable"},
                                   ("Retry-After", "1")))
    relay = relays(destinations={"mp": _mp(vendor)})
    with client() as http:
        assert post_backend(http, relay, backend_purchase()).status_code == 202
        wait_until(lambda: vendor.imported, 15, "the purchase after a 503")
    first, second = vendor.requests[:2]
    ids = [json.loads(r.body)[0]["properties"]["$insert_id"] for r in (first, second)]
    assert ids[0] == ids[1] and second.at - first.at >= 0.9
    assert len(vendor.imported) == 1 and vendor.problems == []


def test_a_partial_400_dead_letters_only_the_refused_record(
        relays: MakeRelay, vendor: MixpanelStandIn) -> None:
    relay = relays(destinations={"mp": _mp(vendor)})
    good, old = backend_purchase(), backend_purchase(time="1970-06-01T00:00:00Z")
    with client() as http:
        assert post_backend(http, relay, [good, old]).status_code == 202
        [letter] = dead_letters(http, relay, "mp", 1)
        time.sleep(1.0)
        assert len(dead_letters(http, relay, "mp", 1)) == 1
    assert letter["event_id"] == old["event_id"] and letter["status"] == 400
    assert "properties.time" in str(letter["response"])
    imported = [r["properties"]["order_id"] for r in vendor.imported]
    assert imported == [good["properties"]["order_id"]]
    refused = [r for r in vendor.requests if r.reply is not None and r.reply.status == 400]
    assert len(refused) == 1 and len(json.loads(refused[0].body)) == 2
    assert vendor.problems == []


def test_bad_credentials_are_dead_lettered_naming_the_settings(
        relays: MakeRelay, vendor: MixpanelStandIn) -> None:
    relay = relays(destinations={"mp": _mp(vendor, secret="not-the-secret")})
    with client() as http:
        assert post_backend(http, relay, backend_purchase()).status_code == 202
        [letter] = dead_letters(http, relay, "mp", 1)
    assert letter["status"] == 401 and "Invalid credentials" in str(letter["response"])
    assert "settings.service_account_secret" in str(letter["response"])
    assert len(vendor.requests) == 1 and vendor.imported == []
