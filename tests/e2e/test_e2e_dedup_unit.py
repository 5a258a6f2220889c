"""The dedup mark and the spool write are one unit (SPEC section 5): a relay on Redis state
and the SQLite spool dies exactly between marking an event's copies and committing them
(the test-only crash point ``RELAY_TEST_CRASH_AT=after-dedup-mark``, ``relay.engine.marks``);
the client, who got no 202, retries after the restart, and the retry is accepted, not
answered as a duplicate, and delivered once."""

from __future__ import annotations

import time

import httpx
import pytest
import redis

from relay.engine.marks import AFTER_MARK, CRASH_ENV

from .conftest import MakeRelay, MakeVendor
from .relayproc import STOP_TIMEOUT
from .rulesdir import webhook
from .wire import client, page_view, post_browser, wait_until

HOOK_SECRET = "e2e-dedup-unit-hook-secret"
DELIVERY_DEADLINE = 30.0


def test_a_retry_after_a_kill_between_dedup_mark_and_commit_is_accepted(
    relays: MakeRelay, vendors: MakeVendor, redis_url: str
) -> None:
    vendor = vendors(secret=HOOK_SECRET, name="unit-vendor")
    relay = relays(env={"RELAY_STATE": redis_url, CRASH_ENV: AFTER_MARK},
                   destinations={"unithook": webhook(vendor, events=["page_view"])})
    ev = page_view()
    with client() as http, pytest.raises(httpx.TransportError):
        post_browser(http, relay, ev)  # the process dies before it can answer
    assert relay.proc is not None
    assert relay.proc.wait(timeout=STOP_TIMEOUT) == 137, "the relay did not stop at the crash point"
    marks = redis.Redis.from_url(redis_url).keys(f"*d:unithook:{ev['event_id']}")
    assert marks, "the relay died before it marked the copy: not the moment under test"
    relay.proc = None  # it is gone; start it again on the same spool, without the crash point
    del relay.env[CRASH_ENV]
    relay.start()

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
