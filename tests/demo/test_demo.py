"""``relay demo``: its rules, its pure parts, and the whole app served by hypercorn on a free
port (the relay delivers to the stand-in vendors over loopback, as in ``relay demo``)."""

from __future__ import annotations

import asyncio
import doctest
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette

from relay.cli import cmd_demo, parser
from relay.demo import changes, shop
from relay.demo.app import create_demo_app
from relay.demo.changes import COOKIE_VALUE, describe, envelope_view, merged_from_browser
from relay.demo.context import RULES_DIR, Demo, DemoConfig, demo_env
from relay.demo.record import Recorder, Tap
from relay.demo.shop import (
    INTERNAL_NOTE,
    LANDING_QUERY,
    backend_event,
    customer_id,
    parse_consent,
    parse_order,
)
from relay.demo.standins import base as standins_base
from relay.registry import check_rules
from relay.signature import verify
from relay.testing import run_tests
from tests.e2e.relayproc import free_port, relay_env

from .wire import CHROME, oracle, oracle_problems

ANN_SHA256 = "71d4f55f72fa128dfb468a1a3901507c804b74316488744d769d7f4b16696476"
PAGE_URL = "http://127.0.0.1/?" + LANDING_QUERY
WAIT_SECONDS = 10.0

# -- the shipped demo rules ---------------------------------------------------------------


@pytest.mark.parametrize("with_env", [True, False], ids=["demo env", "defaults"])
async def test_demo_rules_load_and_their_tests_pass(tmp_path: Path, with_env: bool) -> None:
    env = demo_env(DemoConfig(tmp_path, port=8123)) if with_env else {}
    rules, diagnostics = check_rules(RULES_DIR, env)
    assert rules is not None, [d.render() for d in diagnostics]
    assert set(rules.purposes) == {"analytics", "ads"}
    assert {"page_view", "product_view", "add_to_cart", "purchase"} <= set(
        rules.events.contracts
    )
    assert rules.events.contracts["purchase"].authority == "backend"
    results = await run_tests(rules)
    assert results and all(r.passed for r in results), [r.failures for r in results]


# -- pure parts ---------------------------------------------------------------------------


def test_the_documented_examples_hold() -> None:
    for module in (changes, standins_base, shop):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted and not result.failed, module.__name__


def test_describe_names_what_became_of_each_field() -> None:
    sent = {
        "event": "purchase",
        "event_id": "e1",
        "user": {"id": "C1", "email": "Ann@Example.com"},
        "context": {"ip": "127.0.0.1"},
        "properties": {"order_id": "O1", "currency": "EUR", "internal_note": "x", "gift": True},
        "correlation_id": COOKIE_VALUE,
    }
    browser = {
        "event": "purchase",
        "context": {"page": {"url": "http://shop.test/?fbclid=f1&utm_source=mail"},
                    "user_agent": "Mozilla/5.0 Chrome/126.0"},
    }
    view = {  # Meta's user_data and custom_data, read back
        "user.email": ("user_data.em", ANN_SHA256),
        "user.id": ("user_data.external_id", 64 * "b"),
        "context.ip": ("user_data.client_ip_address", "127.0.0.0"),
        "context.user_agent": ("user_data.client_user_agent", "Mozilla/5.0 Chrome/126.0"),
        "context.page.url": ("event_source_url", "http://shop.test/"),
        "context.click_ids.fbclid": ("user_data.fbc", "f1"),
        "properties.order_id": ("custom_data.order_id", "O1"),
        "properties.currency": ("custom_data.currency", "eur"),
    }
    enrich = ("context.page.url", "context.click_ids", "context.user_agent")
    merged = merged_from_browser(sent, browser, view, enrich)
    assert set(merged) == set(enrich)
    notes = describe(sent, view, merged, ["properties.internal_note"])
    assert notes == [
        "merged from the held browser copy: context.page.url, context.click_ids, "
        "context.user_agent",
        "IP truncated: 127.0.0.1 -> 127.0.0.0 (user_data.client_ip_address)",
        "user agent sent as is (user_data.client_user_agent)",
        "context.page.url cleaned: removed ?fbclid, ?utm_source (event_source_url)",
        "click id fbclid kept (user_data.fbc)",
        "user.email hashed: SHA-256 of the normalized value (user_data.em)",
        "user.id hashed: SHA-256 of the normalized value (user_data.external_id)",
        "dropped by the event's contract: properties.internal_note",
        "properties.currency: EUR -> eur (custom_data.currency)",
        "sent: order_id, currency (custom_data.order_id, custom_data.currency)",
        "not in this vendor's format: properties.gift",
    ]


def test_describe_an_envelope_names_no_vendor_field() -> None:
    sent = {"event": "page_view", "context": {"ip": "10.0.0.7", "user_agent": "UA/1",
                                              "page": {"url": "http://s.test/?gclid=g"}}}
    line = {"event": "page_view", "correlation_id": "abc",
            "context": {"ip": "10.0.0.0", "device": {"type": "desktop"},
                        "page": {"url": "http://s.test/"}}}
    assert describe(sent, envelope_view(line)) == [
        "IP truncated: 10.0.0.7 -> 10.0.0.0",
        "user agent replaced by the device: type=desktop",
        "context.page.url cleaned: removed ?gclid",
        "click id gclid not sent",
        "the visit's correlation id, the random id inside the relay's cookie (never the "
        "cookie), kept",
    ]
    assert describe({"event": "x"}, {}) == []


def test_parse_order_prices_from_the_catalog() -> None:
    order = parse_order(
        {"event_id": "purchase-O1", "order_id": "O1", "items": ["mug", "mug", "tee"],
         "email": "  ", "value": 0.01}
    )
    assert not isinstance(order, str)
    assert order.value == 49.0 and order.email is None
    assert [(p.id, n) for p, n in order.items] == [("mug", 2), ("tee", 1)]
    assert parse_order([]) == "expected a JSON object"
    assert "event_id" in str(parse_order({"event_id": "a b", "order_id": "O", "items": ["mug"]}))
    assert "unknown product" in str(parse_order({"event_id": "e", "order_id": "O",
                                                 "items": ["nope"]}))
    assert "items" in str(parse_order({"event_id": "e", "order_id": "O", "items": []}))


def test_parse_consent_keeps_known_purposes_and_states() -> None:
    purposes = ("analytics", "ads")
    assert parse_consent("analytics%3Agranted%7Cads%3Adenied", purposes) == {
        "analytics": "granted", "ads": "denied"}
    assert parse_consent("ads:maybe|other:granted", purposes) == {}
    assert parse_consent(None, purposes) == {}


def test_backend_event_is_what_the_relay_expects() -> None:
    order = parse_order({"event_id": "purchase-O9", "order_id": "O9", "items": ["stickers"],
                         "email": " Ann@Example.com "})
    assert not isinstance(order, str)
    event = backend_event(order, {"analytics": "granted"}, "cookie-value", "127.0.0.1")
    assert event == {
        "event": "purchase",
        "event_id": "purchase-O9",
        "consent": {"analytics": "granted"},
        "user": {"id": customer_id("ann@example.com"), "email": "Ann@Example.com"},
        "context": {"ip": "127.0.0.1"},
        "properties": {"order_id": "O9", "value": 4.5, "currency": "EUR",
                       "internal_note": INTERNAL_NOTE},
        "correlation_id": "cookie-value",
    }
    assert "consent" not in backend_event(order, {}, None, None)


async def test_tap_records_and_passes_the_body_on() -> None:
    seen: list[bytes] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        seen.append(message["body"])
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    recorder = Recorder()
    tap = Tap(inner, recorder, "/t", "browser")

    async def call(path: str, body: dict[str, Any], ua: bytes = b"UA/1") -> None:
        raw = orjson.dumps(body)
        messages = [{"type": "http.request", "body": raw, "more_body": False}]
        scope = {"type": "http", "method": "POST", "path": path, "client": ("10.1.2.3", 5),
                 "headers": [(b"content-type", b"text/plain"), (b"user-agent", ua)]}

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: Any) -> None:
            pass

        await tap(scope, receive, send)
        assert seen[-1] == raw

    await call("/t/e", {"batch": [{"event": "page_view", "event_id": "p1"}]})
    await call("/t/hook/backend", {"event": "purchase", "event_id": "o1",
                                   "correlation_id": "secret-cookie"})
    await call("/t/healthz", {"event": "ignored", "event_id": "i1"})
    [browser] = recorder.sent("p1")
    assert browser.source == "browser"
    assert browser.event["context"] == {"ip": "10.1.2.3", "user_agent": "UA/1"}
    [backend] = recorder.sent("o1")
    assert backend.source == "backend" and backend.event["correlation_id"] == COOKIE_VALUE
    assert recorder.sent("i1") == []


def test_cli_demo_subcommand() -> None:
    args = parser().parse_args(["demo", "--port", "9999", "--host", "0.0.0.0"])
    assert args.func is cmd_demo and args.port == 9999 and args.host == "0.0.0.0"
    defaults = parser().parse_args(["demo"])
    assert (defaults.host, defaults.port) == ("127.0.0.1", 8080)


# -- the demo app under hypercorn ---------------------------------------------------------

VENDORS = ("ga4", "posthog", "plausible", "meta", "tiktok")
ANALYTICS = ("ga4", "posthog", "plausible")
ADS = ("meta", "tiktok")
Got = dict[str, list[dict[str, Any]]]


@dataclass
class Running:
    app: Starlette
    base: str
    client: httpx.AsyncClient  # a "browser": keeps cookies

    async def data(self) -> dict[str, Any]:
        r = await self.client.get("/demo/vendors.json")
        assert r.status_code == 200
        body: dict[str, Any] = r.json()
        return body

    async def vendors(self) -> Got:
        return {v["name"]: v["received"] for v in (await self.data())["vendors"]}

    async def until(self, check: Callable[[Got], bool]) -> Got:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            got = await self.vendors()
            if check(got):
                return got
            if time.monotonic() > deadline:
                pytest.fail(f"the vendors never got what was expected: {names(got)}")
            await asyncio.sleep(0.1)

    async def track(self, event: dict[str, Any]) -> httpx.Response:
        event.setdefault("context", {"page": {"url": PAGE_URL}})
        return await self.client.post(
            "/t/e", content=orjson.dumps({"batch": [event]}),
            headers={"Content-Type": "text/plain"},
        )


def names(got: Got) -> dict[str, list[str | None]]:
    return {vendor: [e["event"] for e in events] for vendor, events in got.items()}


def ids(got: Got, vendor: str, event: str) -> list[str]:
    return [e["event_id"] for e in got[vendor] if e["event"] == event]


def one(got: Got, vendor: str, event: str) -> dict[str, Any]:
    [item] = [e for e in got[vendor] if e["event"] == event]
    return item


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Running]:
    port = free_port()
    app = create_demo_app(DemoConfig(tmp_path / "demo", port=port))
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1.0
    stop = asyncio.Event()
    asgi: Any = app
    server = asyncio.create_task(serve(asgi, config, shutdown_trigger=stop.wait))
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=10.0,
                                 headers={"User-Agent": CHROME}) as client:
        for _ in range(200):
            try:
                if (await client.get("/t/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                await asyncio.sleep(0.05)
        else:
            pytest.fail("the demo did not start")
        yield Running(app, base, client)
    stop.set()
    await asyncio.wait_for(server, 15)


async def test_pages_load(demo: Running) -> None:
    c = demo.client
    landing = await c.get("/")
    assert landing.status_code == 302 and landing.headers["location"] == "/?" + LANDING_QUERY
    shop_page = await c.get("/?" + LANDING_QUERY)
    assert shop_page.status_code == 200
    assert "relay.q=relay.q||[]" in shop_page.text
    assert '<script async src="/t/r.js">' in shop_page.text
    assert 'href="/demo/vendors"' in shop_page.text and 'href="/admin/debug"' in shop_page.text
    assert "{{" not in shop_page.text
    assert (await c.get("/t/r.js")).status_code == 200
    vendors_page = await c.get("/demo/vendors")
    assert vendors_page.status_code == 200 and "/demo/vendors.json" in vendors_page.text
    data = await demo.data()
    shown = {v["name"]: v for v in data["vendors"]}
    assert list(shown) == [*VENDORS, "archive"]
    assert {n: v["type"] for n, v in shown.items()} == {
        "ga4": "ga4", "posthog": "posthog", "plausible": "plausible", "meta": "meta_capi",
        "tiktok": "tiktok", "archive": "file"}
    for name in VENDORS:  # every vendor is on this port, so nothing leaves the machine
        assert shown[name]["target"] == f"{demo.base}/demo/vendors/{name}"
        assert shown[name]["purpose"] == ("ads" if name in ADS else "analytics")
    assert data["consent"] == {"vendors": [{"name": n, "purpose": shown[n]["purpose"]}
                                           for n in shown], "lines": []}
    assert (await c.get("/admin/debug")).status_code == 200
    async with c.stream("GET", "/admin/debug/stream") as stream:  # SSE on the same port
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert (await anext(stream.aiter_text())).startswith(":")
    ready = await c.get("/admin/readyz")
    assert ready.status_code == 200 and ready.json()["ready"]
    assert (await c.post("/demo/vendors/nobody/x", json={})).status_code == 404
    assert (await c.post("/demo/vendors/ga4/nope", json={})).status_code == 404


async def test_consent_releases_waiting_events_to_granted_vendors(demo: Running) -> None:
    r = await demo.track({"event": "page_view", "event_id": "pv-1"})
    assert r.status_code == 202 and "_rc" in demo.client.cookies
    await asyncio.sleep(0.5)
    assert names(await demo.vendors()) == {name: [] for name in (*VENDORS, "archive")}

    consent = {"event": "consent_update", "consent": {"analytics": "granted", "ads": "denied"}}
    assert (await demo.track(consent)).status_code == 202
    got = await demo.until(lambda g: all(ids(g, v, "page_view") == ["pv-1"] for v in ANALYTICS))
    ga4 = one(got, "ga4", "page_view")
    assert ga4["vendor_event"] == "page_view" and ga4["source"] == "browser"
    assert ga4["payload"]["ip_override"] == "127.0.0.0"
    assert ga4["payload"]["consent"] == {"ad_user_data": "DENIED", "ad_personalization": "DENIED"}
    params = ga4["payload"]["events"][0]["params"]
    assert params["page_location"] == "http://127.0.0.1/?" + LANDING_QUERY.split("&fbclid")[0]
    assert "api_secret=[settings.api_secret]" in ga4["request"]["url"]
    posthog = one(got, "posthog", "page_view")
    assert posthog["vendor_event"] == "$pageview"
    assert posthog["payload"]["properties"]["$current_url"] == "http://127.0.0.1/"
    assert "fbclid" not in posthog["payload"]["properties"]  # ads denied
    assert posthog["request"]["body"]["api_key"] == "[settings.api_key]"
    plausible = one(got, "plausible", "page_view")
    body = plausible["payload"]["body"]
    assert (body["name"], body["url"], body["domain"]) == (
        "pageview", "http://127.0.0.1/", "shop.example")
    assert plausible["payload"]["headers"] == {"X-Forwarded-For": "127.0.0.0"}  # no user agent
    for item in (ga4, posthog, plausible):
        assert item["problems"] == [] and item["choice"] == 1
        assert any(n.startswith("IP truncated: 127.0.0.1 -> 127.0.0.0") for n in item["notes"])
        assert "click id fbclid not sent" in item["notes"]
        assert item["sent"][0]["source"] == "browser"

    # Later events carry the remembered choice: analytics yes, ads no.
    await demo.track({"event": "add_to_cart", "event_id": "c-1",
                      "properties": {"product_id": "mug", "quantity": 1}})
    got = await demo.until(lambda g: all(ids(g, v, "add_to_cart") == ["c-1"] for v in ANALYTICS))
    await demo.until(lambda g: len(g["archive"]) == 2)
    assert all(got[v] == [] for v in ADS)
    lines = (await demo.data())["consent"]["lines"]
    shown = [(line["kind"], line.get("event"), line.get("n")) for line in lines]
    assert shown == [("event", "page_view", None), ("choice", None, 1),
                     ("event", "add_to_cart", None)]
    assert lines[1]["consent"] == {"analytics": "granted", "ads": "denied"}
    cells = {k: c["text"] for k, c in lines[0]["cells"].items()}
    assert cells["ga4"] == cells["archive"] == "sent after choice 1"
    assert cells["meta"].startswith("suppressed after choice 1 (ads:")
    cart = {k: c["text"] for k, c in lines[2]["cells"].items()}
    assert cart["posthog"] == "sent" and cart["tiktok"].startswith("suppressed (ads:")


async def _buy(demo: Running, event_id: str, *, browser_first: bool = True) -> dict[str, Any]:
    order = {"event_id": event_id, "order_id": event_id.removeprefix("purchase-"),
             "items": ["mug", "tee"], "email": " Ann@Example.com "}
    browser = {"event": "purchase", "event_id": event_id,
               "properties": {"order_id": order["order_id"], "value": 37.0, "currency": "EUR"}}
    if browser_first:
        assert (await demo.track(browser)).status_code == 202
    r = await demo.client.post("/demo/checkout", json=order)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    if not browser_first:
        assert (await demo.track(browser)).status_code == 202
    return body


async def _accept_all(demo: Running) -> None:
    demo.client.cookies.set("demo_consent", "analytics:granted|ads:granted")
    await demo.track({"event": "consent_update",
                      "consent": {"analytics": "granted", "ads": "granted"}})


@pytest.mark.parametrize("browser_first", [True, False], ids=["browser first", "backend first"])
async def test_checkout_delivers_the_purchase_once_per_vendor(
    demo: Running, browser_first: bool
) -> None:
    await _accept_all(demo)
    answer = await _buy(demo, "purchase-ORD-1", browser_first=browser_first)
    assert answer["relay_status"] == 202 and answer["relay_answer"]["accepted"] == 1
    assert answer["posted_to"] == demo.base + "/t/hook/backend"
    assert answer["sent"]["correlation_id"] == COOKIE_VALUE  # never the cookie itself
    assert answer["sent"]["consent"] == {"analytics": "granted", "ads": "granted"}
    customer = customer_id("ann@example.com")
    assert answer["sent"]["user"] == {"id": customer, "email": "Ann@Example.com"}
    # Meta takes website events only with the page URL and the user agent, Plausible only
    # with the page URL: the backend's copy has them only when the browser's copy came
    # first (merged from it).
    receivers = VENDORS if browser_first else tuple(v for v in VENDORS
                                                    if v not in ("meta", "plausible"))

    got = await demo.until(
        lambda g: all(ids(g, v, "purchase") for v in (*receivers, "archive")))
    await asyncio.sleep(1.0)  # a second delivery, if there were one, would arrive by now
    # The browser's copy again: a duplicate, never a second delivery.
    again = await demo.track({"event": "purchase", "event_id": "purchase-ORD-1",
                              "properties": {"order_id": "ORD-1", "value": 37.0,
                                             "currency": "EUR"}})
    assert again.json()["duplicates"] == 1
    await asyncio.sleep(0.5)
    got = await demo.vendors()
    for vendor in (*receivers, "archive"):
        assert ids(got, vendor, "purchase") == ["purchase-ORD-1"], names(got)
        item = one(got, vendor, "purchase")
        assert item["source"] == "backend" and item["problems"] == []
        assert "dropped by the event's contract: properties.internal_note" in item["notes"]
        assert "internal_note" not in str(item["payload"])
        assert "Ann@Example.com" not in str(item["payload"])
        assert {s["source"] for s in item["sent"]} == {"browser", "backend"}
        if browser_first:
            assert any(n.startswith("merged from the held browser copy") for n in item["notes"])
    customer_sha = hashlib.sha256(customer.encode()).hexdigest()
    ga4 = one(got, "ga4", "purchase")["payload"]
    assert ga4["user_id"] == customer
    assert ga4["user_data"] == {"sha256_email_address": [ANN_SHA256]}
    assert ga4["events"][0]["params"]["transaction_id"] == "ORD-1"
    posthog = one(got, "posthog", "purchase")["payload"]
    assert posthog["distinct_id"] == customer
    assert posthog["properties"]["$set"] == {"email_sha256": ANN_SHA256}
    tiktok = one(got, "tiktok", "purchase")["payload"]
    assert tiktok["user"]["email"] == [ANN_SHA256]
    # TikTok lowercases the id before hashing it; Meta keeps its case
    assert tiktok["user"]["external_id"] == [hashlib.sha256(customer.lower().encode()).hexdigest()]
    archive = one(got, "archive", "purchase")["payload"]
    assert archive["user"]["email"] == ANN_SHA256 and archive["context"]["ip"] == "127.0.0.0"
    lines = (await demo.data())["consent"]["lines"]
    purchases = [line for line in lines if line.get("event") == "purchase"]
    if browser_first:
        meta = one(got, "meta", "purchase")
        assert meta["payload"]["user_data"]["em"] == [ANN_SHA256]
        assert meta["payload"]["user_data"]["external_id"] == [customer_sha]
        assert meta["payload"]["user_data"]["fbc"].endswith(".demo-fbclid-42")
        assert meta["payload"]["custom_data"] == {"value": 37.0, "currency": "eur",
                                                  "order_id": "ORD-1"}
        assert "click id fbclid kept (user_data.fbc)" in meta["notes"]
        assert one(got, "plausible", "purchase")["payload"]["body"]["revenue"] == {
            "amount": 37.0, "currency": "EUR"}
        assert [p["status"] for p in purchases] == ["held", "accepted", "duplicate"]
        assert purchases[0]["cells"]["ga4"]["text"] == "held until the backend confirms"
        assert purchases[1]["cells"]["meta"]["text"] == "sent"
    else:
        assert got["meta"] == [] and got["plausible"] == []
        assert [p["status"] for p in purchases] == ["accepted", "duplicate", "duplicate"]
        assert purchases[0]["cells"]["meta"]["text"].startswith(
            "dropped: meta_capi: Meta requires context.user_agent and context.page.url")
        assert purchases[0]["cells"]["plausible"]["text"].startswith("dropped: ")
        assert "context.page.url" in purchases[0]["cells"]["plausible"]["text"]


async def test_the_landing_page_view_reaches_meta_with_its_click_id(demo: Running) -> None:
    """Accepting all releases the waiting landing page view with fbclid as Meta's fbc."""
    assert (await demo.track({"event": "page_view", "event_id": "pv-9"})).status_code == 202
    await _accept_all(demo)
    got = await demo.until(lambda g: all(ids(g, v, "page_view") for v in VENDORS))
    meta = one(got, "meta", "page_view")
    user = meta["payload"]["user_data"]
    assert meta["vendor_event"] == "PageView" and meta["payload"]["event_id"] == "pv-9"
    assert user["fbc"].startswith("fb.1.") and user["fbc"].endswith(".demo-fbclid-42")
    assert user["client_user_agent"] == CHROME and user["client_ip_address"] == "127.0.0.0"
    assert meta["payload"]["event_source_url"] == "http://127.0.0.1/"
    assert meta["request"]["body"]["access_token"] == "[settings.access_token]"
    assert "user agent sent as is (user_data.client_user_agent)" in meta["notes"]
    tiktok = one(got, "tiktok", "page_view")
    assert tiktok["vendor_event"] == "Pageview"
    assert tiktok["request"]["headers"]["access-token"] == "[settings.access_token]"
    assert one(got, "posthog", "page_view")["payload"]["properties"]["fbclid"] == (
        "demo-fbclid-42")


async def test_every_request_speaks_the_vendors_wire_format(demo: Running) -> None:
    """Every request a demo stand-in took is also taken, with no problem, by the end-to-end
    stand-in of that vendor (tests/e2e/standins), and the page never shows a secret."""
    await demo.track({"event": "page_view", "event_id": "pv-w"})
    await _accept_all(demo)
    await demo.track({"event": "product_view", "event_id": "p-w",
                      "properties": {"product_id": "mug", "name": "Relay mug", "price": 12.0,
                                     "currency": "EUR"}})
    await demo.track({"event": "add_to_cart", "event_id": "a-w",
                      "properties": {"product_id": "mug", "quantity": 1, "price": 12.0,
                                     "currency": "EUR"}})
    await _buy(demo, "purchase-ORD-W")
    await demo.until(lambda g: all(len(g[v]) == 4 for v in VENDORS))
    state: Demo = demo.app.state.demo
    checked = 0
    for vendor in state.vendors:
        if vendor.standin is None:
            continue
        truth = oracle(vendor.type, state.rules.destinations[vendor.destination].settings)
        try:
            for delivery in state.inbox.deliveries(vendor.name):
                assert delivery.took.problems == []
                status, problems = oracle_problems(truth, delivery.call)
                assert problems == [], (vendor.name, problems)
                assert status == delivery.took.answer.status, vendor.name
                checked += 1
        finally:
            truth.close()
    assert checked >= len(VENDORS)
    text = (await demo.client.get("/demo/vendors.json")).text
    secrets = [v for k, v in state.env.items() if k.endswith(("SECRET", "TOKEN", "KEY"))]
    assert len(secrets) == 6
    for value in [*secrets, demo.client.cookies["_rc"]]:
        assert value not in text


async def test_checkout_signs_what_it_posts(demo: Running) -> None:
    """The backend's post verifies with the source's secret (the relay's own check)."""
    runtime = demo.app.state.demo.runtime
    source = runtime.rules.sources["backend"]
    captured: list[httpx.Request] = []
    client = demo.app.state.demo.client()
    client.event_hooks["request"].append(lambda req: _capture(captured, req))
    await _buy(demo, "purchase-ORD-2")
    [request] = captured
    assert verify(source.auth.secrets, request.headers["x-relay-signature"], request.content,
                  time.time(), 60)
    assert orjson.loads(request.content)["correlation_id"] == demo.client.cookies["_rc"]


async def _capture(captured: list[httpx.Request], request: httpx.Request) -> None:
    captured.append(request)


async def test_checkout_rejects_a_bad_order(demo: Running) -> None:
    r = await demo.client.post("/demo/checkout", json={"event_id": "e", "order_id": "O",
                                                       "items": ["nope"]})
    assert r.status_code == 400 and "unknown product" in r.json()["error"]
    r = await demo.client.post("/demo/checkout", content=b"{", headers={
        "Content-Type": "application/json"})
    assert r.status_code == 400


# -- the command ----------------------------------------------------------------------------


def test_relay_demo_command_serves_and_cleans_up(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay", "demo", "--port", str(port)],
        env=relay_env(), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 20
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as c:
            while True:
                try:
                    if c.get("/t/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, "relay demo exited early"
                assert time.monotonic() < deadline, "relay demo did not start"
                time.sleep(0.1)
            assert c.get("/", follow_redirects=True).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert f"http://127.0.0.1:{port}/demo/vendors" in err
    workdir = next(line.split()[2] for line in err.splitlines() if "spool, var" in line)
    assert not os.path.exists(workdir), "the temp directory is removed on exit"
