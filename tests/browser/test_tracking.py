"""The snippet in headless Chromium: page views (on load, single-page-app navigation, the
``data-auto`` switch), the stub queue, one request per tick, the GTM dataLayer, and events
sent while the page goes away (sendBeacon, and the fetch keepalive fallback)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Browser

from ..e2e.rulesdir import edit
from ..e2e.wire import client, post_backend, wait_until
from .conftest import MakeStack
from .site import of, page_html, ready

WAIT = 15.0
# Contracts for the tests' own events.
CUSTOM: dict[str, Any] = {"leave": {}, "tick": {}}  # signup: in the shipped rules


def _views(events: list[dict[str, Any]]) -> list[str]:
    return [e["context"]["page"]["url"] for e in of(events, "page_view")]


def test_page_view_on_load_and_on_spa_navigation(stack: MakeStack, chromium: Browser) -> None:
    s = stack()
    home = s.site.add("spa.html", page_html(title="Shop home")) + "?utm_source=news"
    a, b = f"{s.site.origin}/pages/a", f"{s.site.origin}/pages/b"
    ctx = s.context(chromium)
    page = ctx.new_page()
    page.goto(home)
    ready(page)
    wait_until(lambda: len(_views(s.site.sent())) == 1, WAIT, "the page_view on load")

    page.evaluate("history.pushState({}, '', '/pages/a')")
    wait_until(lambda: len(_views(s.site.sent())) == 2, WAIT, "a page_view after pushState")
    page.evaluate("document.title = 'Page B'; history.replaceState({}, '', '/pages/b')")
    page.evaluate("history.replaceState({x: 1}, '', '/pages/b')")  # same URL: no page view
    page.evaluate("history.back()")  # popstate, back to home
    wait_until(lambda: len(_views(s.site.sent())) == 4, WAIT, "a page_view after popstate")
    page.evaluate("history.forward()")
    wait_until(lambda: len(_views(s.site.sent())) == 5, WAIT, "a page_view after forward")
    ctx.close()

    sent = of(s.site.sent(), "page_view")
    assert _views(sent) == [home, a, b, home, b]
    first = sent[0]["context"]["page"]
    assert first == {"url": home, "referrer": "", "title": "Shop home"}
    # The referrer of a single-page-app view is the URL the app navigated from.
    assert [e["context"]["page"]["referrer"] for e in sent[1:]] == [home, a, b, home]
    assert sent[2]["context"]["page"]["title"] == "Page B"
    ids = [e["event_id"] for e in sent]
    assert len(set(ids)) == 5 and all(16 <= len(i) <= 128 for i in ids)

    # Delivered, each once, under the browser's event_id, with the URL cleaned by the relay.
    wait_until(lambda: len(of(s.analytics.delivered_events(), "page_view")) == 5, WAIT,
               "five page views at the analytics vendor")
    assert sorted(s.analytics.delivered()) == sorted(ids)
    delivered = {e["event_id"]: e for e in s.analytics.delivered_events()}
    # The shipped minimize pipeline moves utm_* out of the URL into context.campaign.
    assert delivered[ids[0]]["context"]["page"]["url"] == home.split("?")[0]
    assert delivered[ids[0]]["context"]["campaign"]["source"] == "news"
    assert s.analytics.problems == [] and s.site.errors == []


def test_auto_page_views_can_be_switched_off(stack: MakeStack, chromium: Browser) -> None:
    s = stack(events=CUSTOM)
    url = s.site.add("manual.html", page_html(script_attrs='data-auto="off"'))
    ctx = s.context(chromium)
    page = ctx.new_page()
    page.goto(url)
    ready(page)
    page.evaluate("history.pushState({}, '', '/pages/elsewhere')")
    page.evaluate("relay('track', 'tick')")  # a marker: everything before it was sent by now
    wait_until(lambda: of(s.site.sent(), "tick"), WAIT, "the marker event")
    assert of(s.site.sent(), "page_view") == []
    page.evaluate("relay('page', {section: 'docs'})")
    wait_until(lambda: of(s.site.sent(), "page_view"), WAIT, "the manual page view")
    ctx.close()
    (view,) = of(s.site.sent(), "page_view")
    assert view["properties"] == {"section": "docs"}
    assert view["context"]["page"]["url"].endswith("/pages/elsewhere")


def test_stub_queue_is_replayed_and_one_tick_is_one_request(
        stack: MakeStack, chromium: Browser) -> None:
    s = stack(events=CUSTOM)
    queued = ("<script>window.relay = window.relay || function(){(relay.q=relay.q||[])"
              ".push(arguments)};"
              "relay('track', 'signup', {plan: 'pro'}, {event_id: 'queued-signup-1'});</script>")
    url = s.site.add("queue.html", page_html(head=queued))
    ctx = s.context(chromium)
    page = ctx.new_page()
    page.goto(url)
    ready(page)
    wait_until(lambda: s.site.posts, WAIT, "the first request")
    page.evaluate("for (let i = 0; i < 3; i++) relay('track', 'tick', {i: i})")
    wait_until(lambda: len(s.site.posts) >= 2, WAIT, "the second request")
    wait_until(lambda: len(s.analytics.delivered()) == 5, WAIT, "five deliveries")
    ctx.close()

    first, second = s.site.posts
    # The call queued before the script loaded, then the automatic page view: one request.
    assert [e["event"] for e in first.events] == ["signup", "page_view"]
    signup = first.events[0]
    assert signup["event_id"] == "queued-signup-1" and signup["properties"] == {"plan": "pro"}
    # Three calls in one tick: one request, as {"batch": [...]}, text/plain, by sendBeacon.
    assert [e["properties"]["i"] for e in second.events] == [0, 1, 2]
    for post in (first, second):
        assert post.body.startswith(b'{"batch":[')
        assert post.headers["content-type"].startswith("text/plain")
        assert post.headers["sec-fetch-mode"] == "no-cors"  # a beacon, not fetch
        assert post.status == 202
    assert s.analytics.delivered()["queued-signup-1"] == 1


GTM_HEAD = """<script>
window.dataLayer = [
  {event: 'gtm.js', 'gtm.start': 1},
  {event: 'purchase', event_id: 'ord-dl-1', order_id: 'O-1', value: 149, currency: 'USD'}
];
</script>"""


def _no_authority(rules_dir: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        for key in ("authority", "confirm_window", "enrich_from_browser"):
            data["events"]["purchase"].pop(key, None)
    edit(rules_dir / "events.yaml", change)


def test_data_layer_events_are_forwarded_with_their_event_id(
        stack: MakeStack, chromium: Browser) -> None:
    # The browser is the authority for purchases here, so the vendor shows what arrived.
    s = stack(edit=_no_authority)
    url = s.site.add("gtm.html", page_html(head=GTM_HEAD))
    ctx = s.context(chromium)
    page = ctx.new_page()
    page.goto(url)
    ready(page)
    length = page.evaluate("""() => {
      dataLayer.push({event: 'gtm.click', 'gtm.element': 'a'});
      dataLayer.push({ecommerce: null});
      return dataLayer.push({event: 'purchase', event_id: 'ord-dl-2', order_id: 'O-2',
                             value: 20, currency: 'EUR', 'gtm.uniqueEventId': 7,
                             eventTimeout: 2000, eventCallback: function () {}});
    }""")
    wait_until(lambda: {"ord-dl-1", "ord-dl-2"} <= set(s.analytics.delivered()), WAIT,
               "both purchases at the analytics vendor")
    pushed_original = page.evaluate("dataLayer[1]")
    ctx.close()

    assert length == 5  # dataLayer.push still answers as Array.prototype.push does
    sent = s.site.sent()
    assert sorted(e["event"] for e in sent) == ["page_view", "purchase", "purchase"]
    (p1,) = [e for e in sent if e.get("event_id") == "ord-dl-1"]
    assert p1 == {**p1, "event": "purchase", "order_id": "O-1", "value": 149, "currency": "USD"}
    (p2,) = [e for e in sent if e.get("event_id") == "ord-dl-2"]
    assert "gtm.uniqueEventId" not in p2 and "eventTimeout" not in p2
    # The page's own dataLayer object is not changed by the snippet.
    assert pushed_original == {"event": "purchase", "event_id": "ord-dl-1", "order_id": "O-1",
                               "value": 149, "currency": "USD"}
    by_id = {e["event_id"]: e for e in s.analytics.delivered_events()}
    assert by_id["ord-dl-2"]["properties"] == {"order_id": "O-2", "value": 20, "currency": "EUR"}
    assert s.analytics.delivered()["ord-dl-1"] == 1
    assert s.analytics.problems == []


def test_a_browser_purchase_is_held_until_the_backend_confirms_it(
        stack: MakeStack, chromium: Browser) -> None:
    # The shipped rules: purchases are backend-authoritative. The browser's copy (from the
    # dataLayer) is held; the backend's copy with the same event_id is delivered once,
    # enriched with the page URL only the browser knew: proof the browser copy arrived.
    s = stack()
    url = s.site.add("thanks.html", page_html(head=GTM_HEAD)) + "?utm_source=mail"
    ctx = s.context(chromium)
    page = ctx.new_page()
    page.goto(url)
    ready(page)
    wait_until(lambda: of(s.analytics.delivered_events(), "page_view"), WAIT, "the page view")
    assert "ord-dl-1" not in s.analytics.delivered()
    with client() as http:
        r = post_backend(http, s.relay, {
            "event": "purchase", "event_id": "ord-dl-1", "context": {"country": "US"},
            "properties": {"order_id": "O-1", "value": 149, "currency": "USD"}})
        assert r.status_code == 202, r.text
    wait_until(lambda: "ord-dl-1" in s.analytics.delivered(), WAIT, "the confirmed purchase")
    ctx.close()
    (purchase,) = [e for e in s.analytics.delivered_events() if e["event_id"] == "ord-dl-1"]
    assert purchase["context"]["page"]["url"] == url.replace("?utm_source=mail", "")
    assert s.analytics.delivered()["ord-dl-1"] == 1


def test_an_event_tracked_while_leaving_still_arrives(stack: MakeStack, chromium: Browser) -> None:
    s = stack(events=CUSTOM)
    next_page = s.site.add("next.html", "<!doctype html><title>next</title><p>next</p>")
    on_hide = ("<script>addEventListener('pagehide', function () {"
               "relay('track', 'leave', {how: 'pagehide'}, {event_id: 'leave-hide'}); });"
               "</script>")
    url = s.site.add("leave.html", page_html(head=on_hide, body='<a href="/pages/next.html">'
                                             "next</a>"))
    ctx = s.context(chromium)
    page = ctx.new_page()
    page.goto(url)
    ready(page)
    # Tracked, then away at once: the request must outlive the page.
    page.evaluate("relay('track', 'leave', {how: 'script'}, {event_id: 'leave-now'});"
                  "location.href = '/pages/next.html'")
    page.wait_for_url(next_page)
    page.goto(url)
    ready(page)
    page.click("a")  # the page's pagehide handler tracks; the snippet flushes on pagehide
    page.wait_for_url(next_page)
    wait_until(lambda: {"leave-now", "leave-hide"} <= set(s.analytics.delivered()), WAIT,
               "both events sent while leaving")
    ctx.close()
    assert s.analytics.delivered()["leave-now"] == 1
    assert s.analytics.delivered()["leave-hide"] == 1


def test_fetch_keepalive_when_send_beacon_is_missing_or_refuses(
        stack: MakeStack, chromium: Browser) -> None:
    s = stack(events=CUSTOM)
    url = s.site.add("fetch.html", page_html())
    s.site.add("next.html", "<!doctype html><title>next</title>")
    for n, patch in enumerate(["navigator.sendBeacon = undefined",
                               "Navigator.prototype.sendBeacon = function () { return false; }"]):
        ctx = s.context(chromium)
        ctx.add_init_script(patch)
        page = ctx.new_page()
        page.goto(url)
        ready(page)
        wait_until(lambda: ctx.cookies(), WAIT, "the cookie from the page view's answer")  # noqa: B023
        page.evaluate(f"relay('track', 'leave', {{}}, {{event_id: 'fetch-{n}'}});"
                      "location.href = '/pages/next.html'")
        page.wait_for_url("**/next.html")
        event_id = f"fetch-{n}"
        wait_until(lambda: event_id in s.analytics.delivered(), WAIT,  # noqa: B023 (waited here)
                   f"the event sent by fetch ({patch})")
        ctx.close()
    posts = [p for p in s.site.posts if any(e["event_id"].startswith("fetch-") for e in p.events)]
    assert len(posts) == 2
    for post in posts:
        assert post.headers["sec-fetch-mode"] == "cors"  # fetch(), not a beacon
        assert post.headers["content-type"].startswith("text/plain")
        assert "_rc=" in post.headers.get("cookie", "")  # set by the page view's answer
        assert post.status == 202
