"""An ``event_id`` that cannot travel in an HTTP header must not stall a destination.

Before the fix, ``{"event":"page_view","event_id":" x1"}`` from any browser was accepted; the
webhook destination put the id in ``Idempotency-Key``, h11 refused to send it on every
attempt, each failure was retried and counted by the breaker, the circuit opened, and the
ordinary events behind it waited. Now the envelope refuses such ids (400), and a copy that is
already in the spool (accepted by an older version) is dead-lettered alone, at once.
"""

from __future__ import annotations

import json
import sqlite3
import time

from .conftest import MakeRelay, MakeVendor
from .rulesdir import webhook
from .wire import US, client, metric, page_view, post_browser, scrape, wait_until

EXACT = b'{"event":"page_view","event_id":" x1"}'
BREAKER = {"failures": 2, "cooldown": "1h"}  # two strikes would stall it for the whole test


def test_the_exact_request_is_refused_with_a_clear_400(
        relays: MakeRelay, vendors: MakeVendor) -> None:
    vendor = vendors(name="hook")
    relay = relays(destinations={"hook": webhook(vendor, circuit_breaker=BREAKER)})
    with client() as http:
        for _ in range(3):
            r = http.post(relay.url("/e"), content=EXACT,
                          headers={"Content-Type": "application/json", **US})
            assert r.status_code == 400, r.text
            assert r.json()["error"] == "event_id: must not start or end with whitespace"
        ordinary = page_view()
        assert post_browser(http, relay, ordinary).status_code == 202
        wait_until(lambda: ordinary["event_id"] in vendor.delivered(), 10,
                   "the ordinary event at the vendor")


def test_copies_spooled_before_the_fix_are_dead_lettered_and_do_not_stall_the_rest(
        relays: MakeRelay, vendors: MakeVendor) -> None:
    vendor = vendors(name="hook")
    relay = relays(destinations={"hook": webhook(vendor, circuit_breaker=BREAKER,
                                                 events=["page_view"])},
                   start=False)
    relay.start()
    relay.stop()  # the spool now exists: put in what an older version accepted
    bad = [" x1", "x2 ", " x3 "]
    with sqlite3.connect(relay.spool_path) as db:
        now = time.time()
        db.executemany(
            "INSERT INTO outbox (destination, event_id, payload, created_at, next_at) "
            "VALUES ('hook', ?, ?, ?, ?)",
            [(eid, json.dumps({"event": "page_view", "event_id": eid}).encode(), now, now)
             for eid in bad])
    relay.start()
    with client() as http:
        ordinary = [page_view() for _ in range(3)]
        assert post_browser(http, relay, ordinary).status_code == 202
        wait_until(lambda: {e["event_id"] for e in ordinary} <= set(vendor.delivered()), 10,
                   "the ordinary events at the vendor, behind the unsendable ones")
        letters = wait_until(
            lambda: (d := http.get(relay.admin_url("/dlq")).json()) and len(d) == 3 and d,
            10, "the three unsendable copies in the dead-letter store")
        text = scrape(http, relay)
    assert sorted(d["event_id"] for d in letters) == sorted(bad)
    for letter in letters:
        assert letter["response"].startswith(
            "cannot build the request: header Idempotency-Key:"), letter
    assert not set(bad) & set(vendor.delivered())
    assert metric(text, "relay_circuit_open", destination="hook") == 0
    assert metric(text, "relay_deliveries_total", destination="hook", outcome="retried") == 0
    assert "Traceback" not in relay.log_text()
