"""``relay datamap`` against what vendors actually receive: a real ``relay serve`` delivers
varied events (every envelope field, open and closed contracts, events without a contract,
consent granted, GPC on) to every vendor stand-in, two webhook stand-ins and the shipped file
archive; every field path any of them received is in the datamap's ``fields`` of that
destination (nothing arrives that the datamap omits)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest

from relay.destinations.matomo import CONSTANT_PARAMS
from relay.fieldset import ANY, LIST, split

from .conftest import MakeRelay, MakeVendor
from .relayproc import RelayProcess
from .rulesdir import FAST_BREAKER, FAST_RETRY, edit, make_rules, webhook
from .standins.base import Request, StandIn
from .standins.ga4 import Ga4StandIn
from .standins.matomo import MatomoStandIn
from .standins.meta import MetaStandIn
from .standins.mixpanel import MixpanelStandIn
from .standins.plausible import PlausibleStandIn
from .standins.posthog import PostHogStandIn
from .standins.segment import SegmentStandIn
from .standins.tiktok import TikTokStandIn
from .vendordest import RAW_IP
from .wire import (
    CHROME_UA,
    archived,
    client,
    metric,
    new_event_id,
    post_backend,
    post_browser,
    scrape,
    wait_until,
)

POSTHOG_KEY = "phc_e2eDatamapKey0123456789abcdefghijklmno"
MIXPANEL_TOKEN = "e2e0123456789abcdef0123456789ab"
SA_USER, SA_SECRET, PROJECT = "relay.e2e.mp-service-account", "e2e-sa-secret-4f1b", "2718281"
MATOMO_TOKEN = "e2e3dc3f2536d3025974cccb4b4d2d98"
SEGMENT_KEY = "e2e-segment-destination-key-1f9c"
GRANTED = {"analytics": "granted", "ads": "granted"}
HEADERS = {"CF-IPCountry": "US", "X-Forwarded-For": RAW_IP, "User-Agent": CHROME_UA}
USER = {"id": "u_42", "email": "Ann.Lee@Example.com", "phone": "+1 (650) 555-1212",
        "first_name": "Ann", "last_name": "Lee", "date_of_birth": "1990-01-31", "gender": "f",
        "address": {"street": "1 Main St", "city": "Paris", "region": "IDF",
                    "postal_code": "75001", "country": "FR"},
        "plan_tier": "gold"}
PAGE = {"url": "https://shop.example/p/1?utm_source=news&utm_medium=mail&utm_campaign=bf"
               "&utm_term=shoes&utm_content=top&gclid=g1&fbclid=f1&ttclid=t1&q=2",
        "referrer": "https://search.example/?q=shoes", "title": "Shoes",
        "search": "?utm_source=news", "path": "/p/1"}
CONTEXT = {"page": PAGE, "locale": "en-US",
           "cookies": {"_fbp": "fb.1.1795867200000.123", "_fbc": "fb.1.1795867200000.f1",
                       "_ttp": "ttp-cookie-1"},
           "campaign": {"source": "news"}, "device": {"model": "Pixel"}, "app": "shop"}
ITEMS = [{"item_id": "sku1", "item_name": "Shoe", "item_brand": "Acme",
          "item_category": "Shoes", "price": 49.5, "quantity": 2}]
EXTRA_EVENTS = {"signup": {"properties": {"plan": {"type": "string"}}}}


def _destinations(stand: dict[str, StandIn], hooks: dict[str, Any]) -> dict[str, Any]:
    def vendor(kind: str, purpose: str, settings: dict[str, Any],
               pipeline: str = "raw") -> dict[str, Any]:
        return {"type": kind, "purpose": purpose, "events": "*", "pipeline": pipeline,
                "settings": settings, "timeout": "2s", "retry": dict(FAST_RETRY),
                "circuit_breaker": dict(FAST_BREAKER), "legal_basis": "consent",
                "retention": "1 day"}

    ga4, meta, tiktok = stand["ga4"], stand["meta"], stand["tiktok"]
    assert isinstance(ga4, Ga4StandIn) and isinstance(meta, MetaStandIn)
    assert isinstance(tiktok, TikTokStandIn)
    return {
        "ga4": vendor("ga4", "analytics", {"measurement_id": ga4.measurement_id,
                                           "api_secret": ga4.api_secret,
                                           "endpoint": ga4.endpoint}),
        "meta": vendor("meta_capi", "ads", {"pixel_id": meta.pixel_id,
                                            "access_token": meta.access_token,
                                            "endpoint": meta.endpoint}),
        "tiktok": vendor("tiktok", "ads", {"pixel_code": tiktok.pixel_code,
                                           "access_token": tiktok.access_token,
                                           "endpoint": tiktok.endpoint}),
        "posthog": vendor("posthog", "analytics", {"api_key": POSTHOG_KEY,
                                                   "endpoint": stand["posthog"].endpoint}),
        "plausible": vendor("plausible", "analytics", {"domain": "shop.example",
                                                       "endpoint": stand["plausible"].endpoint}),
        "segment": vendor("segment", "analytics", {"write_key": SEGMENT_KEY,
                                                   "endpoint": stand["segment"].endpoint},
                          pipeline="hashed"),
        "mixpanel": vendor("mixpanel", "analytics", {
            "token": MIXPANEL_TOKEN, "service_account_username": SA_USER,
            "service_account_secret": SA_SECRET, "project_id": PROJECT,
            "endpoint": stand["mixpanel"].endpoint}),
        "matomo": vendor("matomo", "analytics", {"site_id": 3, "token_auth": MATOMO_TOKEN,
                                                 "endpoint": stand["matomo"].endpoint}),
        **hooks,
    }


@pytest.fixture
def stand_ins() -> Iterator[dict[str, StandIn]]:
    made: dict[str, StandIn] = {
        "ga4": Ga4StandIn(), "meta": MetaStandIn(), "tiktok": TikTokStandIn(),
        "posthog": PostHogStandIn(POSTHOG_KEY), "plausible": PlausibleStandIn(),
        "segment": SegmentStandIn(SEGMENT_KEY),
        "mixpanel": MixpanelStandIn(MIXPANEL_TOKEN, service_account=(SA_USER, SA_SECRET),
                                    project_id=PROJECT),
        "matomo": MatomoStandIn(3, MATOMO_TOKEN),
    }
    yield made
    for standin in made.values():
        standin.close()


# -- what each vendor received, as paths in FieldMap.theirs form --------------------------

def paths(value: Any, prefix: str = "") -> set[str]:
    """Every path holding a value that is not an object or a list, lists marked ``[]``. An
    empty object or list holds no field (Segment's ``properties: {}`` of an event without
    properties)."""
    if isinstance(value, dict):
        return {p for k, v in value.items()
                for p in paths(v, f"{prefix}.{k}" if prefix else str(k))}
    if isinstance(value, list):
        return {p for v in value for p in paths(v, prefix + LIST)}
    return {prefix}


def _body(request: Request) -> Any:
    return json.loads(request.body)


def _ga4(r: Request) -> list[Any]:
    return [_body(r)]


def _items(key: str) -> Callable[[Request], list[Any]]:
    return lambda r: list(_body(r)[key])


def _mixpanel(r: Request) -> list[Any]:
    records = _body(r)
    for record in records:  # the project token, from the settings: no event data
        assert record["properties"].pop("token") == MIXPANEL_TOKEN
    return list(records)


def _matomo(r: Request) -> list[Any]:
    out = []
    for query in _body(r)["requests"]:
        params = parse_qs(query.lstrip("?"), keep_blank_values=True)
        out.append({k: v[-1] for k, v in params.items() if k not in CONSTANT_PARAMS})
    return out


def _plausible(r: Request) -> list[Any]:
    item: dict[str, Any] = {"body": _body(r)}
    headers = {}
    if r.headers.get("user-agent") == CHROME_UA:  # else httpx's own: not the visitor's
        headers["User-Agent"] = r.headers["user-agent"]
    if "x-forwarded-for" in r.headers:
        headers["X-Forwarded-For"] = r.headers["x-forwarded-for"]
    if headers:
        item["headers"] = headers
    return [item]


ITEMS_OF: dict[str, Callable[[Request], list[Any]]] = {
    "ga4": _ga4, "meta": _items("data"), "tiktok": _items("data"), "posthog": _items("batch"),
    "segment": _items("batch"), "mixpanel": _mixpanel, "matomo": _matomo,
    "plausible": _plausible,
}


def covered(path: str, fields: list[str]) -> bool:
    """Whether a datamap field covers ``path``: the same segments, ``*`` for any key, and a
    field covers everything below it."""
    got = split(path)
    for field in fields:
        want = split(field)
        if len(want) <= len(got) and all(
                w == g or (w == ANY and g != LIST) for w, g in zip(want, got, strict=False)):
            return True
    return False


# -- the run ------------------------------------------------------------------------------

def _send(relay: RelayProcess) -> None:
    with client() as http:
        def browser(payload: dict[str, Any], **headers: str) -> None:
            r = post_browser(http, relay, payload, headers={**HEADERS, **headers})
            assert r.status_code == 202, r.text

        def backend(payload: dict[str, Any]) -> None:
            r = post_backend(http, relay, payload)
            assert r.status_code == 202, r.text

        browser({"event": "page_view", "event_id": new_event_id("pv"), "consent": GRANTED,
                 "anonymous_id": "anon-1", "user": USER, "context": CONTEXT,
                 "properties": {"section": "shoes", "position": 3, "items": ITEMS}})
        browser({"event": "page_view", "event_id": new_event_id("gpc"), "consent": GRANTED,
                 "context": {"page": PAGE}}, **{"Sec-GPC": "1"})
        browser({"event": "signup", "event_id": new_event_id("su"), "consent": GRANTED,
                 "user": {"id": "u_7", "email": "new@example.org"},
                 "context": {"page": PAGE}, "properties": {"plan": "pro", "referral": "ad"}})
        browser({"event": "newsletter_optin", "event_id": new_event_id("nl"),
                 "consent": GRANTED, "context": {"page": PAGE},
                 "category": "newsletter", "label": "footer", "value": 1})  # dataLayer form
        backend({"event": "purchase", "event_id": new_event_id("ord"), "consent": GRANTED,
                 "anonymous_id": "anon-1", "user": USER,
                 "context": {**CONTEXT, "ip": RAW_IP, "user_agent": CHROME_UA, "country": "US",
                             "click_ids": {"gclid": "g1", "fbclid": "f1", "ttclid": "t1"}},
                 "properties": {"order_id": "O-1", "value": 99.0, "currency": "USD",
                                "internal": "dropped by the contract"}})
        backend({"event": "signup", "event_id": new_event_id("su"), "consent": GRANTED,
                 "user": {"id": "u_8", "phone": "+44 20 7946 0958"},
                 "context": {"ip": "2001:db8::7", "user_agent": CHROME_UA,
                             "page": {"url": "https://shop.example/welcome"}},
                 "properties": {"plan": "free", "coupon": "WELCOME"}})


def _settled(relay: RelayProcess, names: list[str]) -> bool:
    """Every copy spooled for ``names`` is delivered, and none is dead-lettered."""
    with client() as http:
        text = scrape(http, relay)
    for name in names:
        spooled = metric(text, "relay_spooled_total", destination=name)
        delivered = metric(text, "relay_deliveries_total", destination=name, outcome="delivered")
        dead = metric(text, "relay_dlq_depth", destination=name)
        assert dead == 0, f"{name}: {dead} dead letter(s)"
        if spooled == 0 or delivered < spooled:
            return False
    return True


def test_every_field_a_vendor_received_is_in_the_datamap(
        tmp_path: Any, relays: MakeRelay, vendors: MakeVendor,
        stand_ins: dict[str, StandIn]) -> None:
    single, batched = vendors(name="hook"), vendors(name="hook_batch", batch=True)
    hooks = {"hook": webhook(single, pipeline=None),
             "hook_batch": webhook(batched, pipeline="minimize")}
    rules = make_rules(tmp_path / "rules", relay={"client_ip": {"header": "X-Forwarded-For",
                                                                "trusted_hops": 1}},
                       events=EXTRA_EVENTS,
                       pipelines={"raw": [], "hashed": [{"hash": ["user.email", "user.phone"]}]},
                       destinations=_destinations(stand_ins, hooks))

    def accept_any(tree: dict[str, Any]) -> None:
        tree["events"]["*"] = "accept"
        del tree["events"]["signup"]  # the test's own contract, in the extra file

    edit(rules / "events.yaml", accept_any)
    relay = relays(rules)
    _send(relay)
    names = [*stand_ins, *hooks, "archive"]
    wait_until(lambda: _settled(relay, names), 30, "every copy delivered")

    done = relay.cli("datamap", "--format", "json")
    assert done.returncode == 0, done.stderr
    fields = {d["name"]: d["fields"] for d in json.loads(done.stdout)["destinations"]}
    assert set(fields) == set(names)
    received: dict[str, set[str]] = {}
    for name, standin in stand_ins.items():
        assert standin.problems == [], standin.problems
        got = received[name] = set()
        for request in standin.requests:
            assert request.reply is not None and request.reply.status < 300, request.path
            for item in ITEMS_OF[name](request):
                got |= paths(item)
    assert single.problems == [] and batched.problems == []
    received["hook"] = {p for e in single.delivered_events() for p in paths(e)}
    received["hook_batch"] = {p for e in batched.delivered_events() for p in paths(e)}
    received["archive"] = {p for e in archived(relay) for p in paths(e)}

    missing = {name: sorted(p for p in got if not covered(p, fields[name]))
               for name, got in received.items()}
    assert missing == {name: [] for name in received}, "received, but not in the datamap"
    # the run was varied enough to say something: each received a good share of its map
    for name, got in received.items():
        assert len(got) >= 10, (name, sorted(got))
    assert {"user_data.em[]", "user_data.client_ip_address", "custom_data.contents[].id",
            "data_processing_options[]"} <= received["meta"]
    assert {"events[].params.section", "user_data.sha256_email_address[]"} <= received["ga4"]
    assert {"user.address.city", "context.cookies._fbp", "properties.section"} \
        <= received["hook"]
