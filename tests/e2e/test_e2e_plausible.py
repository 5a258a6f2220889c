"""``plausible`` end to end: a real ``relay serve`` delivering to the Events API stand-in
(``standins/plausible.py``): the wire format and visitor headers as the pipeline kept them,
no stand-in problem, a denied purpose never reaching it, no raw email, retries delivering
once, and a refused request dead-lettered with the setting or field to check."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .conftest import MakeRelay
from .relayproc import RelayProcess
from .rulesdir import FAST_BREAKER, FAST_RETRY
from .standins.base import Reply
from .standins.plausible import PlausibleStandIn
from .wire import client, new_event_id, post_backend, post_browser, purchase, wait_until

RAW_IP = "203.0.113.77"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0"
VISITORS = [{"ip": "truncate"}, {"user_agent": "keep"},
            {"url": {"keep_params": ["utm_source", "utm_medium", "utm_campaign"]}},
            {"redact": "free_text"}]

MakePlausible = Callable[..., PlausibleStandIn]


@pytest.fixture
def plausible_vendors() -> Iterator[MakePlausible]:
    started: list[PlausibleStandIn] = []

    def make(**kwargs: Any) -> PlausibleStandIn:
        vendor = PlausibleStandIn(**kwargs)
        started.append(vendor)
        return vendor

    yield make
    for vendor in started:
        vendor.close()


def start(relays: MakeRelay, vendor: PlausibleStandIn, pipeline: str = "visitors",
          **settings: Any) -> RelayProcess:
    dest = {"type": "plausible", "purpose": "analytics", "events": "*", "pipeline": pipeline,
            "settings": {"domain": "shop.example", "endpoint": vendor.endpoint, **settings},
            "timeout": "2s", "retry": dict(FAST_RETRY), "circuit_breaker": dict(FAST_BREAKER),
            "legal_basis": "consent", "retention": "24 months"}
    return relays(relay={"client_ip": {"header": "X-Forwarded-For", "trusted_hops": 1}},
                  pipelines={"visitors": VISITORS}, destinations={"plausible": dest})


def headers(**extra: str) -> dict[str, str]:
    return {"CF-IPCountry": "US", "X-Forwarded-For": RAW_IP, "User-Agent": FIREFOX, **extra}


def view(**extra: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {"event": "page_view", "event_id": new_event_id(), "context": {
        "page": {"url": "https://shop.example/p?utm_source=news&session=9",
                 "referrer": "https://www.google.com/"}}}
    ev.update(extra)
    return ev


def test_delivered_in_the_events_api_format_with_the_visitors_headers(
        relays: MakeRelay, plausible_vendors: MakePlausible) -> None:
    vendor = plausible_vendors()
    relay = start(relays, vendor)
    order = purchase(value=149.0, context={
        "country": "US", "page": {"url": "https://shop.example/thanks"}})
    with client() as http:
        r = post_browser(http, relay, view(properties={"plan": "pro", "note": "mail a@b.example"}),
                         headers())
        assert r.status_code == 202, r.text
        assert post_backend(http, relay, order).status_code == 202
    accepted = wait_until(lambda: vendor.accepted if len(vendor.accepted) >= 2 else None, 20,
                          "a pageview and a purchase at the Plausible stand-in")
    assert vendor.problems == []
    by_name = {a["body"]["name"]: a for a in accepted}
    pv = by_name["pageview"]
    assert pv["body"] == {"name": "pageview", "url": "https://shop.example/p?utm_source=news",
                          "domain": "shop.example", "referrer": "https://www.google.com/",
                          "props": {"plan": "pro", "note": "mail [email]"}}
    assert (pv["user_agent"], pv["x_forwarded_for"]) == (FIREFOX, "203.0.113.0")
    buy = by_name["purchase"]
    assert buy["body"]["revenue"] == {"amount": 149.0, "currency": "USD"}
    assert buy["body"]["props"] == {"order_id": order["properties"]["order_id"]}
    assert buy["user_agent"] is None  # the backend sent none: not the relay's own
    sent = b"".join(r.body for r in vendor.requests)
    assert RAW_IP.encode() not in sent and b"a@b.example" not in sent
    assert all(r.reply is not None and r.reply.status == 202 for r in vendor.requests)


def test_without_the_user_agent_and_address_plausible_gets_neither(
        relays: MakeRelay, plausible_vendors: MakePlausible) -> None:
    """The shipped ``minimize`` pipeline keeps a device class instead of the user agent and
    a /24 address: Plausible then sees no User-Agent at all (never the relay's), and the
    truncated address."""
    vendor = plausible_vendors()
    relay = start(relays, vendor, pipeline="minimize")
    with client() as http:
        assert post_browser(http, relay, view(), headers()).status_code == 202
    [item] = wait_until(lambda: vendor.accepted, 20, "the pageview")
    assert vendor.problems == []
    assert (item["user_agent"], item["x_forwarded_for"]) == (None, "203.0.113.0")


def test_a_denied_purpose_never_reaches_plausible(
        relays: MakeRelay, plausible_vendors: MakePlausible) -> None:
    vendor = plausible_vendors()
    relay = start(relays, vendor)
    denied = view(consent={"analytics": "denied"})
    granted = view(consent={"analytics": "granted"})  # one browser: the choice is remembered
    with client() as http:
        for ev in (denied, granted):
            assert post_browser(http, relay, ev, headers()).status_code == 202
    wait_until(lambda: vendor.accepted, 20, "the granted pageview")
    time.sleep(1.5)  # the denied one would have been delivered by now
    assert len(vendor.accepted) == 1 and len(vendor.requests) == 1
    assert vendor.problems == []


@pytest.mark.parametrize("failure", [
    Reply.json(429, {"error": "too many requests"}, ("Retry-After", "1")),
    Reply(503, b"<html>Bad Gateway</html>", (("Content-Type", "text/html"),)),
])
def test_a_failed_attempt_is_retried_and_delivered_once(
        relays: MakeRelay, plausible_vendors: MakePlausible, failure: Reply) -> None:
    vendor = plausible_vendors()
    vendor.fail_next(1, failure)
    relay = start(relays, vendor)
    with client() as http:
        assert post_browser(http, relay, view(), headers()).status_code == 202
    wait_until(lambda: vendor.accepted, 20, "the pageview after a failed attempt")
    time.sleep(1.5)
    assert len(vendor.accepted) == 1 and vendor.problems == []
    first, second = vendor.requests[:2]
    assert first.reply == failure and second.body == first.body
    if failure.status == 429:
        assert second.at - first.at >= 0.9


def test_a_refused_request_is_dead_lettered_naming_what_to_fix(
        relays: MakeRelay, plausible_vendors: MakePlausible) -> None:
    """Plausible takes no credentials; what it refuses is a request (400), final at once."""
    vendor = plausible_vendors()
    vendor.fail_next(1, Reply.json(400, {"errors": {"domain": ["can't be blank"]}}))
    relay = start(relays, vendor)
    with client() as http:
        assert post_browser(http, relay, view(), headers()).status_code == 202

        def letters() -> list[dict[str, Any]] | None:
            found: list[dict[str, Any]] = http.get(
                relay.admin_url("/dlq"), params={"destination": "plausible"}).json()
            return found or None

        [letter] = wait_until(letters, 20, "a dead letter of plausible")
    assert letter["status"] == 400
    assert letter["response"] == ('HTTP 400: {"errors": {"domain": ["can\'t be blank"]}} '
                                  "(check settings.domain)")
    assert len(vendor.requests) == 1


def test_the_stand_in_finds_what_plausible_would_refuse_or_drop(
        plausible_vendors: MakePlausible) -> None:
    vendor = plausible_vendors()
    with client() as http:
        r = http.post(f"{vendor.endpoint}/api/event", json={"name": "pageview",
                                                            "domain": "shop.example"})
        assert (r.status_code, r.json()) == (400, {"errors": {"url": ["is required"]}})
        r = http.post(f"{vendor.endpoint}/api/event", json={
            "name": "pageview", "url": "https://shop.example/", "domain": "shop.example",
            "props": {"tags": ["a"], **{f"p{i}": i for i in range(31)}},
            "revenue": {"amount": 1, "currency": "euro"}},
            headers={"User-Agent": "python-httpx/0.28"})
        assert (r.status_code, r.text, r.headers["x-plausible-dropped"]) == (202, "ok", "1")
        r = http.post(f"{vendor.endpoint}/api/event", json={
            "name": "pageview", "url": "https://shop.example/", "domain": "other.example"},
            headers={"User-Agent": FIREFOX})
        assert r.headers["x-plausible-dropped"] == "1"
    problems = "\n".join(vendor.problems)
    for expected in ("400 url: is required", "32 props: Plausible keeps 30",
                     "props.tags: Plausible drops such a value", "revenue",
                     "Plausible drops it as a bot's", "domain 'other.example' is not a site"):
        assert expected in problems, expected
    assert vendor.accepted == []
