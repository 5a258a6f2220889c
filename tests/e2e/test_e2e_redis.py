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


def _dump(r: redis.Redis) -> bytes:
    """Every key and value in the database, as bytes to search."""
    out = []
    for key in r.scan_iter(count=1000):
        kind = r.type(key)
        if kind == b"string":
            value: object = r.get(key)
        elif kind == b"list":
            value = r.lrange(key, 0, -1)
        elif kind == b"hash":
            value = r.hgetall(key)
        elif kind == b"set":
            value = r.smembers(key)
        elif kind == b"zset":
            value = r.zrange(key, 0, -1)
        elif kind == b"stream":
            value = r.xrange(key)
        else:
            value = kind
        out.append(repr((key, value)).encode())
    return b"\n".join(out)


def test_redis_state_holds_no_raw_personal_data(relays: MakeRelay, redis_url: str) -> None:
    """SPEC section 8: no raw IP, email, phone or user agent in the ledger (the shared state:
    dedup marks, held browser copies, copies waiting for a consent choice)."""
    raw_ip, email, phone = "203.0.113.78", "Ledger.Probe@Example.org", "+1 (555) 010-7788"
    ua = "Mozilla/5.0 (X11; Linux x86_64) Chrome/125.0.0.0 Safari/537.36 LedgerProbe/3.1"
    relay = relays(env={"RELAY_STATE": redis_url},
                   relay={"client_ip": {"header": "X-Forwarded-For", "trusted_hops": 1}})
    headers = {"X-Forwarded-For": raw_ip, "User-Agent": ua}
    user = {"email": email, "phone": phone}
    with client() as http:
        # Waits for a consent choice (EU, no consent yet).
        r = post_browser(http, relay, page_view(user=user), headers={**headers,
                                                                     "CF-IPCountry": "DE"})
        assert r.status_code == 202, r.text
        # Held for the backend (purchase: authority backend, enrich_from_browser).
        r = post_browser(http, relay, {"event": "purchase", "event_id": "ledger-o1", "user": user,
                                       "properties": {"order_id": "O1", "value": 1,
                                                      "currency": "USD"}},
                         headers={**headers, "CF-IPCountry": "US"})
        assert r.status_code == 202, r.text
        # Plainly delivered.
        r = post_browser(http, relay, page_view(user=user), headers={**headers,
                                                                     "CF-IPCountry": "US"})
        assert r.status_code == 202, r.text
    dump = _dump(redis.Redis.from_url(redis_url)).lower()
    assert dump, "the relay wrote nothing to Redis"
    needles = {"raw IP": raw_ip, "email": email, "phone": "010-7788", "user agent": "ledgerprobe"}
    found = [f"{what}: {n!r}" for what, n in needles.items() if n.lower().encode() in dump]
    assert not found, f"raw personal data in the Redis state: {found}"
