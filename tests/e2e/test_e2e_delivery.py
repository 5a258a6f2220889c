"""Delivery semantics (SPEC section 5) against stand-in vendors: retries until the vendor
recovers, Retry-After, dead letters with the vendor's answer (CLI and admin), replay exactly
once, and a failing destination never delaying a healthy one."""

from __future__ import annotations

import json
import time

import httpx

from .conftest import MakeRelay, MakeVendor
from .relayproc import RelayProcess
from .rulesdir import webhook
from .vendor import Answer
from .wire import client, metric, page_view, post_browser, scrape, wait_until

SECRET = "e2e-delivery-hook-secret"


def _send(http: httpx.Client, relay: RelayProcess, n: int, per_request: int = 5) -> list[str]:
    ids: list[str] = []
    for start in range(0, n, per_request):
        batch = [page_view() for _ in range(min(per_request, n - start))]
        r = post_browser(http, relay, batch)
        assert r.status_code == 202 and r.json()["accepted"] == len(batch), r.text
        ids.extend(e["event_id"] for e in batch)
    return ids


def test_a_destination_failing_for_a_while_receives_everything(
        relays: MakeRelay, vendors: MakeVendor) -> None:
    vendor = vendors(secret=SECRET, name="flaky")
    down = Answer(500, body=b"upstream down")
    vendor.set_plan(lambda n, t: down if n < 3 else Answer())  # its first 3 requests fail
    relay = relays(destinations={"flaky": webhook(vendor)})
    with client() as http:
        ids = _send(http, relay, 50)
        wait_until(lambda: set(ids) <= set(vendor.delivered()), 30,
                   "all 50 events at the vendor after its outage", interval=0.25)
        text = scrape(http, relay)
    failed = [r for r in vendor.received if r.status == 500]
    assert failed, "the vendor never saw a failing attempt: the test proved nothing"
    assert vendor.problems == [], vendor.problems[:5]
    assert metric(text, "relay_deliveries_total", destination="flaky", outcome="retried") > 0
    assert metric(text, "relay_deliveries_total", destination="flaky",
                  outcome="delivered") >= len(ids)
    assert metric(text, "relay_dlq_depth", destination="flaky") == 0
    print(f"\nretries: {len(ids)} events delivered after {len(failed)} failed attempts "
          f"({vendor.attempts()} requests)")


def test_retry_after_is_honoured(relays: MakeRelay, vendors: MakeVendor) -> None:
    vendor = vendors(name="ratelimited")
    busy = Answer(429, body=b'{"error":"slow down"}', headers=(("Retry-After", "2"),))
    vendor.set_plan(lambda n, t: busy if n == 0 else Answer())
    relay = relays(destinations={"rl": webhook(vendor)})
    with client() as http:
        (eid,) = _send(http, relay, 1)
    wait_until(lambda: eid in vendor.delivered(), 15, "the event after a 429 + Retry-After: 2")
    first, second = vendor.received[:2]
    assert first.status == 429 and second.ok
    assert second.at - first.at >= 1.9, f"retried after {second.at - first.at:.2f}s, not 2s"


def _dlq_lines(relay: RelayProcess, *args: str) -> list[dict[str, object]]:
    done = relay.cli("dlq", "list", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_a_rejected_event_is_dead_lettered_and_replayed_once(
        relays: MakeRelay, vendors: MakeVendor, spool_env: dict[str, str]) -> None:
    vendor = vendors(secret=SECRET, name="strict")
    vendor.respond(400, body=b'{"error":"e2e-vendor: field properties.x is not allowed"}')
    relay = relays(env=spool_env, destinations={"strict": webhook(vendor)})
    with client() as http:
        ids = _send(http, relay, 5)

        def dead() -> list[dict[str, object]]:
            r = http.get(relay.admin_url("/dlq"), params={"destination": "strict"})
            assert r.status_code == 200, r.text
            letters: list[dict[str, object]] = r.json()
            return letters if len(letters) >= len(ids) else []

        letters = wait_until(dead, 15, "5 dead letters on GET /dlq")
        assert sorted(str(d["event_id"]) for d in letters) == sorted(ids), letters
        for d in letters:
            assert d["destination"] == "strict" and d["status"] == 400, d
            assert "field properties.x is not allowed" in str(d["response"]), d
        assert len(vendor.received) == len(ids), "a 400 must not be retried"
        text = scrape(http, relay)
        assert metric(text, "relay_deliveries_total", destination="strict",
                      outcome="dead_lettered") == len(ids)
        assert metric(text, "relay_dlq_depth", destination="strict") == len(ids)

        listed = _dlq_lines(relay)
        assert sorted(str(d["event_id"]) for d in listed) == sorted(ids), listed
        for d in listed:
            assert d["destination"] == "strict" and d["status"] == 400, d
            assert "field properties.x is not allowed" in str(d["response"]), d
        assert _dlq_lines(relay, "--destination", "archive") == []
        bad = relay.cli("dlq", "list", "--destination", "nope")
        assert bad.returncode == 1 and "nope" in bad.stderr, bad.stderr

        vendor.respond(200)  # the vendor is fixed
        done = relay.cli("dlq", "replay", "--destination", "strict")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "replayed 5" in done.stdout, done.stdout
        wait_until(lambda: set(ids) <= set(vendor.delivered()), 15,
                   "the replayed events at the vendor")
        time.sleep(3)  # anything delivered twice would show by now (poll interval 1 s)
        counts = vendor.delivered()
        assert {i: counts[i] for i in ids} == dict.fromkeys(ids, 1), counts
        assert _dlq_lines(relay) == []
        r = http.get(relay.admin_url("/dlq"))
        assert r.status_code == 200 and r.json() == [], r.text
        text = scrape(http, relay)
        for name in ("relay_spool_depth", "relay_dlq_depth"):
            for dest in ("strict", "archive"):
                assert metric(text, name, destination=dest) >= 0, (name, dest, text)
    assert vendor.problems == [], vendor.problems[:5]


def test_a_failing_destination_never_delays_a_healthy_one(
        relays: MakeRelay, vendors: MakeVendor) -> None:
    hanging = vendors(name="hanging")
    hanging.hang()
    broken = vendors(name="broken")
    broken.respond(500, body=b'{"error":"always broken"}')
    healthy = vendors(secret=SECRET, name="healthy")
    relay = relays(destinations={
        "hanging": webhook(hanging, timeout="3s"),
        "broken": webhook(broken),
        "healthy": webhook(healthy),
    })
    bound = 2.0  # seconds from the 202 to the healthy vendor, for every event
    with client() as http:
        sent_at: dict[str, float] = {}
        for _ in range(20):  # over 5 s: through the hanging one's timeouts and retries
            for eid in _send(http, relay, 10, per_request=10):
                sent_at[eid] = time.monotonic()
            time.sleep(0.25)
        wait_until(lambda: set(sent_at) <= set(healthy.delivered()), 15,
                   "all 200 events at the healthy vendor")
    first_ok: dict[str, float] = {}
    for r in healthy.received:
        if r.ok:
            for e in r.events:
                first_ok.setdefault(e["event_id"], r.at)
    lags = sorted(first_ok[eid] - sent_at[eid] for eid in sent_at)
    assert lags[-1] < bound, f"slowest healthy delivery took {lags[-1]:.2f}s (bound {bound}s)"
    assert hanging.attempts() > 0, "the hanging vendor was never tried: the test proved nothing"
    assert not any(r.ok for r in hanging.received)
    assert broken.received and not any(r.ok for r in broken.received)
    assert healthy.problems == [], healthy.problems[:5]
    print(f"\nisolation: healthy vendor got 200 events, lag p50 "
          f"{lags[len(lags) // 2] * 1000:.0f} ms max {lags[-1] * 1000:.0f} ms, while "
          f"'hanging' never answered and 'broken' "
          f"answered 500 {len(broken.received)} times")
