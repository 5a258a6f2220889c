"""Pending consent through real ``relay serve`` processes, with memory state (one relay)
and Redis state (two replicas: the event arrives at one, the choice at the other).

An EU landing page view with a ``gclid`` waits for the browser's choice; the choice releases
it minimized exactly as if it had come first: with ads granted the click id reaches both
vendors, with ads denied neither gets it and the ads vendor gets nothing. The same page view
sent after the choice arrives identical (apart from its event_id and receive time).
``relay_consent_pending`` counts the waiting copies on every replica, and drops to zero.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from .conftest import MakeRelay, MakeVendor
from .relayproc import RelayProcess
from .rulesdir import webhook
from .vendor import StandInVendor
from .wire import archived, client, metric, new_event_id, post_browser, scrape, wait_until

GCLID = "e2e-gclid-7f3a"
EU = {"CF-IPCountry": "DE"}
ALL = {"analytics": "granted", "ads": "granted"}
ANALYTICS_ONLY = {"analytics": "granted", "ads": "denied"}
SETTLE = 1.5  # what was wrongly sent would have arrived by then
# Set by the relay when it receives the event, so two sends differ in them (the page sets
# ``time`` to the same value in both).
PER_SEND = ("event_id", "received_at")


def _landing(event_id: str) -> dict[str, Any]:
    return {"event": "page_view", "event_id": event_id, "time": "2026-11-28T12:00:00Z",
            "context": {"page": {"url": f"https://shop.example/?utm_source=ad&gclid={GCLID}",
                                 "title": "Shop"}}}


def _pending(relay: RelayProcess) -> dict[str, float]:
    with client() as http:
        text = scrape(http, relay)
    return {dest: metric(text, "relay_consent_pending", destination=dest, purpose=purpose)
            for dest, purpose in (("archive", "analytics"), ("ads", "ads"))}


def _copy_of(events: list[dict[str, Any]], event_id: str) -> dict[str, Any]:
    [copy] = [e for e in events if e["event_id"] == event_id]
    return {k: v for k, v in copy.items() if k not in PER_SEND}


def _replicas(relays: MakeRelay, vendors: MakeVendor, state: str,
              redis_url: str | None) -> tuple[RelayProcess, RelayProcess, StandInVendor]:
    ads = vendors(name="ads")
    destinations = {"ads": webhook(ads, purpose="ads", events=["page_view"])}
    if state == "memory":
        relay = relays(destinations=destinations)
        return relay, relay, ads
    env = {"RELAY_STATE": str(redis_url)}
    a = relays(env=env, name="a", destinations=destinations)
    b = relays(env=env, name="b", destinations=destinations)
    return a, b, ads


@pytest.mark.parametrize("choice", [ALL, ANALYTICS_ONLY], ids=["accept-all", "analytics-only"])
@pytest.mark.parametrize("state", ["memory", "redis"])
def test_a_choice_releases_the_landing_page_view_as_if_it_came_first(
        relays: MakeRelay, vendors: MakeVendor, request: pytest.FixtureRequest, state: str,
        choice: dict[str, str]) -> None:
    redis_url = request.getfixturevalue("redis_url") if state == "redis" else None
    a, b, ads = _replicas(relays, vendors, state, redis_url)
    before, after = new_event_id("before"), new_event_id("after")
    with client() as http:
        r = post_browser(http, a, _landing(before), headers=EU)
        assert r.status_code == 202 and r.json() == {"accepted": 1, "duplicates": 0, "held": 1,
                                                     "rejected": []}, r.text
        for relay in {a, b}:  # every replica sees the copies waiting in the shared state
            assert _pending(relay) == {"archive": 1.0, "ads": 1.0}
        time.sleep(SETTLE)
        assert archived(a) == [] and ads.received == [], "sent before the choice"

        # The choice, from the same browser (its cookie), at the other replica.
        r = post_browser(http, b, {"event": "consent_update", "consent": choice}, headers=EU)
        assert r.status_code == 202, r.text
        wait_until(lambda: any(e["event_id"] == before for e in archived(b)), 10,
                   "the released page view in the archive")
        for relay in {a, b}:
            assert _pending(relay) == {"archive": 0.0, "ads": 0.0}

        # The same page view after the choice: remembered (shared), so it goes at once.
        r = post_browser(http, a, _landing(after), headers=EU)
        assert r.status_code == 202 and "held" not in r.json(), r.text
        wait_until(lambda: any(e["event_id"] == after for e in archived(a)), 10,
                   "the later page view in the archive")
        if choice["ads"] == "granted":
            wait_until(lambda: {before, after} <= set(ads.delivered()), 10,
                       "both page views at the ads vendor")
        time.sleep(SETTLE)

    released, later = _copy_of(archived(b), before), _copy_of(archived(a), after)
    assert released == later
    assert released["consent"] == choice
    assert released["context"]["page"]["url"] == "https://shop.example/"
    if choice["ads"] == "granted":
        assert released["context"]["click_ids"] == {"gclid": GCLID}
        sent = ads.delivered_events()
        assert _copy_of(sent, before) == _copy_of(sent, after)
        assert _copy_of(sent, before)["context"]["click_ids"] == {"gclid": GCLID}
        assert ads.delivered() == {before: 1, after: 1}
    else:
        assert "click_ids" not in released["context"]
        assert ads.received == [], "ads was denied: nothing may reach it"
    assert ads.problems == []
