"""The dedup mark and the spool write are one unit (SPEC section 5): a relay on Redis state
and the SQLite spool dies exactly between marking an event's copies and committing them
(the test-only crash point ``RELAY_TEST_CRASH_AT=after-dedup-mark``, ``relay.engine.marks``);
the client, who got no 202, retries after the restart, and the retry is accepted, not
answered as a duplicate, and delivered once. The same for a consent choice that released a
waiting page view; and copies of one event sent to two replicas at once make one delivery."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from relay.engine.marks import AFTER_MARK, CRASH_ENV

from .conftest import MakeRelay, MakeVendor
from .relayproc import STOP_TIMEOUT, RelayProcess
from .rulesdir import webhook
from .wire import archived, client, page_view, post_browser, wait_until

HOOK_SECRET = "e2e-dedup-unit-hook-secret"
DELIVERY_DEADLINE = 30.0
EU = {"CF-IPCountry": "DE"}  # the shipped purposes: analytics waits for a choice there
CONCURRENT_EVENTS = 20


def _crashed(relay: RelayProcess) -> None:
    """The relay died at the crash point; start it again on the same spool without it."""
    assert relay.proc is not None
    assert relay.proc.wait(timeout=STOP_TIMEOUT) == 137, "the relay did not stop at the crash point"
    relay.proc = None
    del relay.env[CRASH_ENV]
    relay.start()


def test_a_retry_after_a_kill_between_dedup_mark_and_commit_is_accepted(
    relays: MakeRelay, vendors: MakeVendor, redis_url: str
) -> None:
    vendor = vendors(secret=HOOK_SECRET, name="unit-vendor")
    relay = relays(env={"RELAY_STATE": redis_url, CRASH_ENV: AFTER_MARK},
                   destinations={"unithook": webhook(vendor, events=["page_view"])})
    ev = page_view()
    with client() as http, pytest.raises(httpx.TransportError):
        post_browser(http, relay, ev)  # the process dies before it can answer
    marks = redis.Redis.from_url(redis_url).keys(f"*d:unithook:{ev['event_id']}")
    assert marks, "the relay died before it marked the copy: not the moment under test"
    _crashed(relay)

    with client() as http:
        retry = post_browser(http, relay, ev)  # the client retries what got no 202
        assert retry.status_code == 202, retry.text
        assert retry.json() == {"accepted": 1, "duplicates": 0, "rejected": []}, retry.text
        wait_until(lambda: vendor.delivered()[ev["event_id"]] >= 1, DELIVERY_DEADLINE,
                   "the retried event at the stand-in vendor")
        # Once committed, the mark is confirmed: the next copy is the duplicate.
        again = post_browser(http, relay, ev)
        assert again.status_code == 202, again.text
        assert again.json() == {"accepted": 0, "duplicates": 1, "rejected": []}, again.text
    time.sleep(1.5)  # a wrongly forwarded second copy would have reached the vendor by now
    assert vendor.delivered()[ev["event_id"]] == 1, vendor.delivered()
    assert vendor.problems == [], vendor.problems[:5]


def test_a_choice_retried_after_a_kill_before_its_commit_still_releases_the_waiting_event(
    relays: MakeRelay, vendors: MakeVendor, redis_url: str
) -> None:
    """A page view waits for the browser's choice (in Redis); the relay dies while the
    choice's request has routed the released copies and not committed them. Nothing of
    that request was recorded, so the browser's retry of the choice releases the page view,
    and it is delivered once."""
    vendor = vendors(secret=HOOK_SECRET, name="consent-vendor")
    relay = relays(env={"RELAY_STATE": redis_url, CRASH_ENV: AFTER_MARK},
                   destinations={"unithook": webhook(vendor, events=["page_view"])})
    ev = page_view()
    choice = {"event": "consent_update", "consent": {"analytics": "granted"}}
    with client() as http:  # one browser: its cookie is kept between the requests
        r = post_browser(http, relay, ev, headers=EU)
        assert r.status_code == 202 and r.json()["held"] == 1, r.text
        with pytest.raises(httpx.TransportError):
            post_browser(http, relay, choice, headers=EU)
        _crashed(relay)
        retry = post_browser(http, relay, choice, headers=EU)
        assert retry.status_code == 202, retry.text
        wait_until(lambda: vendor.delivered()[ev["event_id"]] >= 1, DELIVERY_DEADLINE,
                   "the released page view at the stand-in vendor")
        wait_until(lambda: any(e["event_id"] == ev["event_id"] for e in archived(relay)),
                   DELIVERY_DEADLINE, "the released page view in the archive")
    time.sleep(1.5)  # a second copy would have arrived by now
    assert vendor.delivered()[ev["event_id"]] == 1, vendor.delivered()
    assert [e["event_id"] for e in archived(relay)].count(ev["event_id"]) == 1


def test_copies_of_one_event_at_two_replicas_at_once_are_delivered_once(
    relays: MakeRelay, vendors: MakeVendor, redis_url: str
) -> None:
    vendor = vendors(secret=HOOK_SECRET, name="race-vendor")
    destinations = {"unithook": webhook(vendor, events=["page_view"])}
    a = relays(env={"RELAY_STATE": redis_url}, name="a", destinations=destinations)
    b = relays(env={"RELAY_STATE": redis_url}, name="b", destinations=destinations)
    events = [page_view() for _ in range(CONCURRENT_EVENTS)]

    def send(target: tuple[RelayProcess, dict[str, object]]) -> httpx.Response:
        with client() as http:
            return post_browser(http, target[0], target[1])

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = [list(pool.map(send, [(a, ev), (b, ev)])) for ev in events]
    for ev, pair in zip(events, answers, strict=True):
        assert [r.status_code for r in pair] == [202, 202], [r.text for r in pair]
        bodies = [r.json() for r in pair]
        assert sorted((body["accepted"], body["duplicates"]) for body in bodies) == [
            (0, 1), (1, 0)], (ev["event_id"], bodies)
    ids = {str(ev["event_id"]) for ev in events}
    wait_until(lambda: ids <= set(vendor.delivered()), DELIVERY_DEADLINE,
               "every event at the stand-in vendor")
    time.sleep(1.5)  # a second copy would have arrived by now
    assert {eid: n for eid, n in vendor.delivered().items() if eid in ids} == dict.fromkeys(ids, 1)
