"""The demo's stand-in vendors (``relay/demo/standins``): each takes the relay's real requests
with no problem, as the end-to-end stand-ins of ``tests/e2e/standins`` (the oracle of each
vendor's wire format) do; refuses a wrong secret as its vendor does; flags what its vendor
would refuse or drop; and reads each item back in the relay's field names."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from relay.demo.standins import STANDINS
from relay.demo.standins.base import Call

from .wire import (
    ANN_SHA256,
    CHROME,
    backend_purchase,
    batched,
    call,
    demo_rules,
    items,
    oracle,
    oracle_problems,
    page_view,
    request,
)

VENDORS = ["ga4", "posthog", "plausible", "meta", "tiktok"]


def test_every_stand_in_type_is_in_the_demo(tmp_path: Path) -> None:
    kinds = {v.type for v in demo_rules(tmp_path)[1].values() if v.standin is not None}
    assert kinds == set(STANDINS)


@pytest.mark.parametrize("name", VENDORS)
async def test_the_relays_requests_are_taken_as_the_vendor_takes_them(
        tmp_path: Path, name: str) -> None:
    rules, vendors = demo_rules(tmp_path)
    vendor = vendors[name]
    assert vendor.standin is not None
    made = await items(rules, [("browser", page_view()), ("backend", backend_purchase())])
    batches = batched(rules, name, made[name])
    truth = oracle(vendor.type, rules.destinations[name].settings)
    try:
        for batch in batches:
            c = call(vendor, request(vendor, rules, batch))
            took = vendor.standin.handle(c)
            assert took.problems == [], took.problems
            assert 200 <= took.answer.status < 300, took.answer
            assert len(took.items) == len(batch)
            status, problems = oracle_problems(truth, c)
            assert problems == [] and 200 <= status < 300, (status, problems)
            if vendor.type != "ga4":  # GA4's item is the request's body, one per event
                assert took.items == batch
    finally:
        truth.close()


def _secret_gone(name: str, c: Call) -> Call:
    """The call with the vendor's secret replaced by a wrong one, where the relay puts it."""
    if name == "ga4":
        return replace(c, query=tuple((k, "wrong" if k == "api_secret" else v)
                                      for k, v in c.query))
    if name == "tiktok":
        return replace(c, headers={**c.headers, "access-token": "wrong"})
    body = orjson.loads(c.body)
    body["access_token" if name == "meta" else "api_key"] = "wrong"
    return replace(c, body=orjson.dumps(body))


@pytest.mark.parametrize(("name", "status", "says"), [
    ("ga4", 204, "api_secret is not one of the stream's"),  # Google answers 204 anyway
    ("meta", 400, '"code":190'),
    ("tiktok", 200, '"code":40105'),
    ("posthog", 401, "API key is not valid"),
])
async def test_a_wrong_secret_is_answered_as_the_vendor_does(
        tmp_path: Path, name: str, status: int, says: str) -> None:
    rules, vendors = demo_rules(tmp_path)
    vendor = vendors[name]
    assert vendor.standin is not None
    made = await items(rules, [("browser", page_view())])
    took = vendor.standin.handle(_secret_gone(name, call(vendor, request(vendor, rules,
                                                                       made[name]))))
    assert took.answer.status == status
    assert says in took.answer.body.decode() + " ".join(took.problems)
    assert took.items, "a refused request still shows what it carried"


def _broken(name: str, item: dict[str, Any]) -> dict[str, Any]:
    """An item with a bug the real vendor would refuse or silently drop."""
    if name == "ga4":
        return {**item, "user_data": {"sha256_email_address": ["ann@example.com"]}}
    if name == "meta":
        return {**item, "user_data": {**item["user_data"], "em": ["ann@example.com"]}}
    if name == "tiktok":
        return {**item, "user": {**item["user"], "email": ["Ann@Example.com"]}}
    if name == "posthog":
        props = {k: v for k, v in item["properties"].items() if k != "$ip"}
        return {**item, "properties": props}
    return {**item, "headers": {"User-Agent": "python-httpx/0.28"}}  # plausible: a bot


@pytest.mark.parametrize("name", VENDORS)
async def test_what_the_vendor_would_refuse_or_drop_is_a_problem(
        tmp_path: Path, name: str) -> None:
    rules, vendors = demo_rules(tmp_path)
    vendor = vendors[name]
    assert vendor.standin is not None
    made = await items(rules, [("browser", page_view())])
    took = vendor.standin.handle(call(vendor, request(vendor, rules,
                                                      [_broken(name, made[name][0])])))
    refused = not 200 <= took.answer.status < 300 or b'"code":0' not in took.answer.body
    assert took.problems or (name in ("meta", "tiktok") and refused), took


async def test_each_stand_in_reads_its_items_back_in_the_relays_names(tmp_path: Path) -> None:
    rules, vendors = demo_rules(tmp_path)
    made = await items(rules, [("backend", backend_purchase())])
    views = {}
    for name in VENDORS:
        standin = vendors[name].standin
        assert standin is not None
        [item] = made[name]
        took = standin.handle(call(vendors[name], request(vendors[name], rules, [item])))
        views[name] = standin.view(took.items[0])
    cid = hashlib.sha256(b"C000042").hexdigest()
    assert views["ga4"]["context.ip"] == ("ip_override", "127.0.0.0")
    assert views["ga4"]["user.email"] == ("user_data.sha256_email_address", ANN_SHA256)
    assert views["ga4"]["properties.order_id"] == ("events[].params.transaction_id", "O-1")
    assert views["meta"]["user.email"] == ("user_data.em", ANN_SHA256)
    assert views["meta"]["user.id"] == ("user_data.external_id", cid)
    assert views["meta"]["context.user_agent"] == ("user_data.client_user_agent", CHROME)
    assert views["meta"]["context.click_ids.fbclid"] == ("user_data.fbc", "fb-42")
    assert views["meta"]["properties.currency"] == ("custom_data.currency", "eur")
    assert views["tiktok"]["user.email"] == ("user.email", ANN_SHA256)
    assert views["posthog"]["user.id"] == ("distinct_id", "C000042")
    assert views["posthog"]["user.email"] == ("properties.$set.email_sha256", ANN_SHA256)
    assert views["posthog"]["context.click_ids.fbclid"] == ("properties.fbclid", "fb-42")
    assert views["plausible"]["context.ip"] == ("X-Forwarded-For (header)", "127.0.0.0")
    assert views["plausible"]["properties.value"] == ("revenue.amount", 37.0)
    assert "context.user_agent" not in views["plausible"]  # minimize keeps no user agent
    for name, view in views.items():
        assert view["context.page.url"][1] == "http://127.0.0.1:8123/" or name == "ga4"
    assert views["ga4"]["context.page.url"][1] == (
        "http://127.0.0.1:8123/?utm_source=newsletter&utm_campaign=spring")


def test_names_and_secrets(tmp_path: Path) -> None:
    _, vendors = demo_rules(tmp_path)
    for name in VENDORS:
        standin = vendors[name].standin
        assert standin is not None
        for secret, label in standin.secrets().items():
            assert len(secret) >= 16 and label.startswith("settings.")
    assert vendors["plausible"].standin is not None
    assert vendors["plausible"].standin.secrets() == {}  # the Events API takes no key
    meta = vendors["meta"].standin
    assert meta is not None and meta.event_name({"event_name": "Purchase"}) == "Purchase"
    unknown = meta.handle(Call("GET", "/nope", (), {}, b""))
    assert unknown.answer.status == 400 and b"Unknown path" in unknown.answer.body
