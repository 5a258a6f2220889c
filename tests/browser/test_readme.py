"""The README's snippet examples, run as written in headless Chromium against the shipped
rules: every call is accepted (none rejected), and each event lands where the rules say."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Browser

from ..e2e.wire import client, metric, scrape, wait_until
from .conftest import MakeStack
from .site import of, page_html, ready

README = Path(__file__).resolve().parents[2] / "README.md"
WAIT = 15.0


def readme_js() -> str:
    """The README's ```js block (the snippet's API, call by call)."""
    blocks = re.findall(r"^```js\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1, "the README has one ```js block of snippet calls"
    return str(blocks[0])


def test_the_readme_snippet_calls_are_accepted(stack: MakeStack, chromium: Browser) -> None:
    s = stack()
    calls = readme_js()
    assert "relay('track', 'signup'" in calls and "relay('page'" in calls
    url = s.site.add("readme.html", page_html(f"<script>{calls}</script>"))
    ctx = s.context(chromium)
    page = ctx.new_page()
    page.goto(url)
    ready(page)
    # Every event the calls make reaches the relay: the automatic page view, signup,
    # purchase, the second page view and the consent choice.
    wait_until(lambda: len(of(s.site.sent(), "consent_update")) == 1, WAIT, "the consent event")
    sent = s.site.sent()
    assert {e["event"] for e in sent} >= {"page_view", "signup", "purchase", "consent_update"}
    wait_until(lambda: of(s.analytics.delivered_events(), "signup"), WAIT, "signup delivered")
    ctx.close()

    with client() as c:
        text = scrape(c, s.relay)
    assert metric(text, "relay_events_rejected_total") == 0, text
    signup = of(s.analytics.delivered_events(), "signup")[0]
    assert signup["properties"] == {"plan": "pro"}
    views = of(s.analytics.delivered_events(), "page_view")
    assert any(v.get("properties", {}).get("section") == "docs" for v in views)
    # The browser's purchase is held for the backend (authority: backend), not delivered.
    assert metric(text, "relay_events_held_total", event="purchase") == 1
    assert not of(s.analytics.delivered_events(), "purchase")
