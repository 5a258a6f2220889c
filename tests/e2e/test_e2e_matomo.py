"""``matomo`` end to end: a real ``relay serve`` delivering to the Matomo stand-in."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from .conftest import MakeRelay
from .standins.base import Reply
from .standins.matomo import MatomoStandIn
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

TOKEN = "e2e3dc3f2536d3025974cccb4b4d2d98"
SITE = 3


@pytest.fixture
def vendor() -> Iterator[MatomoStandIn]:
    standin = MatomoStandIn(SITE, TOKEN)
    yield standin
    standin.close()


def _mt(vendor: MatomoStandIn, token: str | None = TOKEN) -> dict[str, object]:
    settings: dict[str, object] = {"site_id": SITE, "endpoint": vendor.endpoint}
    if token is not None:
        settings["token_auth"] = token
    return destination("matomo", settings)


def test_hits_arrive_as_matomo_tracking_requests_and_only_what_may(
        relays: MakeRelay, vendor: MatomoStandIn) -> None:
    relay = relays(destinations={"mt": _mt(vendor)})
    page, denied, order = (browser_page_view(), browser_page_view(
        consent={"analytics": "denied"}), backend_purchase())
    with client() as http:
        assert post_browser(http, relay, page).status_code == 202
        assert post_browser(http, relay, denied).status_code == 202
        assert post_backend(http, relay, order).status_code == 202
        wait_until(lambda: len(vendor.accepted) >= 2, 15, "two hits at the stand-in")
        time.sleep(1.5)
    assert vendor.problems == []
    assert len(vendor.accepted) == 2, vendor.accepted
    pv = next(h for h in vendor.accepted if "action_name" in h)
    buy = next(h for h in vendor.accepted if h.get("idgoal") == "0")
    assert pv["action_name"] == "Shoes" and pv["url"] == "https://shop.example/p/1"
    assert len(pv["_id"]) == 16 and "cip" in pv  # the browser's address, truncated
    assert (buy["ec_id"], buy["revenue"], buy["uid"]) == (
        order["properties"]["order_id"], "149.5", "u_42")
    assert buy["cip"] == TRUNCATED_IP and "ua" not in buy  # the pipeline kept no user agent
    for request in vendor.requests:
        assert "token_auth" not in request.query
        assert json.loads(request.body)["token_auth"] == TOKEN
    bodies = b"".join(r.body for r in vendor.requests)
    for raw in (EMAIL.encode(), EMAIL.lower().encode(), RAW_IP.encode()):
        assert raw not in bodies


def test_without_token_auth_no_ip_is_sent(relays: MakeRelay, vendor: MatomoStandIn) -> None:
    relay = relays(destinations={"mt": _mt(vendor, token=None)})
    with client() as http:
        assert post_backend(http, relay, backend_purchase()).status_code == 202
        [hit] = wait_until(lambda: vendor.accepted, 15, "the order")
    assert "cip" not in hit and vendor.problems == []
    assert "token_auth" not in json.loads(vendor.requests[0].body)


def test_a_server_error_is_retried_and_tracked_once(
        relays: MakeRelay, vendor: MatomoStandIn) -> None:
    vendor.fail_next(1, Reply(500, b'{"status":"error","tracked":0,"invalid":0}',
                              (("Content-Type", "application/json"), ("Retry-After", "1"))))
    relay = relays(destinations={"mt": _mt(vendor)})
    with client() as http:
        assert post_backend(http, relay, backend_purchase()).status_code == 202
        wait_until(lambda: vendor.accepted, 15, "the order after a 500")
    first, second = vendor.requests[:2]
    assert first.body == second.body  # the same request, the same _id and cdt
    assert second.at - first.at >= 0.9
    time.sleep(1.0)
    assert len(vendor.accepted) == 1 and vendor.problems == []


def test_a_token_matomo_refuses_is_dead_lettered_naming_the_setting(
        relays: MakeRelay, vendor: MatomoStandIn) -> None:
    relay = relays(destinations={"mt": _mt(vendor, token="not-the-token-0123456789abcdef")})
    with client() as http:
        assert post_backend(http, relay, backend_purchase()).status_code == 202
        [letter] = dead_letters(http, relay, "mt", 1)
    assert "settings.token_auth" in str(letter["response"])
    assert len(vendor.requests) == 1 and vendor.accepted == []
