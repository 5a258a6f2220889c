"""The debug view's walkthrough, shared by its browser tests and by the script that takes the
README's screenshots (``python -m tests.browser.debugview docs/img``).

A tag manager user's own browser (US, address ``MY_IP`` by ``X-Forwarded-For``) on a shop page
of the test site, the shop's backend, and another visitor from the EU, all against a real
``relay serve`` with the browser stack's two stand-in vendors (``analytics``, ``ads``) and the
shipped ``archive``. The ``ads`` vendor answers its first request with a 503 (its body quotes
an email and an address, which the view must mask), then 200.
"""

from __future__ import annotations

import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from ..e2e.relayproc import RelayProcess
from ..e2e.rulesdir import make_rules, webhook
from ..e2e.vendor import Answer, StandInVendor
from ..e2e.wire import client, post_backend, wait_until
from .conftest import CHROMIUM
from .site import Site, page_html, ready

WAIT = 15.0
MY_IP = "198.51.100.23"
OTHER_IP = "203.0.113.77"
EMAIL = "Ann.Lee@Example.com"
BACKEND_EMAIL = "ann.lee@example.com"
GCLID = "TeSt-gclid-7"
ORDER = "ord-dbg-1"
VENDOR_BUSY = b'{"error":"busy: ann.lee@example.com from 203.0.113.9, try again"}'
XSS_NAME = '<img src=x onerror="document.title=\'pwned\'">'
# Trust one proxy hop: the test site forwards the browser's X-Forwarded-For as it is.
RELAY: dict[str, Any] = {"client_ip": {"header": "X-Forwarded-For", "trusted_hops": 1}}
SHOP_QUERY = f"utm_source=newsletter&utm_medium=email&gclid={GCLID}"


@dataclass
class Walk:
    """What the walkthrough started: the relay and site, the user's browser context with
    the shop page, and the event ids sent."""

    relay: RelayProcess
    site: Site
    analytics: StandInVendor
    ads: StandInVendor
    ctx: BrowserContext
    shop: Page
    page_view: str = ""
    rejected: str = "evt-dbg-rejected"

    @property
    def cookie(self) -> str:
        return next(c["value"] for c in self.ctx.cookies() if c["name"] == "_rc")


def busy_then_ok(n: int, t: float) -> Answer:
    return Answer(503, body=VENDOR_BUSY) if n == 0 else Answer()


def vendors() -> tuple[StandInVendor, StandInVendor, dict[str, Any]]:
    analytics, ads = StandInVendor(name="analytics"), StandInVendor(name="ads")
    destinations = {"analytics": webhook(analytics, purpose="analytics"),
                    "ads": webhook(ads, purpose="ads")}
    return analytics, ads, destinations


def my_browser(browser: Browser, site: Site, **options: Any) -> tuple[BrowserContext, Page]:
    """The user's browser on the shop page (automatic page views off, so each event is the
    walkthrough's), holding the relay's cookie once a first event was answered."""
    headers = {"X-Forwarded-For": MY_IP, "CF-IPCountry": "US"}
    ctx = browser.new_context(extra_http_headers=headers, **options)
    ctx.set_default_timeout(15_000)
    url = site.add("shop.html", page_html(script_attrs='data-auto="off"', title="Shop"))
    shop = ctx.new_page()
    shop.goto(f"{url}?{SHOP_QUERY}")
    ready(shop)
    shop.evaluate("relay('track', 'signup', {plan: 'pro'})")
    wait_until(lambda: any(c["name"] == "_rc" for c in ctx.cookies()), WAIT, "the relay cookie")
    return ctx, shop


def open_debug(ctx: BrowserContext, relay: RelayProcess, query: str = "") -> Page:
    """The debug view in a new tab of ``ctx``, once its stream is live."""
    page = ctx.new_page()
    page.goto(relay.admin_url("/debug") + (f"?{query}" if query else ""))
    page.wait_for_selector("#status[data-state=live]")
    return page


def rows(page: Page, name: str | None = None) -> int:
    """How many rows the list shows (of event ``name``)."""
    selector = "#list > li:not([hidden])" + (f'[data-event="{name}"]' if name else "")
    return page.locator(selector).count()


def wait_rows(page: Page, n: int, name: str | None = None) -> None:
    wait_until(lambda: rows(page, name) >= n, WAIT, f"{n} row(s) of {name or 'any event'}")


def send_mine(w: Walk) -> None:
    """From the user's browser: a page view with an email (the URL has a gclid and UTM
    parameters), a purchase (held for the backend), an event without a contract and one whose
    name is markup (both rejected); then the backend's purchase, and again (a duplicate).
    The ads vendor answers its next request (the page view's) with a 503."""
    wait_until(lambda: w.ads.delivered(), WAIT, "the first event at the ads vendor")
    w.ads.set_plan(busy_then_ok)
    before = w.ads.attempts()
    w.shop.evaluate("email => relay('track', 'page_view', {section: 'shoes'}, {user: {email}})",
                    EMAIL)
    # The 503 is the page view's: nothing else goes to ads before it has been answered.
    wait_until(lambda: w.ads.attempts() > before, WAIT, "the page view's first attempt at ads")
    w.shop.evaluate("relay('track', 'purchase', {order_id: 'O-1', value: 149, currency: 'USD'},"
                    f" {{event_id: '{ORDER}'}})")
    w.shop.evaluate(f"relay('track', 'mystery', {{}}, {{event_id: '{w.rejected}'}})")
    w.shop.evaluate("name => relay('track', name)", XSS_NAME)
    wait_until(lambda: len([e for e in w.site.sent() if e.get("event") != "signup"]) >= 4,
               WAIT, "the browser's four events")
    w.page_view = next(e["event_id"] for e in w.site.sent() if e.get("event") == "page_view")
    backend = {"event": "purchase", "event_id": ORDER, "correlation_id": w.cookie,
               "context": {"country": "US"}, "user": {"email": BACKEND_EMAIL},
               "properties": {"order_id": "O-1", "value": 149.0, "currency": "USD",
                              "internal_note": "VIP, call before shipping"}}
    with client() as http:
        for _ in range(2):
            r = post_backend(http, w.relay, backend)
            assert r.status_code == 202, r.text


class Visitor:
    """Another visitor, from Germany (``OTHER_IP``), with a cookie of its own."""

    def __init__(self, relay: RelayProcess) -> None:
        self.relay = relay
        self.http = httpx.Client(timeout=10, trust_env=False,
                                 headers={"X-Forwarded-For": OTHER_IP, "CF-IPCountry": "DE"})

    def view(self, event_id: str) -> None:
        """A page view without a consent choice: in the EU it waits for one."""
        view = {"event": "page_view", "event_id": event_id,
                "context": {"page": {"url": "https://shop.example/de?utm_source=ad"}}}
        r = self.http.post(self.relay.url("/e"), json=view)
        assert r.status_code == 202 and r.json()["held"] == 1, r.text

    def choose(self, consent: dict[str, str]) -> None:
        choice = {"event": "consent_update", "consent": consent}
        assert self.http.post(self.relay.url("/e"), json=choice).status_code == 202

    def close(self) -> None:
        self.http.close()


def select(page: Page, name: str, tab: str) -> None:
    """Click the latest row of ``name``, then the tab."""
    page.locator(f'#list > li:not([hidden])[data-event="{name}"]').first.click()
    page.click(f"#tab-{tab}")
    page.wait_for_selector(f"#panel[data-tab={tab}]")


def start(tmp: Path, stack: ExitStack) -> tuple[RelayProcess, Site, StandInVendor, StandInVendor]:
    analytics, ads, destinations = vendors()
    stack.callback(analytics.close)
    stack.callback(ads.close)
    rules = make_rules(tmp / "rules", destinations=destinations, relay=RELAY)
    relay = RelayProcess(tmp / "relay", rules)
    stack.callback(relay.close)
    relay.start()
    site = Site(relay)
    stack.callback(site.close)
    return relay, site, analytics, ads


def screenshots(out: Path) -> list[Path]:
    """The README's pictures: the list with each tab of the selected event."""
    out.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw, ExitStack() as stack:
        relay, site, analytics, ads = start(Path(tmp), stack)
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        stack.callback(browser.close)
        size = {"width": 1280, "height": 760}
        ctx, shop = my_browser(browser, site, viewport=size)
        w = Walk(relay, site, analytics, ads, ctx, shop)
        page = open_debug(ctx, relay, "all=1")
        other = Visitor(relay)
        stack.callback(other.close)
        other.view("evt-dbg-eu-1")
        send_mine(w)
        wait_rows(page, 7)
        other.choose({"analytics": "granted", "ads": "denied"})
        wait_until(lambda: ads.delivered().get(w.page_view), WAIT, "the page view at ads")
        page.wait_for_timeout(500)

        def shot(name: str) -> None:
            page.screenshot(path=str(out / name))
            shots.append(out / name)

        page.locator(f'#list > li[data-event-id="{w.page_view}"]').click()
        page.click("#tab-input")
        shot("debug-input.png")
        page.click("#tab-destinations")
        shot("debug-destinations.png")
        page.click("#tab-deliveries")
        shot("debug-deliveries.png")
    return shots


if __name__ == "__main__":
    for path in screenshots(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img")):
        print(path)
