"""The demo in headless Chromium: ``relay demo`` as a user runs it, clicked through.

Accept analytics, deny ads, view a product, add it to the cart, buy. Each analytics vendor
(GA4, PostHog, Plausible, in their own formats) gets each event once (the purchase once,
though the browser and the backend both sent it); the ads vendors (Meta, TikTok) get
nothing; the vendors page and the debug view show it.

And the landing page view, which waits at the relay until the banner is answered: "Accept
all" releases it to every vendor, Meta getting its ``fbclid`` as its own ``fbc``; accepting
analytics alone releases it without, and the ads copies wait on until ads is decided.
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
ANALYTICS = ("ga4", "posthog", "plausible")
ADS = ("meta", "tiktok")
EVERY = (*ANALYTICS, *ADS, "archive")


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
    assert "fbclid=" in page.url  # the landing URL "from an ad"
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
        wait_for(demo_url, lambda g: all(want <= set(tally(g[v])) for v in ANALYTICS))
        time.sleep(SETTLE_SECONDS)
        got = vendors(demo_url)
        for name in (*ANALYTICS, "archive"):
            assert tally(got[name]) == dict.fromkeys(want, 1), (name, tally(got[name]))
        for name in ADS:
            assert got[name] == [], name

        for name in (*ANALYTICS, "archive"):
            [purchase] = [e for e in got[name] if e["event"] == "purchase"]
            assert purchase["event_id"] == event_id
            assert purchase["source"] == "backend"  # the authoritative copy
            assert purchase["problems"] == []
            # Both copies reached the relay; one delivery went out.
            assert {s["source"] for s in purchase["sent"]} == {"browser", "backend"}
            assert "fbclid" not in str(purchase["payload"])  # ads denied
        ga4 = {e["event"]: e["payload"] for e in got["ga4"]}
        # Google takes user data only with ad consent: the relay says why it is not sent.
        assert "user_data" not in ga4["purchase"]
        [ga4_purchase] = [e for e in got["ga4"] if e["event"] == "purchase"]
        assert "user_data not sent: no 'ads' consent" in ga4_purchase["relay_notes"]
        assert ga4["page_view"]["ip_override"] == "127.0.0.0"
        assert ga4["page_view"]["consent"]["ad_user_data"] == "DENIED"
        page_location = ga4["page_view"]["events"][0]["params"]["page_location"]
        assert "utm_source=newsletter" in page_location and "fbclid" not in page_location
        posthog = {e["event"]: e["payload"] for e in got["posthog"]}
        assert len(posthog["purchase"]["properties"]["$set"]["email_sha256"]) == 64  # hashed
        assert posthog["page_view"]["event"] == "$pageview"
        plausible = {e["event"]: e["payload"] for e in got["plausible"]}
        assert plausible["page_view"]["body"]["name"] == "pageview"
        assert "User-Agent" not in plausible["page_view"].get("headers", {})
        [page_view] = [e for e in got["ga4"] if e["event"] == "page_view"]
        notes = " | ".join(page_view["notes"])
        assert "IP truncated: 127.0.0.1 -> 127.0.0.0 (ip_override)" in notes, notes
        assert "removed ?fbclid" in notes, notes

        # The vendors page shows the same, for a person.
        page.goto(demo_url + "/demo/vendors")
        page.wait_for_selector("[data-vendor=ga4] [data-event=purchase]")
        for name in ANALYTICS:
            assert page.locator(f"[data-vendor={name}] [data-event=purchase]").count() == 1
            assert page.locator(f"[data-vendor={name}] [data-event=page_view]").count() == 1
        for name in ADS:
            assert page.locator(f"[data-vendor={name}] [data-event]").count() == 0
            assert "nothing received" in (page.text_content(f"[data-vendor={name}]") or "")
        assert "IP truncated" in (page.text_content("[data-vendor=ga4]") or "")
        assert page.locator("[data-vendor=meta] [data-vendor-event]").count() == 0
        landing = page.locator("#decisions tr[data-row-event=page_view]")
        assert landing.count() == 1
        # Choice 1 (analytics granted) released it to analytics; choice 2 (ads denied)
        # suppressed the ads copies that waited on.
        assert landing.locator("[data-cell=ga4]").text_content() == "sent after choice 1"
        meta = landing.locator("[data-cell=meta]")
        assert meta.get_attribute("data-outcome") == "suppressed"
        assert (meta.text_content() or "").startswith("suppressed after choice 2")
        assert page.locator("#decisions tr[data-choice]").count() == 2

        # And the relay's live debug view is on the same port.
        response = page.goto(demo_url + "/admin/debug")
        assert response is not None and response.ok
        assert errors == []
    finally:
        context.close()


def pending(base: str) -> dict[str, float]:
    """relay_consent_pending per destination, from the demo's admin metrics."""
    text = httpx.get(base + "/admin/metrics", trust_env=False).text
    return {dest: metric(text, "relay_consent_pending", destination=dest) for dest in EVERY}


def landing_page(page: Page, base: str) -> str:
    """Open the shop from an ad and wait until its page view waits at the relay; returns
    the landing URL's fbclid."""
    page.goto(base + "/")
    fbclid = parse_qs(urlparse(page.url).query)["fbclid"][0]
    page.wait_for_function("window.relay && window.relay.loaded === true")
    deadline = time.monotonic() + WAIT_SECONDS
    while pending(base) != dict.fromkeys(EVERY, 1):
        if time.monotonic() > deadline:
            pytest.fail(f"the landing page view never waited for consent: {pending(base)}")
        time.sleep(0.1)
    time.sleep(SETTLE_SECONDS)
    assert all(got == [] for got in vendors(base).values()), "sent before the banner"
    return fbclid


def test_accept_all_releases_the_landing_page_view_with_its_click_id(
        chromium: Browser, demo_url: str) -> None:
    context = chromium.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        fbclid = landing_page(page, demo_url)
        page.click("#accept-all")
        got = wait_for(demo_url, lambda g: all(tally(g[v]) == {"page_view": 1} for v in EVERY))
        # The ads vendor gets the click id in its own format: Meta's fbc.
        [meta] = got["meta"]
        assert meta["vendor_event"] == "PageView" and meta["problems"] == []
        fbc = meta["payload"]["user_data"]["fbc"]
        assert fbc.startswith("fb.1.") and fbc.endswith("." + fbclid), fbc
        assert "fbclid" not in meta["payload"]["event_source_url"]  # the URL stays clean
        assert "click id fbclid kept (user_data.fbc)" in meta["notes"]
        [tiktok] = got["tiktok"]
        assert tiktok["vendor_event"] == "Pageview" and tiktok["problems"] == []
        [posthog] = got["posthog"]
        assert posthog["payload"]["properties"]["fbclid"] == fbclid
        [ga4] = got["ga4"]
        assert ga4["payload"]["consent"] == {"ad_user_data": "GRANTED",
                                             "ad_personalization": "GRANTED"}
        [archived] = got["archive"]
        assert archived["payload"]["context"]["click_ids"] == {"fbclid": fbclid}
        assert archived["payload"]["consent"] == {"analytics": "granted", "ads": "granted"}
        for name in EVERY:
            assert fbclid not in str(got[name][0]["payload"].get("context", {}).get("page"))
        assert pending(demo_url) == dict.fromkeys(EVERY, 0)
        time.sleep(SETTLE_SECONDS)
        assert {k: tally(v) for k, v in vendors(demo_url).items()} == {
            name: {"page_view": 1} for name in EVERY}
    finally:
        context.close()


def test_accepting_analytics_only_releases_it_without_its_click_id(
        chromium: Browser, demo_url: str) -> None:
    context = chromium.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        fbclid = landing_page(page, demo_url)
        page.click("#analytics-accept")
        got = wait_for(demo_url, lambda g: all(tally(g[v]) == {"page_view": 1}
                                               for v in (*ANALYTICS, "archive")))
        for name in (*ANALYTICS, "archive"):
            [view] = got[name]
            assert fbclid not in str(view["payload"]), name
            assert view["problems"] == []
        assert got["archive"][0]["payload"]["consent"] == {"analytics": "granted"}
        # Ads is still undecided: its copies keep waiting, then the denial drops them.
        assert pending(demo_url) == {**dict.fromkeys(EVERY, 0), "meta": 1, "tiktok": 1}
        page.click("#ads-deny")
        deadline = time.monotonic() + WAIT_SECONDS
        while any(pending(demo_url)[name] for name in ADS):
            assert time.monotonic() < deadline, "the denial did not end the ads copies' wait"
            time.sleep(0.1)
        time.sleep(SETTLE_SECONDS)
        got = vendors(demo_url)
        assert got["meta"] == [] and got["tiktok"] == []
    finally:
        context.close()
