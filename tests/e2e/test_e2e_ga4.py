"""``ga4`` end to end: a real ``relay serve`` delivering to the Measurement Protocol stand-in
(``standins/ga4.py``): the wire format with no stand-in problem, one client per request,
consent (a denied purpose never reaches it; no ad consent: DENIED and no user data),
identifiers only hashed, retries delivering once, and what cannot be delivered
dead-lettered with the setting to fix."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .conftest import MakeRelay
from .relayproc import RelayProcess
from .rulesdir import FAST_BREAKER, FAST_RETRY
from .standins.base import Reply
from .standins.ga4 import Ga4StandIn
from .wire import client, new_event_id, post_backend, post_browser, purchase, wait_until

PHONE_VECTOR = "1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8"
EMAIL = "Ann.Lee+shop@Gmail.com"
PHONE = "+1 (650) 555-1212"
RAW_IP = "203.0.113.77"
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/126.0.0.0 Safari/537.36")
PIPELINE = [{"ip": "truncate"}, {"user_agent": "device"},
            {"url": {"keep_params": ["utm_source", "utm_medium", "utm_campaign"]}},
            {"click_ids": {"keep_for": "ads"}}]

MakeGa4 = Callable[..., Ga4StandIn]


@pytest.fixture
def ga4_vendors() -> Iterator[MakeGa4]:
    started: list[Ga4StandIn] = []

    def make(**kwargs: Any) -> Ga4StandIn:
        vendor = Ga4StandIn(**kwargs)
        started.append(vendor)
        return vendor

    yield make
    for vendor in started:
        vendor.close()


def destination(vendor: Ga4StandIn, *, api_secret: str | None = None,
                **settings: Any) -> dict[str, Any]:
    return {
        "type": "ga4", "purpose": "analytics", "events": "*", "pipeline": "ga4_min",
        "settings": {"measurement_id": vendor.measurement_id,
                     "api_secret": api_secret or vendor.api_secret,
                     "endpoint": vendor.endpoint, **settings},
        "timeout": "2s", "retry": dict(FAST_RETRY), "circuit_breaker": dict(FAST_BREAKER),
        "legal_basis": "consent", "retention": "14 months",
    }


def start(relays: MakeRelay, vendor: Ga4StandIn, **dest: Any) -> RelayProcess:
    return relays(relay={"client_ip": {"header": "X-Forwarded-For", "trusted_hops": 1}},
                  pipelines={"ga4_min": PIPELINE},
                  destinations={"ga4": destination(vendor, **dest)})


def browser_headers(ip: str = RAW_IP, **extra: str) -> dict[str, str]:
    return {"CF-IPCountry": "US", "X-Forwarded-For": ip, "User-Agent": CHROME, **extra}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_delivered_in_the_measurement_protocol_format(
        relays: MakeRelay, ga4_vendors: MakeGa4) -> None:
    vendor = ga4_vendors()
    relay = start(relays, vendor)
    order = purchase(value=149.0, user={"id": "u_42", "email": EMAIL, "phone": PHONE,
                                        "address": {"city": "Mountain View", "country": "us"}},
                     context={"country": "US", "ip": RAW_IP,
                              "page": {"url": "https://shop.example/thanks"}})
    with client() as http:
        view = {"event": "page_view", "event_id": new_event_id(),
                "context": {"page": {"url": "https://shop.example/p?utm_source=news&x=1",
                                     "title": "Shoes"}}}
        r = post_browser(http, relay, view, browser_headers())
        assert r.status_code == 202, r.text
        r = post_backend(http, relay, order)
        assert r.status_code == 202, r.text
    accepted = wait_until(lambda: vendor.accepted if len(vendor.accepted) >= 2 else None, 20,
                          "a page view and a purchase at the GA4 stand-in")
    assert vendor.problems == []
    by_name = {a["event"]["name"]: a for a in accepted}
    pv = by_name["page_view"]
    assert pv["ip_override"] == "203.0.113.0" and RAW_IP not in json.dumps(pv)
    assert pv["consent"] == {"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"}
    assert pv["device"] == {"category": "desktop", "operating_system": "Windows",
                            "browser": "Chrome"}
    assert pv["event"]["params"]["page_location"] == "https://shop.example/p?utm_source=news"
    assert pv["event"]["params"]["page_title"] == "Shoes"
    assert pv["event"]["params"]["session_id"].isdigit()
    first, second = pv["client_id"].split(".")
    assert first.isdigit() and second.isdigit()  # derived from the relay's cookie
    buy = by_name["purchase"]
    params = buy["event"]["params"]
    assert (params["transaction_id"], params["value"], params["currency"]) == (
        order["properties"]["order_id"], 149.0, "USD")
    assert buy["user_id"] == "u_42" and buy["ip_override"] == "203.0.113.0"
    assert buy["user_data"] == {
        "sha256_email_address": [sha("annlee+shop@gmail.com")],
        "sha256_phone_number": [PHONE_VECTOR],
        "address": [{"city": "mountain view", "country": "US"}]}
    sent = b"".join(r.body for r in vendor.requests).lower()
    for raw in (EMAIL.lower(), "ann.lee", "650", "555-1212", RAW_IP):
        assert raw.encode() not in sent, raw
    for request in vendor.requests:
        assert request.param("api_secret") == vendor.api_secret
        assert request.reply is not None and request.reply.status == 204


def test_a_request_carries_one_client_and_at_most_25_events(
        relays: MakeRelay, ga4_vendors: MakeGa4) -> None:
    vendor = ga4_vendors()
    relay = start(relays, vendor)
    with client() as one, client() as other:
        views = [{"event": "page_view", "event_id": new_event_id(),
                  "context": {"page": {"url": f"https://shop.example/{i}"}}} for i in range(30)]
        first = post_browser(one, relay, views[:1], browser_headers())
        assert first.status_code == 202
        assert post_browser(one, relay, views[1:], browser_headers()).status_code == 202
        assert post_browser(other, relay, {"event": "page_view", "event_id": new_event_id(),
                                           "context": {"page": {"url": "https://s.example/"}}},
                            browser_headers("198.51.100.9")).status_code == 202
    wait_until(lambda: len(vendor.accepted) >= 31, 30, "31 page views at the stand-in")
    assert vendor.problems == []
    clients = {a["client_id"] for a in vendor.accepted}
    assert len(clients) == 2
    for request in vendor.requests:
        body = json.loads(request.body)
        assert 1 <= len(body["events"]) <= 25
    counts = sorted(len(json.loads(r.body)["events"]) for r in vendor.requests)
    assert max(counts) > 1, counts  # one client's events went together


def test_consent(relays: MakeRelay, ga4_vendors: MakeGa4) -> None:
    """A denied analytics purpose never reaches GA4; without ad consent (denied, or Global
    Privacy Control) the events go with consent DENIED and without user data."""
    vendor = ga4_vendors()
    relay = start(relays, vendor)
    denied = new_event_id("denied")
    no_ads = new_event_id("noads")
    gpc = new_event_id("gpc")
    user = {"id": "u_7", "email": "someone@example.org"}
    for eid, consent, extra in ((denied, {"analytics": "denied"}, {}),
                                (no_ads, {"analytics": "granted", "ads": "denied"}, {}),
                                (gpc, {}, {"Sec-GPC": "1"})):
        with client() as http:  # a browser each: a choice is remembered for its cookie
            r = post_browser(http, relay, {"event": "page_view", "event_id": eid,
                                           "consent": consent, "user": user,
                                           "context": {"page": {"url": "https://s.example/"}}},
                             browser_headers(**extra))
            assert r.status_code == 202, r.text
    wait_until(lambda: len(vendor.accepted) >= 2, 20, "two page views at the stand-in")
    time.sleep(1.5)  # a denied copy would have been delivered by now
    assert vendor.problems == []
    assert len(vendor.accepted) == 2
    for item in vendor.accepted:
        assert item["consent"] == {"ad_user_data": "DENIED", "ad_personalization": "DENIED"}
        assert "user_data" not in item and item["user_id"] == "u_7"
    assert denied not in b"".join(r.body for r in vendor.requests).decode()


@pytest.mark.parametrize("failure", [
    Reply.json(429, {"error": "rate"}, ("Retry-After", "1")),
    Reply.json(500, {"error": "backend"}),
])
def test_a_failed_attempt_is_retried_and_delivered_once(
        relays: MakeRelay, ga4_vendors: MakeGa4, failure: Reply) -> None:
    vendor = ga4_vendors()
    vendor.fail_next(1, failure)
    relay = start(relays, vendor)
    order = purchase()
    with client() as http:
        assert post_backend(http, relay, order).status_code == 202
    wait_until(lambda: vendor.accepted, 20, "the purchase after a failed attempt")
    time.sleep(1.5)  # a second delivery would show by now
    assert vendor.problems == []
    assert [a["event"]["params"]["transaction_id"] for a in vendor.accepted] == [
        order["properties"]["order_id"]]
    first, second = vendor.requests[:2]
    assert first.reply == failure and second.body == first.body  # the same request again
    if failure.status == 429:
        assert second.at - first.at >= 0.9


def _dead(relay: RelayProcess, n: int = 1) -> list[dict[str, Any]]:
    with client() as http:
        def letters() -> list[dict[str, Any]] | None:
            r = http.get(relay.admin_url("/dlq"), params={"destination": "ga4"})
            found: list[dict[str, Any]] = r.json()
            return found if len(found) >= n else None
        return wait_until(letters, 20, f"{n} dead letter(s) of ga4")


def test_a_refused_secret_is_dead_lettered_naming_the_setting(
        relays: MakeRelay, ga4_vendors: MakeGa4) -> None:
    """Google's /mp/collect never refuses a secret (it discards the events); a gateway in
    front of it (settings.endpoint) may: 403 is final, and says which settings to check."""
    vendor = ga4_vendors(gateway=True)
    relay = start(relays, vendor, api_secret="wrong-mp-secret-value")
    with client() as http:
        assert post_backend(http, relay, purchase()).status_code == 202
    [letter] = _dead(relay)
    assert letter["status"] == 403
    assert "check settings.api_secret and settings.measurement_id" in letter["response"]
    assert len(vendor.requests) == 1  # not retried
    assert "wrong-mp-secret-value" not in json.dumps(letter) + relay.log_text()


def test_debug_mode_validation_messages_decide(
        relays: MakeRelay, ga4_vendors: MakeGa4) -> None:
    vendor = ga4_vendors()
    relay = start(relays, vendor, debug=True)
    with client() as http:
        assert post_backend(http, relay, purchase()).status_code == 202
        wait_until(lambda: vendor.requests, 20, "a request to the validation server")
        first = vendor.requests[0]
        assert first.path == "/debug/mp/collect" and first.problems == []
        assert json.loads(first.body)["validation_behavior"] == "ENFORCE_RECOMMENDATIONS"
        assert first.reply is not None and json.loads(first.reply.body) == {
            "validationMessages": []}
        assert vendor.accepted == []  # the validation server records nothing
        vendor.fail_next(1, Reply.json(200, {"validationMessages": [{
            "fieldPath": "events", "validationCode": "NAME_INVALID",
            "description": "Event at index: [0] has invalid name [x]."}]}))
        assert post_backend(http, relay, purchase()).status_code == 202
    [letter] = _dead(relay)
    assert letter["status"] == 200
    assert letter["response"] == ("GA4 validation: events: Event at index: [0] has invalid "
                                  "name [x]. (NAME_INVALID)")


def test_the_stand_in_finds_what_google_would_reject_or_discard(ga4_vendors: MakeGa4) -> None:
    """What the tests above assert to be empty is not empty for a body GA would not take."""
    vendor = ga4_vendors()
    bad = {"client_id": "", "user_data": {"sha256_email_address": ["Ann@Example.com"]},
           "consent": {"ad_user_data": "granted"}, "ip_override": "a.b.c.d",
           "events": [{"name": "session_start", "params": {"_x": 1, "session_id": "s1"}},
                      {"name": "purchase", "params": {"value": 1, "currency": "usd"}},
                      {"name": "checkout step", "timestamp_micros": 1}]}
    with client() as http:
        r = http.post(f"{vendor.endpoint}/debug/mp/collect?measurement_id=G-OTHER&api_secret=x",
                      json=bad)
        assert r.status_code == 200
        codes = {m["validationCode"] for m in r.json()["validationMessages"]}
        r = http.post(f"{vendor.endpoint}/mp/collect?measurement_id=G-OTHER&api_secret=x",
                      content=b"{not json")
        assert r.status_code == 204 and r.content == b""  # Google's answer to everything
    assert codes == {"VALUE_REQUIRED", "VALUE_INVALID", "NAME_RESERVED", "NAME_INVALID",
                     "VALUE_OUT_OF_BOUNDS"}
    problems = "\n".join(vendor.problems)
    for expected in ("measurement_id is not the stream's", "api_secret is not one of",
                     "an email address in the clear", "user_data requires user_id",
                     "transaction_id is required", "body is not JSON"):
        assert expected in problems, expected
    assert vendor.accepted == []
