"""Dedup through Redis state (``relay.state: redis://``): a repeated event_id is a duplicate
across a restart and across two relays. Redis is required: these tests fail without it."""

from __future__ import annotations

import time

import redis

from .conftest import MakeRelay
from .wire import archived, client, page_view, post_browser, wait_until


def test_redis_state_dedups_an_event_id_across_a_restart(relays: MakeRelay,
                                                         redis_url: str) -> None:
    relay = relays(env={"RELAY_STATE": redis_url})
    ev = page_view()
    with client() as http:
        r = post_browser(http, relay, ev)
        assert r.status_code == 202 and r.json() == {"accepted": 1, "duplicates": 0,
                                                     "rejected": []}, r.text
        wait_until(lambda: any(e["event_id"] == ev["event_id"] for e in archived(relay)), 10,
                   "the first copy in the archive")
    keys = redis.Redis.from_url(redis_url).keys("*")
    assert keys, "the relay wrote nothing to Redis: is relay.state honoured?"

    relay.kill()  # no graceful shutdown: the dedup marks must already be in Redis
    relay.start()
    with client() as http:
        r = post_browser(http, relay, ev)
        assert r.status_code == 202, r.text
        assert r.json() == {"accepted": 0, "duplicates": 1, "rejected": []}, r.text
    time.sleep(1.5)  # a wrongly forwarded copy would be archived by now
    copies = [e for e in archived(relay) if e["event_id"] == ev["event_id"]]
    assert len(copies) == 1, copies


def test_two_relays_share_dedup_through_redis(relays: MakeRelay, redis_url: str) -> None:
    a = relays(env={"RELAY_STATE": redis_url}, name="a")
    b = relays(env={"RELAY_STATE": redis_url}, name="b")
    ev = page_view()
    with client() as http:
        assert post_browser(http, a, ev).json()["accepted"] == 1
        r = post_browser(http, b, ev)
        assert r.status_code == 202 and r.json()["duplicates"] == 1, r.text
        other = page_view()
        assert post_browser(http, b, other).json()["accepted"] == 1
        assert post_browser(http, a, other).json()["duplicates"] == 1
