"""Consent in a real browser: Google Consent Mode (default, then update), IAB TCF v2 through
a stub ``__tcfapi``, and Global Privacy Control.

The protocol (README, "Install the snippet"): only explicit decisions reach the relay (a
Consent Mode ``update``, a TCF ``tcloaded``/``useractioncomplete`` answer where GDPR applies,
``relay('consent', ...)``), as a ``consent_update`` event, and every later event carries the
latest decision. Consent Mode ``default`` values are never sent: the relay applies its own
region defaults and holds what is undecided until a decision arrives.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser

from ..e2e.rulesdir import edit
from ..e2e.wire import client, metric, scrape, wait_until
from .conftest import MakeStack
from .site import of, page_html, ready

WAIT = 15.0
QUIET = 1.5  # how long "nothing arrives" is watched for
CUSTOM: dict[str, Any] = {}  # signup has a contract in the shipped rules


def _suppressed(stack_relay: Any, destination: str) -> float:
    with client() as http:
        return metric(scrape(http, stack_relay), "relay_consent_suppressed_total",
                      destination=destination)


# -- Google Consent Mode -----------------------------------------------------------------

CONSENT_MODE_HEAD = """<script>
window.dataLayer = window.dataLayer || [];
function gtag() { dataLayer.push(arguments); }
gtag('consent', 'default', {ad_storage: 'denied', ad_user_data: 'denied',
  ad_personalization: 'denied', analytics_storage: 'denied', wait_for_update: 500});
</script>"""


def _opt_in_everywhere(rules_dir: Path) -> None:
    """Both purposes denied by default everywhere: an opt-in region for every visitor."""
    def change(data: dict[str, Any]) -> None:
        for purpose in ("analytics", "ads"):
            data["purposes"][purpose]["default"] = {"*": "denied"}
    edit(rules_dir / "relay.yaml", change)


def test_consent_mode_default_denied_then_update_granted_releases_held_events(
        stack: MakeStack, chromium: Browser) -> None:
    s = stack(edit=_opt_in_everywhere, events=CUSTOM)
    url = s.site.add("cm.html", page_html(head=CONSENT_MODE_HEAD))
    ctx = s.context(chromium)
    page = ctx.new_page()
    page.goto(url)
    ready(page)
    (view,) = wait_until(lambda: of(s.site.sent(), "page_view"), WAIT, "the page view")
    # The default is not a decision: nothing about it is sent.
    assert "consent" not in view and of(s.site.sent(), "consent_update") == []
    time.sleep(QUIET)
    assert s.analytics.received == [] and s.ads.received == [], "sent before any decision"

    page.evaluate("gtag('consent', 'update', {analytics_storage: 'granted', "
                  "ad_storage: 'denied', ad_user_data: 'denied', ad_personalization: 'denied'})")
    (update,) = wait_until(lambda: of(s.site.sent(), "consent_update"), WAIT,
                           "the consent_update event")
    assert update["consent"] == {"analytics_storage": "granted", "ad_storage": "denied",
                                 "ad_user_data": "denied", "ad_personalization": "denied"}
    wait_until(lambda: view["event_id"] in s.analytics.delivered(), WAIT,
               "the held page view released to the analytics vendor")

    # Later events carry the decision and go straight through.
    page.evaluate("relay('track', 'signup', {plan: 'pro'})")
    (signup,) = wait_until(lambda: of(s.site.sent(), "signup"), WAIT, "the signup")
    assert signup["consent"] == update["consent"]
    wait_until(lambda: signup["event_id"] in s.analytics.delivered(), WAIT, "the signup")
    # The same update again is not a change: not sent again.
    page.evaluate("gtag('consent', 'update', {analytics_storage: 'granted'})")
    page.evaluate("relay('track', 'signup')")
    wait_until(lambda: len(of(s.site.sent(), "signup")) == 2, WAIT, "the second signup")
    ctx.close()

    assert len(of(s.site.sent(), "consent_update")) == 1
    assert s.analytics.delivered()[view["event_id"]] == 1
    time.sleep(0.5)
    assert s.ads.received == [], "ads was denied: nothing may reach it"
    assert _suppressed(s.relay, "ads") >= 1
    assert s.analytics.problems == [] and s.ads.problems == []


# -- IAB TCF v2 --------------------------------------------------------------------------

# A CMP stub: answers addEventListener at once (as the CMP API says) and on window.tcfFire.
TCF_STUB = """<script>
window.tcfCalls = [];
window.tcfListeners = [];
window.tcfFire = function (data) {
  tcfListeners.forEach(function (cb) { cb(Object.assign({cmpStatus: 'loaded'}, data), true); });
};
function installTcf() {
  window.__tcfapi = function (command, version, cb) {
    tcfCalls.push([command, version]);
    if (command !== 'addEventListener') return;
    tcfListeners.push(cb);
    cb(Object.assign({listenerId: 1}, TCF_FIRST), true);
  };
}
</script>"""


def _tcf_page(first: dict[str, Any], *, late_ms: int = 0, head: str = "") -> str:
    install = (f"setTimeout(installTcf, {late_ms});" if late_ms else "installTcf();")
    return page_html(head=(TCF_STUB + f"<script>var TCF_FIRST = {json.dumps(first)};"
                           f"{install}</script>" + head))


def _gdpr(*granted: int, status: str = "tcloaded") -> dict[str, Any]:
    return {"eventStatus": status, "gdprApplies": True, "tcString": "CPx-test",
            "purpose": {"consents": {str(p): True for p in granted},
                        "legitimateInterests": {}}}


def test_a_tcf_answer_is_honoured(stack: MakeStack, chromium: Browser) -> None:
    # The shipped defaults grant both purposes outside the EU/UK: only TCF can deny ads here.
    s = stack(events=CUSTOM)
    # Purposes 1 and 8 (storage, measure content): analytics; not 3, 4, 7: no ads.
    url = s.site.add("tcf.html", _tcf_page(_gdpr(1, 8)))
    ctx = s.context(chromium)
    page = ctx.new_page()
    page.goto(url)
    ready(page)
    (update,) = wait_until(lambda: of(s.site.sent(), "consent_update"), WAIT, "consent_update")
    assert update["consent"] == {"analytics": "granted", "ads": "denied"}
    (view,) = wait_until(lambda: of(s.site.sent(), "page_view"), WAIT, "the page view")
    assert view["consent"] == {"analytics": "granted", "ads": "denied"}
    wait_until(lambda: view["event_id"] in s.analytics.delivered(), WAIT, "analytics delivery")
    assert page.evaluate("tcfCalls") == [["addEventListener", 2]]

    # The CMP's UI shows (not a decision), then the user accepts everything.
    page.evaluate(f"tcfFire({json.dumps(_gdpr(status='cmpuishown'))})")
    page.evaluate(f"tcfFire({json.dumps(_gdpr(1, 3, 4, 7, 8, status='useractioncomplete'))})")
    wait_until(lambda: len(of(s.site.sent(), "consent_update")) == 2, WAIT, "the second update")
    page.evaluate("relay('track', 'signup')")
    (signup,) = wait_until(lambda: of(s.site.sent(), "signup"), WAIT, "the signup")
    wait_until(lambda: signup["event_id"] in s.ads.delivered(), WAIT, "ads delivery after consent")
    ctx.close()

    assert of(s.site.sent(), "consent_update")[1]["consent"] == {"analytics": "granted",
                                                                 "ads": "granted"}
    assert view["event_id"] not in s.ads.delivered()
    assert _suppressed(s.relay, "ads") >= 1


def test_tcf_mapping_can_be_configured(stack: MakeStack, chromium: Browser) -> None:
    s = stack(events=CUSTOM)
    config = ("<script>window.relay = window.relay || function(){(relay.q=relay.q||[])"
              ".push(arguments)}; relay('config', {tcf: {analytics: [1, 9], ads: [2]}});"
              "</script>")
    url = s.site.add("tcf-config.html", _tcf_page(_gdpr(1, 2), head=config))
    ctx = s.context(chromium)
    page = ctx.new_page()
    page.goto(url)
    ready(page)
    (update,) = wait_until(lambda: of(s.site.sent(), "consent_update"), WAIT, "consent_update")
    ctx.close()
    assert update["consent"] == {"analytics": "denied", "ads": "granted"}


def test_tcf_outside_gdpr_sends_nothing_even_from_a_late_cmp(
        stack: MakeStack, chromium: Browser) -> None:
    s = stack(events=CUSTOM)
    not_gdpr = {"eventStatus": "tcloaded", "gdprApplies": False, "cmpId": 7}
    url = s.site.add("tcf-late.html", _tcf_page(not_gdpr, late_ms=700))
    ctx = s.context(chromium)
    page = ctx.new_page()
    page.goto(url)
    ready(page)
    page.wait_for_function("() => tcfCalls.length > 0", timeout=5000)  # found it when it came
    page.evaluate("relay('track', 'signup')")
    (signup,) = wait_until(lambda: of(s.site.sent(), "signup"), WAIT, "the signup")
    wait_until(lambda: signup["event_id"] in s.ads.delivered(), WAIT, "ads delivery")
    ctx.close()
    assert of(s.site.sent(), "consent_update") == []
    assert all("consent" not in e for e in s.site.sent())


# -- Global Privacy Control --------------------------------------------------------------

def test_gpc_suppresses_ads_destinations(
        stack: MakeStack, gpc_chromium: Browser, chromium: Browser) -> None:
    # The shipped ads purpose says `gpc: denied`; analytics does not mention GPC.
    s = stack()
    url = s.site.add("gpc.html", page_html())
    ctx = s.context(gpc_chromium)
    page = ctx.new_page()
    page.goto(url)
    ready(page)
    assert page.evaluate("navigator.globalPrivacyControl") is True  # Chromium's own GPC
    (view,) = wait_until(lambda: of(s.site.sent(), "page_view"), WAIT, "the page view")
    wait_until(lambda: view["event_id"] in s.analytics.delivered(), WAIT, "analytics delivery")
    ctx.close()
    (post,) = s.site.posts
    assert post.headers.get("sec-gpc") == "1"  # the browser sent it; the forwarder passes it on
    assert view["context"]["gpc"] is True  # the snippet reports navigator.globalPrivacyControl
    (delivered,) = s.analytics.delivered_events()
    assert delivered["context"]["gpc"] is True

    # The same page without GPC: ads gets its copy (the control).
    ctx = s.context(chromium)
    page = ctx.new_page()
    page.goto(url)
    ready(page)
    wait_until(lambda: len(of(s.site.sent(), "page_view")) == 2, WAIT, "the second page view")
    other = of(s.site.sent(), "page_view")[1]
    assert not other["context"].get("gpc")
    wait_until(lambda: other["event_id"] in s.ads.delivered(), WAIT, "ads delivery without GPC")
    ctx.close()
    assert view["event_id"] not in s.ads.delivered()
    assert _suppressed(s.relay, "ads") == 1
