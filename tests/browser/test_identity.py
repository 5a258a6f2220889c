"""The correlation cookie as Chromium stores it, and nothing else stored by the snippet."""

from __future__ import annotations

import time

from playwright.sync_api import Browser

from ..e2e.wire import wait_until
from .conftest import MakeStack
from .site import of, page_html, ready

WAIT = 15.0
MAX_AGE = 30 * 60  # the shipped rules: relay.cookie.max_age 30m


def test_cookie_attributes_as_the_browser_stores_them(
        stack: MakeStack, chromium: Browser) -> None:
    s = stack()  # signup has a contract in the shipped rules
    url = s.site.add("cookie.html", page_html())
    ctx = s.context(chromium)
    page = ctx.new_page()
    page.goto(url)
    ready(page)
    wait_until(lambda: s.site.posts, WAIT, "the first request")
    stored_at = time.time()
    cookies = ctx.cookies()
    # The only cookie is the relay's: the snippet sets none and stores nothing.
    assert [c["name"] for c in cookies] == ["_rc"], cookies
    (rc,) = cookies
    assert rc["httpOnly"] is True
    assert rc["sameSite"] == "Lax"
    assert rc["path"] == "/"
    assert rc["domain"] == "127.0.0.1"  # host-only: no Domain attribute in the rules
    assert rc["secure"] is False  # Secure is left off on localhost only (SPEC section 8)
    assert abs(rc["expires"] - (stored_at + MAX_AGE)) < 60, "expiry is not now + Max-Age"
    assert "_rc" not in page.evaluate("document.cookie")  # HttpOnly: not readable by scripts
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0

    # The next request carries it, and both events share one correlation id.
    page.evaluate("relay('track', 'signup')")
    wait_until(lambda: len(s.site.posts) == 2, WAIT, "the second request")
    assert "cookie" not in s.site.posts[0].headers
    assert f"_rc={rc['value']}" in s.site.posts[1].headers["cookie"]
    wait_until(lambda: len(s.analytics.delivered()) == 2, WAIT, "two deliveries")
    ctx.close()
    delivered = s.analytics.delivered_events()
    (view,), (signup,) = of(delivered, "page_view"), of(delivered, "signup")
    assert view["correlation_id"] == signup["correlation_id"] == rc["value"].split(".")[0]
