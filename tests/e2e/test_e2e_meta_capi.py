"""``meta_capi`` end to end: a real ``relay serve`` delivering to the Meta stand-in."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .conftest import MakeRelay
from .relayproc import RelayProcess
from .rulesdir import FAST_BREAKER, FAST_RETRY
from .standins.base import Reply
from .standins.meta import MetaStandIn, graph_error
from .wire import CHROME_UA, client, new_event_id, post_backend, post_browser, wait_until

EMAIL, PHONE = "Ann.Lee@Example.com", "+1 (650) 555-1212"
# Meta's customer information parameters take the user agent and the address as they are.
ADS_PIPELINE = [{"ip": "keep"}, {"user_agent": "keep"},
                {"url": {"keep_params": ["utm_source", "utm_medium", "utm_campaign"]}},
                {"click_ids": {"keep_for": "ads"}}]


@pytest.fixture
def meta() -> Iterator[MetaStandIn]:
    vendor = MetaStandIn()
    yield vendor
    vendor.close()


def start(relays: MakeRelay, vendor: MetaStandIn, token: str | None = None,
          **settings: Any) -> RelayProcess:
    dest = {"type": "meta_capi", "purpose": "ads", "events": "*", "pipeline": "meta_ads",
            "settings": {"pixel_id": vendor.pixel_id,
                         "access_token": token or vendor.access_token,
                         "endpoint": vendor.endpoint, **settings},
            "retry": dict(FAST_RETRY), "circuit_breaker": dict(FAST_BREAKER),
            "timeout": "2s", "legal_basis": "consent", "retention": "1 day"}
    return relays(pipelines={"meta_ads": ADS_PIPELINE}, destinations={"meta": dest})


def purchase(eid: str, **extra: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event": "purchase", "event_id": eid,
        "user": {"id": "u_42", "email": EMAIL, "phone": PHONE},
        "context": {"country": "US", "ip": "198.51.100.23", "user_agent": CHROME_UA,
                    "page": {"url": "https://shop.example/thanks"}},
        "properties": {"order_id": "O-" + eid, "value": 149.0, "currency": "USD"}}
    ev.update(extra)
    return ev


def accepted(vendor: MetaStandIn, eid: str) -> list[dict[str, Any]]:
    return [e for e in vendor.accepted if e.get("event_id") == eid]


def test_events_arrive_in_meta_s_format_hashed_and_deduplicable(
        relays: MakeRelay, meta: MetaStandIn) -> None:
    relay = start(relays, meta, test_event_code="TEST4242")
    pv, order, ldu = new_event_id("pv"), new_event_id("ord"), new_event_id("ldu")
    with client() as http:
        r = post_browser(http, relay, {
            "event": "page_view", "event_id": pv, "consent": {"ads": "granted"},
            "context": {"page": {"url": "https://shop.example/p?fbclid=IwAR-AbC_dEf&utm_source=x",
                                 "referrer": "https://news.example/"}}},
            headers={"User-Agent": CHROME_UA})
        assert r.status_code == 202, r.text
        r = post_backend(http, relay, purchase(order))
        assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
        gpc = purchase(ldu, consent={"ads": "granted"})
        gpc["context"]["gpc"] = True
        assert post_backend(http, relay, gpc).status_code == 202
    wait_until(lambda: all(accepted(meta, e) for e in (pv, order, ldu)), 20,
               "the three events at the Meta stand-in")
    assert meta.problems == [], meta.problems
    assert set(meta.test_codes) == {"TEST4242"}
    (page,) = accepted(meta, pv)
    assert page["event_name"] == "PageView" and page["action_source"] == "website"
    assert page["event_source_url"] == "https://shop.example/p?utm_source=x"
    assert page["user_data"]["client_user_agent"] == CHROME_UA
    assert page["user_data"]["client_ip_address"] == "127.0.0.1"
    fbc = page["user_data"]["fbc"]
    assert fbc.startswith("fb.1.") and fbc.endswith(".IwAR-AbC_dEf"), fbc
    (sale,) = accepted(meta, order)
    assert sale["event_name"] == "Purchase"
    assert sale["user_data"]["em"] == [hashlib.sha256(b"ann.lee@example.com").hexdigest()]
    assert sale["user_data"]["ph"] == [hashlib.sha256(b"16505551212").hexdigest()]
    assert sale["user_data"]["external_id"] == [hashlib.sha256(b"u_42").hexdigest()]
    assert sale["user_data"]["client_ip_address"] == "198.51.100.23"
    assert sale["custom_data"] == {"value": 149.0, "currency": "usd", "order_id": "O-" + order}
    assert abs(sale["event_time"] - time.time()) < 120
    assert "data_processing_options" not in sale
    (limited,) = accepted(meta, ldu)
    assert (limited["data_processing_options"], limited["data_processing_options_country"],
            limited["data_processing_options_state"]) == (["LDU"], 0, 0)
    for request in meta.requests:
        assert EMAIL.lower().encode() not in request.body.lower()
        assert b"650) 555" not in request.body and b"6505551212" not in request.body
        assert b"access_token" not in request.path.encode() and not request.query


def test_a_denied_purpose_never_reaches_meta(relays: MakeRelay, meta: MetaStandIn) -> None:
    relay = start(relays, meta)
    eu, gpc, denied, ok = (new_event_id(p) for p in ("eu", "gpc", "deny", "ok"))
    with client() as http:
        eu_event = purchase(eu)
        eu_event["context"]["country"] = "DE"  # the EU default: ads denied
        gpc_event = purchase(gpc)
        gpc_event["context"]["gpc"] = True  # ads: {gpc: denied}
        for ev in (eu_event, gpc_event, purchase(denied, consent={"ads": "denied"}),
                   purchase(ok)):
            r = post_backend(http, relay, ev)
            assert r.status_code == 202, r.text
        wait_until(lambda: accepted(meta, ok), 20, "the granted purchase at Meta")
        time.sleep(1.5)  # a copy that should not exist would have been sent with it
        r = http.get(relay.admin_url("/metrics"))
    assert [e["event_id"] for e in meta.accepted] == [ok]
    assert 'relay_consent_suppressed_total{destination="meta",purpose="ads"} 3.0' in r.text


def test_a_rate_limited_attempt_is_retried_and_delivered_once(
        relays: MakeRelay, meta: MetaStandIn) -> None:
    meta.fail_next(1, graph_error(17, "User request limit reached", status=400))
    meta.fail_next(1, Reply.json(429, {"error": {"message": "slow down", "code": 4}},
                                 ("Retry-After", "1")))
    relay = start(relays, meta)
    eid = new_event_id("retry")
    with client() as http:
        assert post_backend(http, relay, purchase(eid)).status_code == 202
    wait_until(lambda: accepted(meta, eid), 30, "the purchase after two refused attempts")
    time.sleep(1.5)
    assert len(accepted(meta, eid)) == 1
    attempts = [r for r in meta.requests if eid.encode() in r.body]
    assert len(attempts) == 3, [r.reply for r in attempts]
    assert attempts[2].at - attempts[1].at >= 0.9, "Retry-After: 1 was not honoured"
    bodies = {httpx.Response(200, content=r.body).json()["data"][0]["event_id"]
              for r in attempts}
    assert bodies == {eid}
    assert meta.problems == []


def test_a_refused_token_is_dead_lettered_naming_the_setting(
        relays: MakeRelay, meta: MetaStandIn) -> None:
    relay = start(relays, meta, token="not-the-token")
    eid = new_event_id("auth")
    with client() as http:
        assert post_backend(http, relay, purchase(eid)).status_code == 202

        def dead() -> list[dict[str, Any]]:
            r = http.get(relay.admin_url("/dlq"), params={"destination": "meta"})
            letters: list[dict[str, Any]] = r.json()
            return letters

        (letter,) = wait_until(dead, 20, "the dead letter of a refused token")
    assert letter["event_id"] == eid and letter["status"] == 400
    assert "meta_capi: access_token refused (code 190" in str(letter["response"])
    assert "check settings.access_token" in str(letter["response"])
    assert len(meta.requests) == 1, "an auth error must not be retried"
    assert "not-the-token" not in relay.log_text()
    assert meta.accepted == []


def test_the_browser_and_backend_copies_of_a_purchase_reach_meta_once(
        relays: MakeRelay, meta: MetaStandIn) -> None:
    relay = start(relays, meta)
    eid = new_event_id("ord")
    with client() as http:
        browser = {"event": "purchase", "event_id": eid,
                   "properties": {"order_id": "O1", "value": 149.0, "currency": "USD"},
                   "context": {"page": {"url": "https://shop.example/thanks?fbclid=Fb-CaSe_1"}}}
        r = post_browser(http, relay, browser, headers={"User-Agent": CHROME_UA})
        assert r.status_code == 202 and r.json().get("held") == 1, r.text
        backend = purchase(eid)
        del backend["context"]["user_agent"], backend["context"]["page"]
        assert post_backend(http, relay, backend).status_code == 202
    wait_until(lambda: accepted(meta, eid), 20, "the confirmed purchase at Meta")
    time.sleep(1.5)
    (sale,) = accepted(meta, eid)
    assert sale["event_source_url"] == "https://shop.example/thanks"
    assert sale["user_data"]["client_user_agent"] == CHROME_UA
    assert sale["user_data"]["fbc"].endswith(".Fb-CaSe_1")
    assert sale["user_data"]["client_ip_address"] == "198.51.100.23"  # the backend's, as sent
    assert meta.problems == []
