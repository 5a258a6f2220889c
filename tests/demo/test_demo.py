"""``relay demo``: its rules, its pure parts, and the whole app served by hypercorn on a free
port (the relay delivers to the stand-in vendors over loopback, as in ``relay demo``)."""

from __future__ import annotations

import asyncio
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
from relay.demo.app import create_demo_app
from relay.demo.changes import COOKIE_VALUE, describe, merged_from_browser
from relay.demo.context import RULES_DIR, DemoConfig, demo_env
from relay.demo.record import Recorder, Tap
from relay.demo.shop import (
    INTERNAL_NOTE,
    LANDING_QUERY,
    backend_event,
    parse_consent,
    parse_order,
)
from relay.registry import check_rules
from relay.signature import verify
from relay.testing import run_tests
from tests.e2e.relayproc import free_port, relay_env

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


def test_describe_names_what_the_relay_changed() -> None:
    sent = {
        "event": "purchase",
        "event_id": "e1",
        "user": {"email": "Ann@Example.com"},
        "context": {"ip": "127.0.0.1"},
        "properties": {"order_id": "O1", "internal_note": "x"},
        "correlation_id": COOKIE_VALUE,
    }
    browser = {
        "event": "purchase",
        "context": {"page": {"url": "http://shop.test/?gclid=g1&utm_source=mail"},
                    "user_agent": "Mozilla/5.0 Chrome/126.0"},
    }
    received = {
        "event": "purchase",
        "event_id": "e1",
        "source": "backend",
        "user": {"email": ANN_SHA256},
        "context": {"ip": "127.0.0.0", "page": {"url": "http://shop.test/"},
                    "device": {"type": "desktop", "browser": "Chrome"},
                    "click_ids": {"gclid": "g1"}},
        "properties": {"order_id": "O1"},
        "correlation_id": "abc",
    }
    enrich = ("context.page.url", "context.click_ids", "context.user_agent")
    merged = merged_from_browser(sent, browser, received, enrich)
    assert set(merged) == {"context.page.url", "context.user_agent"}
    notes = describe(sent, received, merged)
    text = "\n".join(notes)
    assert "merged from the held browser copy: context.page.url, context.user_agent" in text
    assert "user.email hashed" in text
    assert "IP truncated: 127.0.0.1 -> 127.0.0.0" in text
    assert "removed ?gclid, ?utm_source" in text
    assert "user agent generalized to the device (type=desktop, browser=Chrome)" in text
    assert "dropped by the event's contract: properties.internal_note" in text
    assert "click ids taken from the page URL and kept: gclid" in text
    assert "correlation_id: the cookie value was verified" in text
    assert "added by the relay: source" in text


def test_describe_click_ids_removed_and_nothing_changed() -> None:
    sent = {"event": "page_view", "context": {"click_ids": {"gclid": "g", "fbclid": "f"}}}
    assert describe(sent, {"event": "page_view"}) == ["click ids removed: gclid, fbclid"]
    assert describe({"event": "x"}, {"event": "x"}) == []


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
        "user": {"email": "Ann@Example.com"},
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


@dataclass
class Running:
    app: Starlette
    base: str
    client: httpx.AsyncClient  # a "browser": keeps cookies

    async def vendors(self) -> dict[str, list[dict[str, Any]]]:
        r = await self.client.get("/demo/vendors.json")
        assert r.status_code == 200
        return {v["name"]: v["received"] for v in r.json()["vendors"]}

    async def until(
        self, check: Callable[[dict[str, list[dict[str, Any]]]], bool]
    ) -> dict[str, list[dict[str, Any]]]:
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


def names(got: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    return {vendor: [e["event"] for e in events] for vendor, events in got.items()}


def ids(got: dict[str, list[dict[str, Any]]], vendor: str, event: str) -> list[str]:
    return [e["event_id"] for e in got[vendor] if e["event"] == event]


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
    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=10.0) as client:
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
    shop = await c.get("/?" + LANDING_QUERY)
    assert shop.status_code == 200
    assert "relay.q=relay.q||[]" in shop.text and '<script async src="/t/r.js">' in shop.text
    assert 'href="/demo/vendors"' in shop.text and 'href="/admin/debug"' in shop.text
    assert "{{" not in shop.text
    assert (await c.get("/t/r.js")).status_code == 200
    vendors_page = await c.get("/demo/vendors")
    assert vendors_page.status_code == 200 and "/demo/vendors.json" in vendors_page.text
    assert set(await demo.vendors()) == {"analytics", "ads", "archive"}
    assert (await c.get("/admin/debug")).status_code == 200
    async with c.stream("GET", "/admin/debug/stream") as stream:  # SSE on the same port
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert (await anext(stream.aiter_text())).startswith(":")
    ready = await c.get("/admin/readyz")
    assert ready.status_code == 200 and ready.json()["ready"]
    assert (await c.post("/demo/vendors/nobody", json={})).status_code == 404


async def test_consent_releases_waiting_events_to_granted_vendors(demo: Running) -> None:
    r = await demo.track({"event": "page_view", "event_id": "pv-1"})
    assert r.status_code == 202 and "_rc" in demo.client.cookies
    await asyncio.sleep(0.5)
    assert names(await demo.vendors()) == {"analytics": [], "ads": [], "archive": []}

    consent = {"event": "consent_update", "consent": {"analytics": "granted", "ads": "denied"}}
    assert (await demo.track(consent)).status_code == 202
    got = await demo.until(lambda g: ids(g, "analytics", "page_view") == ["pv-1"])
    [pv] = got["analytics"]
    assert pv["received"]["context"]["ip"] == "127.0.0.0"
    assert pv["received"]["context"]["page"]["url"] == "http://127.0.0.1/"
    assert "click_ids" not in pv["received"]["context"]
    assert any(c.startswith("IP truncated") for c in pv["changes"])
    assert any("?gclid" in c for c in pv["changes"])
    assert pv["sent"][0]["source"] == "browser"

    # Later events carry the remembered choice: analytics yes, ads no.
    await demo.track({"event": "add_to_cart", "event_id": "c-1",
                      "properties": {"product_id": "mug", "quantity": 1}})
    got = await demo.until(lambda g: ids(g, "analytics", "add_to_cart") == ["c-1"])
    await demo.until(lambda g: len(g["archive"]) == 2)
    assert got["ads"] == []


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


@pytest.mark.parametrize("browser_first", [True, False], ids=["browser first", "backend first"])
async def test_checkout_delivers_the_purchase_once_per_vendor(
    demo: Running, browser_first: bool
) -> None:
    demo.client.cookies.set("demo_consent", "analytics:granted|ads:granted")
    await demo.track({"event": "consent_update",
                      "consent": {"analytics": "granted", "ads": "granted"}})
    answer = await _buy(demo, "purchase-ORD-1", browser_first=browser_first)
    assert answer["relay_status"] == 202 and answer["relay_answer"]["accepted"] == 1
    assert answer["posted_to"] == demo.base + "/t/hook/backend"
    assert answer["sent"]["correlation_id"] == COOKIE_VALUE  # never the cookie itself
    assert answer["sent"]["consent"] == {"analytics": "granted", "ads": "granted"}

    got = await demo.until(
        lambda g: all(ids(g, v, "purchase") for v in ("analytics", "ads", "archive"))
    )
    await asyncio.sleep(1.0)  # a second delivery, if there were one, would arrive by now
    # The browser's copy again: a duplicate, never a second delivery.
    again = await demo.track({"event": "purchase", "event_id": "purchase-ORD-1",
                              "properties": {"order_id": "ORD-1", "value": 37.0,
                                             "currency": "EUR"}})
    assert again.json()["duplicates"] == 1
    await asyncio.sleep(0.5)
    got = await demo.vendors()
    for vendor in ("analytics", "ads", "archive"):
        assert ids(got, vendor, "purchase") == ["purchase-ORD-1"], names(got)
        [purchase] = [e for e in got[vendor] if e["event"] == "purchase"]
        sent = purchase["received"]
        assert sent["source"] == "backend"
        assert sent["user"]["email"] == ANN_SHA256
        assert sent["properties"] == {"order_id": "ORD-1", "value": 37.0, "currency": "EUR"}
        assert sent["context"]["ip"] == "127.0.0.0"
        assert "correlation_id" in sent  # the relay verified the echoed cookie
        assert any("internal_note" in c for c in purchase["changes"])
        if browser_first:  # merged from the held browser copy
            assert sent["context"]["page"]["url"] == "http://127.0.0.1/"
            assert any(c.startswith("merged from the held browser copy") for c in
                       purchase["changes"])
    if browser_first:  # ads is granted: the click id merged from the browser copy stays
        ads = next(e for e in got["ads"] if e["event"] == "purchase")["received"]
        assert ads["context"]["click_ids"] == {"gclid": "demo-gclid-42"}


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
