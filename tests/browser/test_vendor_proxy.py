"""posthog-js and mixpanel-browser in headless Chromium, through the relay's first-party
proxy (a real ``relay serve`` on the shipped rules plus vendor routes), to stand-in
upstreams on 127.0.0.1.

The libraries are loaded as a site would load them, from the relay (``cache:`` routes to a
stand-in CDN serving tests/js/node_modules), and send to ``api_host`` = the proxy's paths.
The page registers an IP as a property, identifies a user with an email, and sends page
views and a custom event with an email in its properties. What the stand-ins receive has no
raw IP, user agent, email, query string or click id; with the purpose denied, the libraries
get their vendor's success answer and send nothing again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Request

from ..e2e.wire import wait_until
from . import vendor_upstreams as up
from .conftest import MakeStack, Stack

WAIT = 20.0
RETRY_WATCH = 9.0  # posthog-js retries after 2.25 to 3.75 s, polled every 3 s
UA = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
      "Chrome/126.0.6478.127 Safari/537.36")
EMAIL = "ann@example.com"
EMAIL_SHA256 = "71d4f55f72fa128dfb468a1a3901507c804b74316488744d769d7f4b16696476"
PAGE_QUERY = "?utm_source=news&gclid=abc123&q=ann%40example.com"
# The page's own visitor IP, registered as a property: the route must not pass it raw.
PAGE_IP = "203.0.113.77"

PAGE = """<!doctype html><html><head><meta charset=utf-8><title>Shop</title>
<script src="/t/lib/posthog.js"></script><script src="/t/lib/mixpanel.js"></script>
</head><body><script>
posthog.init('phc_test', {api_host: location.origin + '/t/ph', advanced_disable_flags: true,
  disable_surveys: true, disable_session_recording: true, autocapture: false,
  capture_pageleave: false, capture_performance: false, disable_external_dependency_loading: true,
  opt_out_useragent_filter: true, person_profiles: 'always'});
posthog.register({$ip: 'PAGE_IP'});
posthog.identify('u_42', {email: 'Ann@Example.com', plan: 'pro'});
posthog.capture('signup', {plan: 'pro', email: 'EMAIL'});
mixpanel.init('mp_token', {api_host: location.origin + '/t/mp', track_pageview: true,
  batch_flush_interval_ms: 300});
mixpanel.register({ip: 'PAGE_IP'});
mixpanel.identify('u_42');
mixpanel.people.set({$email: 'EMAIL'});
mixpanel.track('signup', {plan: 'pro', email: 'EMAIL'});
</script></body></html>""".replace("PAGE_IP", PAGE_IP).replace("EMAIL", EMAIL)


class Upstreams:
    def __init__(self) -> None:
        self.cdn = up.Cdn()
        self.posthog = up.posthog()
        self.mixpanel = up.mixpanel()

    def close(self) -> None:
        for server in (self.cdn, self.posthog, self.mixpanel):
            server.close()

    def routes(self) -> dict[str, Any]:
        return {
            "posthog_js": {"path": "/lib/posthog.js", "upstream": self.cdn.url + "posthog.js",
                           "cache": "1h"},
            "mixpanel_js": {"path": "/lib/mixpanel.js", "upstream": self.cdn.url + "mixpanel.js",
                            "cache": "1h"},
            "ph": {"path": "/ph/", "upstream": self.posthog.url, "vendor": "posthog",
                   "pipeline": "minimize", "purpose": "analytics", "forward_ip": "truncate"},
            "mp": {"path": "/mp/", "upstream": self.mixpanel.url, "vendor": "mixpanel",
                   "pipeline": "minimize", "purpose": "analytics"},  # forward_ip: strip
        }


@pytest.fixture
def upstreams() -> Iterator[Upstreams]:
    u = Upstreams()
    yield u
    u.close()


def _open(stack: Stack, browser: Browser, **options: Any) -> tuple[Page, list[Request]]:
    """The shop page in a fresh context, and every request it makes to the proxy paths
    (recorded while Playwright runs: wait with ``page.wait_for_timeout``, not ``sleep``)."""
    sent: list[Request] = []
    ctx = stack.context(browser, user_agent=UA, **options)
    page = ctx.new_page()
    page.on("request", lambda r: sent.append(r) if "/t/ph/" in r.url or "/t/mp/" in r.url
            else None)
    url = stack.site.add("shop.html", PAGE)
    page.goto(url + PAGE_QUERY)
    return page, sent


def _events(hits: list[up.Hit], path: str) -> list[dict[str, Any]]:
    return [e for h in hits if h.path.startswith(path) for e in h.events]


def _named(events: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(e for e in events if e.get("event") == name)


def test_what_the_vendors_receive_is_minimized(
        stack: MakeStack, chromium: Browser, upstreams: Upstreams) -> None:
    s = stack(proxy=upstreams.routes())
    _open(s, chromium)  # the stand-ins record on their own threads

    def posthog_events() -> list[dict[str, Any]] | None:
        events = _events(upstreams.posthog.received(), "/")
        names = {e["event"] for e in events}
        return events if {"$pageview", "$identify", "signup"} <= names else None

    def mixpanel_hits() -> list[up.Hit] | None:
        hits = upstreams.mixpanel.received()
        paths = {h.path for h in hits}
        names = {e.get("event") for h in hits if h.path == "/track/" for e in h.events}
        ok = {"/track/", "/engage/"} <= paths and {"$mp_web_page_view", "signup"} <= names
        return hits if ok else None

    ph = wait_until(posthog_events, WAIT, "posthog-js's page view, identify and signup")
    mp_hits = wait_until(mixpanel_hits, WAIT, "mixpanel-browser's page view, signup and people")
    mp = _events(mp_hits, "/track/")
    people = _events(mp_hits, "/engage/")

    # PostHog: gzip as posthog-js sent it, cleaned
    ph_hits = upstreams.posthog.received()
    assert all(h.body[:2] == b"\x1f\x8b" for h in ph_hits)
    assert all(h.headers["x-forwarded-for"] == "127.0.0.0" for h in ph_hits)  # truncate
    assert all(h.headers["user-agent"] == "Mozilla/5.0 (Mac OS X) Chrome/126" for h in ph_hits)
    view = _named(ph, "$pageview")["properties"]
    assert view["$ip"] == "203.0.113.0"  # the registered IP, truncated
    assert "$raw_user_agent" not in view
    assert view["$current_url"] == s.site.add("shop.html", PAGE)  # no query at all
    assert "gclid" not in view and "$session_entry_gclid" not in view
    identify = _named(ph, "$identify")
    assert identify["$set"]["email"] == EMAIL_SHA256 and identify["$set"]["plan"] == "pro"
    assert "$initial_gclid" not in identify["$set_once"]
    assert "?" not in identify["$set_once"]["$initial_current_url"]
    assert _named(ph, "signup")["properties"]["email"] == "[email]"

    # Mixpanel: base64 form as mixpanel-browser sent it, ip=0 (the route strips the address)
    assert all(h.query["ip"] == ["0"] and "x-forwarded-for" not in h.headers for h in mp_hits)
    assert all(h.body.startswith(b"data=") for h in mp_hits)
    page_view = _named(mp, "$mp_web_page_view")["properties"]
    assert "ip" not in page_view and "?" not in page_view["$current_url"]
    assert page_view["current_url_search"] == "" and "gclid" not in page_view
    assert _named(mp, "signup")["properties"]["email"] == "[email]"
    assert next(p for p in people if "$set" in p)["$set"]["$email"] == EMAIL_SHA256

    # Nowhere: the raw user agent, email, IP, click id or page query
    for hit in [*ph_hits, *mp_hits]:
        text = json.dumps(hit.data()) + json.dumps(hit.headers) + json.dumps(hit.query)
        for raw in (UA, EMAIL, "Ann@Example.com", PAGE_IP, "abc123", "ann%40example.com",
                    "utm_source=news"):
            assert raw not in text, (hit.path, raw)
    assert s.site.errors == []


def _sent_events(sent: list[Request], path: str) -> list[dict[str, Any]]:
    """The events of the requests the page sent to ``path``, as the vendor would read them."""
    return [e for r in sent if path in r.url
            for e in up.Hit("POST", "", {}, {}, r.post_data_buffer or b"").events]


def _count(sent: list[Request], path: str) -> int:
    return sum(1 for r in sent if path in r.url)


def test_a_denied_purpose_gets_the_vendors_answer_and_no_retry(
        stack: MakeStack, chromium: Browser, upstreams: Upstreams) -> None:
    s = stack(proxy=upstreams.routes())
    # An EU visitor: the shipped analytics purpose is denied by default there
    page, sent = _open(s, chromium, extra_http_headers={"CF-IPCountry": "DE"})

    def firsts() -> bool:
        page.wait_for_timeout(100)
        names = {e["event"] for e in _sent_events(sent, "/t/ph/")}
        return ({"$pageview", "$identify", "signup"} <= names
                and _count(sent, "/t/mp/track/") >= 1 and _count(sent, "/t/mp/engage/") >= 1)

    wait_until(firsts, WAIT, "every first send of both libraries", interval=0)
    answers = [(r.url, r.response()) for r in sent]
    first = len(sent)
    page.wait_for_timeout(RETRY_WATCH * 1000)  # long enough for posthog-js's first retry
    assert len(sent) == first, [r.url for r in sent[first:]]
    assert not [r.url for r in sent if "retry_count=" in r.url]
    for url, response in answers:
        assert response is not None and response.status == 200, url
        body = response.json()
        if "/t/ph/" in url:
            assert body == {"status": 1}
        else:
            assert body == {"status": 1, "error": None}  # mixpanel-browser batches verbose=1
    # each posthog event went once: a retry would repeat its uuid
    uuids = [e["uuid"] for e in _sent_events(sent, "/t/ph/")]
    assert len(uuids) == len(set(uuids)) >= 3
    assert upstreams.posthog.received() == [] and upstreams.mixpanel.received() == []
    assert s.site.errors == []
