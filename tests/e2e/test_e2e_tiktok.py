"""``tiktok`` end to end: a real ``relay serve`` delivering to the TikTok stand-in."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import MakeRelay
from .relayproc import RelayProcess
from .rulesdir import FAST_BREAKER, FAST_RETRY
from .standins.base import Reply
from .standins.tiktok import TikTokStandIn, tiktok_answer
from .wire import CHROME_UA, client, new_event_id, post_backend, post_browser, wait_until

EMAIL, PHONE = "Ann.Lee@Example.com", "+1 (650) 555-1212"
ADS_PIPELINE = [{"ip": "keep"}, {"user_agent": "keep"},
                {"url": {"keep_params": ["utm_source"]}}, {"click_ids": {"keep_for": "ads"}}]


@pytest.fixture
def tt() -> Iterator[TikTokStandIn]:
    vendor = TikTokStandIn()
    yield vendor
    vendor.close()


def start(relays: MakeRelay, vendor: TikTokStandIn, token: str | None = None,
          **settings: Any) -> RelayProcess:
    dest = {"type": "tiktok", "purpose": "ads", "events": "*", "pipeline": "tt_ads",
            "settings": {"pixel_code": vendor.pixel_code,
                         "access_token": token or vendor.access_token,
                         "endpoint": vendor.endpoint, **settings},
            "retry": dict(FAST_RETRY), "circuit_breaker": dict(FAST_BREAKER),
            "timeout": "2s", "legal_basis": "consent", "retention": "1 day"}
    return relays(pipelines={"tt_ads": ADS_PIPELINE}, destinations={"tt": dest})


def purchase(eid: str, **extra: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event": "purchase", "event_id": eid,
        "user": {"id": "U_42", "email": EMAIL, "phone": PHONE},
        "context": {"country": "US", "ip": "198.51.100.23", "user_agent": CHROME_UA,
                    "page": {"url": "https://shop.example/thanks"}},
        "properties": {"order_id": "O-" + eid, "value": 149.0, "currency": "USD"}}
    ev.update(extra)
    return ev


def accepted(vendor: TikTokStandIn, eid: str) -> list[dict[str, Any]]:
    return [e for e in vendor.accepted if e.get("event_id") == eid]


def test_events_arrive_in_tiktok_s_format(relays: MakeRelay, tt: TikTokStandIn) -> None:
    relay = start(relays, tt, test_event_code="TEST77")
    pv, order = new_event_id("pv"), new_event_id("ord")
    with client() as http:
        r = post_browser(http, relay, {
            "event": "page_view", "event_id": pv, "consent": {"ads": "granted"},
            "context": {"page": {"url": "https://shop.example/p?ttclid=E.C.P.CaSe1"}}},
            headers={"User-Agent": CHROME_UA})
        assert r.status_code == 202, r.text
        gpc = purchase(order, consent={"ads": "granted"})
        gpc["context"]["gpc"] = True
        assert post_backend(http, relay, gpc).status_code == 202
    wait_until(lambda: accepted(tt, pv) and accepted(tt, order), 20,
               "both events at the TikTok stand-in")
    assert tt.problems == [], tt.problems
    assert set(tt.test_codes) == {"TEST77"}
    (page,) = accepted(tt, pv)
    assert page["event"] == "Pageview" and page["limited_data_use"] is False
    assert page["user"]["ttclid"] == "E.C.P.CaSe1"
    assert page["user"]["user_agent"] == CHROME_UA and page["user"]["ip"] == "127.0.0.1"
    assert page["page"] == {"url": "https://shop.example/p"}
    (sale,) = accepted(tt, order)
    assert sale["event"] == "CompletePayment" and sale["limited_data_use"] is True
    assert sale["user"]["email"] == [hashlib.sha256(b"ann.lee@example.com").hexdigest()]
    assert sale["user"]["phone"] == [hashlib.sha256(b"+16505551212").hexdigest()]
    assert sale["user"]["external_id"] == [hashlib.sha256(b"u_42").hexdigest()]
    assert sale["properties"] == {"value": 149.0, "currency": "USD", "order_id": "O-" + order}
    for request in tt.requests:
        assert EMAIL.lower().encode() not in request.body.lower()
        assert b"6505551212" not in request.body and b"555-1212" not in request.body
        assert request.headers["access-token"] == tt.access_token


def test_a_denied_purpose_never_reaches_tiktok(relays: MakeRelay, tt: TikTokStandIn) -> None:
    relay = start(relays, tt)
    eu, gpc, denied, ok = (new_event_id(p) for p in ("eu", "gpc", "deny", "ok"))
    with client() as http:
        eu_event = purchase(eu)
        eu_event["context"]["country"] = "FR"
        gpc_event = purchase(gpc)
        gpc_event["context"]["gpc"] = True
        for ev in (eu_event, gpc_event, purchase(denied, consent={"ads": "denied"}),
                   purchase(ok)):
            assert post_backend(http, relay, ev).status_code == 202
    wait_until(lambda: accepted(tt, ok), 20, "the granted purchase at TikTok")
    time.sleep(1.5)
    assert [e["event_id"] for e in tt.accepted] == [ok]


def test_a_rate_limit_code_is_retried_and_delivered_once(
        relays: MakeRelay, tt: TikTokStandIn) -> None:
    tt.fail_next(1, tiktok_answer(40100, "Too many requests. Please retry in some time."))
    tt.fail_next(1, Reply.json(500, {"code": 50000, "message": "System error"}))
    relay = start(relays, tt)
    eid = new_event_id("retry")
    with client() as http:
        assert post_backend(http, relay, purchase(eid)).status_code == 202
    wait_until(lambda: accepted(tt, eid), 30, "the purchase after two failed attempts")
    time.sleep(1.5)
    assert len(accepted(tt, eid)) == 1
    assert len([r for r in tt.requests if eid.encode() in r.body]) == 3
    assert tt.problems == []


def test_a_refused_token_is_dead_lettered_naming_the_setting(
        relays: MakeRelay, tt: TikTokStandIn) -> None:
    relay = start(relays, tt, token="wrong-token")
    eid = new_event_id("auth")
    with client() as http:
        assert post_backend(http, relay, purchase(eid)).status_code == 202

        def dead() -> list[dict[str, Any]]:
            letters: list[dict[str, Any]] = http.get(
                relay.admin_url("/dlq"), params={"destination": "tt"}).json()
            return letters

        (letter,) = wait_until(dead, 20, "the dead letter of a refused token")
    assert letter["event_id"] == eid and letter["status"] == 200
    assert "tiktok: access_token refused (code 40105" in str(letter["response"])
    assert "check settings.access_token" in str(letter["response"])
    assert len(tt.requests) == 1 and tt.accepted == []
    assert "wrong-token" not in relay.log_text()


def test_the_browser_and_backend_copies_reach_tiktok_once(
        relays: MakeRelay, tt: TikTokStandIn) -> None:
    relay = start(relays, tt)
    eid = new_event_id("ord")
    with client() as http:
        browser = {"event": "purchase", "event_id": eid,
                   "properties": {"order_id": "O1", "value": 149.0, "currency": "USD"},
                   "context": {"page": {"url": "https://shop.example/thanks?ttclid=TT-x1"}}}
        r = post_browser(http, relay, browser, headers={"User-Agent": CHROME_UA})
        assert r.status_code == 202 and r.json().get("held") == 1, r.text
        backend = purchase(eid)
        del backend["context"]["user_agent"], backend["context"]["page"]
        assert post_backend(http, relay, backend).status_code == 202
    wait_until(lambda: accepted(tt, eid), 20, "the confirmed purchase at TikTok")
    time.sleep(1.5)
    (sale,) = accepted(tt, eid)
    assert sale["user"]["ttclid"] == "TT-x1" and sale["user"]["user_agent"] == CHROME_UA
    assert sale["page"] == {"url": "https://shop.example/thanks"}
    assert tt.problems == []
