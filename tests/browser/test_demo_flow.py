"""The demo in headless Chromium: ``relay demo`` as a user runs it, clicked through.

Accept analytics, deny ads, view a product, add it to the cart, buy. The analytics vendor
gets each event once (the purchase once, though the browser and the backend both sent it);
the ads vendor gets nothing; the vendors page and the debug view show it.

And the landing page view, which waits at the relay until the banner is answered: "Accept
all" releases it to every vendor with its ``gclid``; accepting analytics alone releases it
without, and the ads copy waits on until ads is decided.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from playwright.sync_api import Browser, Page

from ..e2e.relayproc import free_port, relay_env
from ..e2e.wire import metric
from .conftest import TIMEOUT_MS

START_SECONDS = 20.0
WAIT_SECONDS = 15.0
SETTLE_SECONDS = 1.5  # a duplicate delivery, if there were one, would have arrived by then

Vendors = dict[str, list[dict[str, Any]]]


@pytest.fixture
def demo_url(tmp_path: Path) -> Iterator[str]:
    """``relay demo`` on a free port, stopped with Ctrl-C (SIGINT) at teardown."""
    port = free_port()
    log = tmp_path / "demo.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "relay", "demo", "--port", str(port)],
            env=relay_env(), cwd=tmp_path, stdout=err, stderr=err,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                if httpx.get(base + "/t/healthz", trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"relay demo did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def vendors(base: str) -> Vendors:
    data = httpx.get(base + "/demo/vendors.json", trust_env=False).json()
    return {v["name"]: v["received"] for v in data["vendors"]}


def wait_for(base: str, check: Callable[[Vendors], bool]) -> Vendors:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        got = vendors(base)
        if check(got):
            return got
        if time.monotonic() > deadline:
            summary = {k: [e["event"] for e in v] for k, v in got.items()}
            pytest.fail(f"the stand-in vendors never got what was expected: {summary}")
        time.sleep(0.2)


def tally(events: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in events:
        out[e["event"]] = out.get(e["event"], 0) + 1
    return out


def shop_flow(page: Page, base: str) -> str:
    """Click through the shop; returns the purchase's event_id."""
    page.goto(base + "/")
    assert "gclid=" in page.url  # the landing URL "from an ad"
    page.wait_for_function("window.relay && window.relay.loaded === true")
    page.click("#analytics-accept")
    page.click("#ads-deny")
    assert page.text_content("#state-analytics") == "granted"
    assert page.text_content("#state-ads") == "denied"
    page.click("#view-mug")
    page.click("#add-mug")
    page.click("#checkout")
    page.wait_for_selector("#result[data-status=done]")
    result = page.text_content("#result") or ""
    assert "HTTP 202" in result, result
    order_id = result.split("Order ", 1)[1].split(" ", 1)[0]
    return "purchase-" + order_id


def test_demo_purchase_reaches_each_granted_vendor_once(chromium: Browser, demo_url: str) -> None:
    context = chromium.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        event_id = shop_flow(page, demo_url)

        want = {"page_view", "product_view", "add_to_cart", "purchase"}
        wait_for(demo_url, lambda g: want <= set(tally(g["analytics"])))
        time.sleep(SETTLE_SECONDS)
        got = vendors(demo_url)
        assert tally(got["analytics"]) == dict.fromkeys(want, 1), tally(got["analytics"])
        assert got["ads"] == []
        assert tally(got["archive"]) == dict.fromkeys(want, 1)

        for name in ("analytics", "archive"):
            [purchase] = [e for e in got[name] if e["event"] == "purchase"]
            assert purchase["event_id"] == event_id
            assert purchase["source"] == "backend"  # the authoritative copy
            assert purchase["received"]["properties"]["value"] == 12.0
            # Both copies reached the relay; one delivery went out.
            assert {s["source"] for s in purchase["sent"]} == {"browser", "backend"}
            assert len(purchase["received"]["user"]["email"]) == 64  # hashed
            assert "click_ids" not in purchase["received"]["context"]  # ads denied
        [page_view] = [e for e in got["analytics"] if e["event"] == "page_view"]
        assert page_view["received"]["context"]["ip"] == "127.0.0.0"
        assert "gclid" not in page_view["received"]["context"]["page"]["url"]
        changes = " | ".join(page_view["changes"])
        assert "IP truncated" in changes and "?gclid" in changes, changes

        # The vendors page shows the same, for a person.
        page.goto(demo_url + "/demo/vendors")
        page.wait_for_selector("[data-vendor=analytics] [data-event=purchase]")
        assert page.locator("[data-vendor=analytics] [data-event=purchase]").count() == 1
        assert page.locator("[data-vendor=analytics] [data-event=page_view]").count() == 1
        assert page.locator("[data-vendor=ads] [data-event]").count() == 0
        assert "nothing received" in (page.text_content("[data-vendor=ads]") or "")
        assert "IP truncated" in (page.text_content("[data-vendor=analytics]") or "")

        # And the relay's live debug view is on the same port.
        response = page.goto(demo_url + "/admin/debug")
        assert response is not None and response.ok
        assert errors == []
    finally:
        context.close()


def pending(base: str) -> dict[str, float]:
    """relay_consent_pending per destination, from the demo's admin metrics."""
    text = httpx.get(base + "/admin/metrics", trust_env=False).text
    return {dest: metric(text, "relay_consent_pending", destination=dest)
            for dest in ("analytics_vendor", "ads_vendor", "archive")}


def landing_page(page: Page, base: str) -> str:
    """Open the shop from an ad and wait until its page view waits at the relay; returns
    the landing URL's gclid."""
    page.goto(base + "/")
    gclid = parse_qs(urlparse(page.url).query)["gclid"][0]
    page.wait_for_function("window.relay && window.relay.loaded === true")
    deadline = time.monotonic() + WAIT_SECONDS
    while pending(base) != {"analytics_vendor": 1, "ads_vendor": 1, "archive": 1}:
        if time.monotonic() > deadline:
            pytest.fail(f"the landing page view never waited for consent: {pending(base)}")
        time.sleep(0.1)
    time.sleep(SETTLE_SECONDS)
    assert all(got == [] for got in vendors(base).values()), "sent before the banner"
    return gclid


def test_accept_all_releases_the_landing_page_view_with_its_click_id(
        chromium: Browser, demo_url: str) -> None:
    context = chromium.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        gclid = landing_page(page, demo_url)
        page.click("#accept-all")
        got = wait_for(demo_url, lambda g: all(tally(g[v]) == {"page_view": 1}
                                               for v in ("analytics", "ads", "archive")))
        for name in ("analytics", "ads", "archive"):
            [view] = got[name]
            received = view["received"]
            assert received["context"]["click_ids"] == {"gclid": gclid}, name
            assert received["consent"] == {"analytics": "granted", "ads": "granted"}
            assert "gclid" not in received["context"]["page"]["url"]  # the URL stays clean
        assert pending(demo_url) == {"analytics_vendor": 0, "ads_vendor": 0, "archive": 0}
        time.sleep(SETTLE_SECONDS)
        assert {k: tally(v) for k, v in vendors(demo_url).items()} == {
            "analytics": {"page_view": 1}, "ads": {"page_view": 1}, "archive": {"page_view": 1}}
    finally:
        context.close()


def test_accepting_analytics_only_releases_it_without_its_click_id(
        chromium: Browser, demo_url: str) -> None:
    context = chromium.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        gclid = landing_page(page, demo_url)
        page.click("#analytics-accept")
        got = wait_for(demo_url, lambda g: all(tally(g[v]) == {"page_view": 1}
                                               for v in ("analytics", "archive")))
        for name in ("analytics", "archive"):
            [view] = got[name]
            received = view["received"]
            assert "click_ids" not in received["context"], name
            assert gclid not in str(received)
            assert received["consent"] == {"analytics": "granted"}
        # Ads is still undecided: its copy keeps waiting, then the denial drops it.
        assert pending(demo_url) == {"analytics_vendor": 0, "ads_vendor": 1, "archive": 0}
        page.click("#ads-deny")
        deadline = time.monotonic() + WAIT_SECONDS
        while pending(demo_url)["ads_vendor"] != 0:
            assert time.monotonic() < deadline, "the denial did not end the ads copy's wait"
            time.sleep(0.1)
        time.sleep(SETTLE_SECONDS)
        assert vendors(demo_url)["ads"] == []
    finally:
        context.close()
