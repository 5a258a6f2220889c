"""The debug view in headless Chromium against a real ``relay serve``: the list, each tab of
the selected event, the filters, pausing, clearing, reconnecting and the admin token, and
nothing personal in the page. The walkthrough is ``debugview.py``'s."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from playwright.sync_api import Browser, ConsoleMessage, Page

from ..e2e.wire import wait_until
from .conftest import MakeStack
from .debugview import (
    BACKEND_EMAIL,
    EMAIL,
    GCLID,
    MY_IP,
    ORDER,
    OTHER_IP,
    RELAY,
    WAIT,
    XSS_NAME,
    Visitor,
    Walk,
    my_browser,
    open_debug,
    rows,
    select,
    wait_rows,
)

TOKEN = "browser-test-admin-token-5b1e0c44"


def _row(page: Page, event_id: str, nth: int = 0) -> Any:
    return page.locator(f'#list > li[data-event-id="{event_id}"]').nth(nth)


def _open(page: Page, event_id: str, tab: str, nth: int = 0) -> str:
    """Select an event's row and one of its tabs; the tab's text."""
    _row(page, event_id, nth).click()
    page.click(f"#tab-{tab}")
    page.wait_for_selector(f"#panel[data-tab={tab}]")
    return page.locator("#panel").text_content() or ""


def _query(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def _errors(page: Page) -> list[str]:
    """The page's script errors, its console errors, and every response of the page's own
    requests that failed. Chromium's own request for ``/favicon.ico`` (the page has none)
    is not one of the page's requests: its 404 reaches the console only, when Chromium gets
    to it before the test ends, so a console "Failed to load resource" line is left to the
    page's responses, which name the URL."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def console(m: ConsoleMessage) -> None:
        if m.type == "error" and not m.text.startswith("Failed to load resource: the server"):
            errors.append(m.text)

    page.on("console", console)
    page.on("response", lambda r: errors.append(f"HTTP {r.status} {r.url}")
            if r.status >= 400 else None)
    return errors


def test_the_debug_view_shows_decisions_diffs_and_deliveries(
        stack: MakeStack, chromium: Browser) -> None:
    s = stack(relay=RELAY)
    ctx, shop = my_browser(chromium, s.site)
    w = Walk(s.relay, s.site, s.analytics, s.ads, ctx, shop)
    page = open_debug(ctx, s.relay)
    errors = _errors(page)
    user_agent = shop.evaluate("navigator.userAgent")
    other = Visitor(s.relay)
    try:
        # This browser has the relay's cookie: the view shows its events only.
        assert page.locator("#f-browser").input_value() == "mine"
        assert page.locator("#notice").is_hidden()
        other.view("evt-dbg-eu-hidden")  # another visitor's: not for this view
        send_mine_and_wait(w, page)
        assert rows(page) == 6 and rows(page, "page_view") == 1
        assert page.locator("#list > li .you").count() == 6  # each marked as this browser's
        assert page.text_content("#count") == "6 events"
        # Latest on top: the duplicate backend purchase, the page view last.
        order = [page.locator("#list > li").nth(i).get_attribute("data-event-id")
                 for i in range(6)]
        assert order[0] == ORDER and order[-1] == w.page_view

        # -- the list: a badge per destination, in words --------------------------------
        view = _row(page, w.page_view)
        for name in ("archive", "analytics", "ads"):
            view.locator(f"[data-destination={name}][data-outcome=delivered]").wait_for()
        assert "ads: delivered" in (view.text_content() or "")
        assert _row(page, ORDER, 2).locator("[data-badge=confirmed]").text_content() == (
            "✓confirmed by backend")
        assert _row(page, ORDER, 0).locator("[data-outcome=duplicate]").count() == 3
        assert "rejected" in (_row(page, w.rejected).text_content() or "")
        # A name that is markup is shown as text, never run.
        assert XSS_NAME in (page.text_content("#list") or "")
        assert page.locator("#list img").count() == 0 and page.title() == "Relay debug view"

        # -- the page view: Input, Destinations, Deliveries ------------------------------
        text = _open(page, w.page_view, "input")
        arrived = page.text_content("#panel [data-part=input]") or ""
        assert '"email": "[email #' in arrived and "198.51.100.0 #" in arrived
        assert '"user_agent": "[user agent #' in arrived and GCLID in arrived

        _open(page, w.page_view, "destinations")
        archive = page.locator("#panel section[data-destination=archive]")
        assert "Sent: purpose analytics is granted" in (archive.text_content() or "")
        assert "Sent: purpose ads is granted" in (
            page.text_content("#panel section[data-destination=ads]") or "")
        hashed = archive.locator('tr[data-change=hashed][data-path="user.email"]')
        sha = hashlib.sha256(EMAIL.strip().lower().encode()).hexdigest()
        assert sha in (hashed.text_content() or "") and "SHA-256" in (hashed.text_content() or "")
        assert archive.locator('tr[data-change=dropped][data-path="context.user_agent"]').count()
        truncated = archive.locator('tr[data-change=truncated][data-path="context.ip"]')
        assert (truncated.text_content() or "").count("198.51.100.0 #") == 2
        url = archive.locator('tr[data-change=changed][data-path="context.page.url"]')
        assert "removed ?utm_source, ?utm_medium, ?gclid" in (url.text_content() or "")
        assert archive.locator('tr[data-change=added][data-path="context.campaign.source"]').count()

        _open(page, w.page_view, "deliveries")
        panel = page.locator("#panel")
        busy = panel.locator("li[data-kind=attempt][data-destination=ads][data-outcome=retry]")
        busy.wait_for()
        busy_text = busy.text_content() or ""
        assert "HTTP 503" in busy_text and "failed; retried" in busy_text
        assert "busy: [email] from 203.0.113.0 #" in busy_text  # the vendor's answer, masked
        panel.locator("li[data-destination=ads][data-outcome=ok]").wait_for()
        assert "HTTP 200" in (panel.locator("li[data-destination=ads][data-outcome=ok]")
                              .text_content() or "")
        assert "HTTP 200" in (panel.locator("li[data-destination=analytics][data-outcome=ok]")
                              .text_content() or "")
        assert "no HTTP status" in (panel.locator("li[data-destination=archive]")
                                    .text_content() or "")

        # -- the purchase: held for the backend, confirmed by its copy ------------------
        text = _open(page, ORDER, "destinations", 2)
        assert "Held for the authoritative source, backend" in text
        assert "Confirmed by the backend copy" in text
        page.locator("#panel a.link").click()  # to the backend's copy
        assert "source backend" in (page.text_content("#d-meta") or "")
        assert page.get_attribute("#tab-destinations", "aria-selected") == "true"
        confirms = page.text_content("#panel [data-part=confirms]") or ""
        assert "context.page.url, context.click_ids, context.user_agent" in confirms
        archive = page.locator("#panel section[data-destination=archive]")
        assert archive.locator(
            'tr[data-change=dropped][data-path="properties.internal_note"]').count()
        assert archive.locator('tr[data-change=hashed][data-path="user.email"]').count()
        merged = archive.locator('tr[data-change=added][data-path="context.page.url"]')
        assert "from the held browser copy" in (merged.text_content() or "")
        text = _open(page, ORDER, "deliveries", 1)
        assert "analytics attempt: ✓delivered delivered · HTTP 200" in text
        text = _open(page, ORDER, "destinations", 0)
        assert text.count("Duplicate: this event_id was already sent") == 3
        text = _open(page, w.rejected, "input")
        assert "Rejected: event: no contract for 'mystery'" in text

        # -- every browser: another visitor's page view waits for consent ----------------
        page.select_option("#f-browser", "all")
        page.wait_for_selector("#status[data-state=live]")
        assert _query(page)["all"] == ["1"]
        other.view("evt-dbg-eu-2")
        wait_rows(page, 7)
        eu = _row(page, "evt-dbg-eu-2")
        assert "analytics: held (analytics)" in (eu.text_content() or "")
        assert "you" not in (eu.text_content() or "")
        text = _open(page, "evt-dbg-eu-2", "destinations")
        assert "Held for purpose analytics: waiting for this browser's consent choice" in text
        assert "Held for purpose ads" in text
        other.choose({"analytics": "granted", "ads": "denied"})
        eu.locator("[data-destination=ads][data-outcome=suppressed]").wait_for()
        eu.locator("[data-destination=analytics][data-outcome=delivered]").wait_for()
        assert "ads: suppressed (ads)" in (eu.text_content() or "")
        text = page.text_content("#panel") or ""  # the open tab follows the release
        assert "Suppressed by purpose ads: the event's explicit consent choice" in text
        assert "Decided again when this browser's consent choice released the event" in text
        text = _open(page, "evt-dbg-eu-2", "deliveries")
        assert "Released by this browser's consent choice" in text
        # The first page view of that visitor was released too: its entry is a row of its own.
        wait_until(lambda: _row(page, "evt-dbg-eu-hidden").count(), WAIT, "the other release")

        # -- filters narrow the list, and live in the URL --------------------------------
        total = rows(page)
        page.select_option("#f-event", "purchase")
        assert rows(page) == rows(page, "purchase") == 3
        assert page.text_content("#count") == f"3 of {total} events"
        assert _query(page)["event"] == ["purchase"]
        page.select_option("#f-event", "")
        page.select_option("#f-destination", "ads")
        shown = [li.get_attribute("data-event")
                 for li in page.locator("#list > li:not([hidden])").all()]
        assert "mystery" not in shown and "consent_update" not in shown and "page_view" in shown
        assert _query(page)["destination"] == ["ads"]
        select(page, "page_view", "input")
        page.click("#only-browser")  # one browser: the one of that page view
        assert page.input_value("#f-browser") == "cid"
        assert _query(page)["cid"] and "all" not in _query(page)
        # A link to the view keeps its filters.
        shared = page.url
        again = ctx.new_page()
        again.goto(shared)
        again.wait_for_selector("#status[data-state=live]")
        assert again.input_value("#f-destination") == "ads"
        assert again.input_value("#f-browser") == "cid"
        again.close()
        page.bring_to_front()

        # -- nothing personal anywhere in the page, whichever tab is open ---------------
        page.select_option("#f-destination", "")
        page.select_option("#f-browser", "all")
        texts = [page.content()]
        for li in page.locator("#list > li").all():
            li.click()
            for tab in ("input", "destinations", "deliveries"):
                page.click(f"#tab-{tab}")
                texts.append(page.locator("#detail").text_content() or "")
        seen = "\n".join(texts)
        for raw in (MY_IP, OTHER_IP, "203.0.113.9", EMAIL, EMAIL.lower(), BACKEND_EMAIL,
                    user_agent, w.cookie, w.cookie.split(".")[0]):
            assert raw not in seen, raw
        assert errors == []
    finally:
        other.close()
        ctx.close()
    assert s.analytics.problems == [] and s.ads.problems == []


def send_mine_and_wait(w: Walk, page: Page) -> None:
    from .debugview import send_mine

    send_mine(w)
    wait_rows(page, 6)


def test_pause_resume_clear_and_reconnect(stack: MakeStack, chromium: Browser) -> None:
    s = stack(relay=RELAY)
    ctx, shop = my_browser(chromium, s.site)
    page = open_debug(ctx, s.relay)
    errors = _errors(page)
    try:
        shop.evaluate("relay('track', 'signup', {plan: 'a'})")
        wait_rows(page, 1)
        page.click("#pause")
        assert page.text_content("#status") == "paused · 0 new events"
        shop.evaluate("relay('track', 'signup', {plan: 'b'})")
        page.wait_for_selector("#status:has-text('paused · 1 new event')")
        wait_until(lambda: s.analytics.delivered_events()[1:], WAIT, "the second delivery")
        page.wait_for_timeout(300)  # its attempts are queued too, and not counted as events
        assert page.text_content("#status") == "paused · 1 new event"
        assert rows(page) == 1 and page.text_content("#pause") == "Resume (1 new)"
        page.click("#pause")
        assert rows(page) == 2 and page.text_content("#status") == "live"
        # What was queued is applied in order: the attempts reach their event.
        select(page, "signup", "deliveries")
        page.locator("#panel li[data-destination=analytics][data-outcome=ok]").wait_for()
        page.click("#clear")
        assert rows(page) == 0 and page.text_content("#count") == "0 events"
        assert page.locator("#empty").is_visible()

        # The relay goes away and comes back on the same port: the view reconnects.
        s.relay.kill()
        page.wait_for_selector("#status[data-state=reconnecting]")
        assert page.text_content("#status") == "reconnecting…"
        s.relay.start()
        page.wait_for_selector("#status[data-state=live]", timeout=20_000)
        shop.evaluate("relay('track', 'signup', {plan: 'c'})")
        wait_rows(page, 1, "signup")
        # Failed connections while the relay was down are the browser's own console
        # messages; the page itself raised nothing.
        assert [e for e in errors if "debug/stream" not in e and "ERR_" not in e] == []
    finally:
        ctx.close()


def test_behind_the_admin_token_the_stream_carries_it(stack: MakeStack, chromium: Browser) -> None:
    s = stack(relay={**RELAY, "admin": {"token": TOKEN}})
    ctx = s.context(chromium)
    page = ctx.new_page()
    try:
        response = page.goto(s.relay.admin_url("/debug"))
        assert response is not None and response.status == 401
        page.goto(s.relay.admin_url(f"/debug?token={TOKEN}"))
        page.wait_for_selector("#status[data-state=live]")
        view = {"event": "page_view", "event_id": "evt-dbg-token"}
        with httpx.Client(timeout=10, trust_env=False) as http:
            r = http.post(s.relay.url("/e"), json=view, headers={"CF-IPCountry": "US"})
            assert r.status_code == 202
        wait_rows(page, 1, "page_view")
        page.select_option("#f-event", "page_view")
        assert _query(page)["token"] == [TOKEN]  # a shared link still opens
    finally:
        ctx.close()
