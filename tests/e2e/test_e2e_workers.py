"""``relay serve --workers 2`` (Redis state, one SQLite spool): one ``/metrics`` page adds up
both workers' figures whichever worker answers the scrape, and keeps counting up when a
worker is killed and started again; ``SIGHUP`` reloads each worker's rules in place."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import httpx

from .conftest import MakeRelay
from .procs import alive, uptime_over
from .relayproc import RelayProcess
from .wire import (
    archived,
    client,
    metric,
    page_view,
    post_backend,
    post_browser,
    purchase,
    scrape,
    wait_until,
)

BROWSER_EVENTS = 90
BACKEND_EVENTS = 30
TOTAL = BROWSER_EVENTS + BACKEND_EVENTS
MOST_SCRAPES = 200


def _workers(relay: RelayProcess) -> list[dict[str, Any]]:
    """Each running worker's file under var/metrics (its own figures, pid and pages)."""
    out = []
    for path in sorted((relay.var_dir / "metrics").glob("*.json")):
        if path.name != "exited.json":
            record = json.loads(path.read_bytes())
            if alive(record["pid"]):
                out.append(record)
    return out


def _own(record: dict[str, Any], family: str, sample: str) -> float:
    return float(sum(v for name, _, v in record["families"][family][1] if name == sample))


def _page(relay: RelayProcess) -> str:
    """One scrape on a connection of its own, so either worker may accept it."""
    with httpx.Client(timeout=10.0, trust_env=False) as c:
        return scrape(c, relay)


def _answered(relay: RelayProcess, n: int) -> bool:
    return metric(_page(relay), "relay_workers", state="answered") == n


def _send(relay: RelayProcess, first: int, n_browser: int, n_backend: int) -> list[str]:
    """Events posted one per connection (the workers share the listening socket, so each
    connection goes to either); their ids."""
    ids = []
    for i in range(n_browser + n_backend):
        with client() as c:
            if i < n_browser:
                ev = page_view(f"w-{first + i}")
                r = post_browser(c, relay, ev)
            else:
                ev = purchase(f"w-{first + i}")
                r = post_backend(c, relay, ev)
            assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
            ids.append(ev["event_id"])
    return ids


def _check(page: str, browser: int, backend: int) -> None:
    total = browser + backend
    assert metric(page, "relay_events_received_total") == total, page
    assert metric(page, "relay_events_received_total", source="browser", event="page_view") \
        == browser
    assert metric(page, "relay_events_received_total", source="backend", event="purchase") \
        == backend
    assert metric(page, "relay_spooled_total", destination="archive") == total
    assert metric(page, "relay_deliveries_total", destination="archive",
                  outcome="delivered") == total
    assert metric(page, "relay_ingest_latency_seconds_count") == total  # one per request
    assert metric(page, "relay_delivery_latency_seconds_bucket", destination="archive",
                  le="+Inf") == metric(page, "relay_delivery_latency_seconds_count")
    assert metric(page, "relay_spool_depth", destination="archive") == 0


def test_one_page_adds_up_every_worker_whichever_answers(relays: MakeRelay,
                                                         redis_url: str) -> None:
    relay = relays(env={"RELAY_STATE": redis_url}, args=["--workers", "2"])
    wait_until(lambda: _answered(relay, 2), 20, "both workers answering")
    ids = _send(relay, 0, BROWSER_EVENTS, BACKEND_EVENTS)
    wait_until(lambda: {e["event_id"] for e in archived(relay)} >= set(ids), 20,
               "every event in the archive")

    _check(_page(relay), BROWSER_EVENTS, BACKEND_EVENTS)  # each worker's file written for it
    workers = _workers(relay)
    assert len(workers) == 2, workers
    own = [_own(w, "relay_events_received", "relay_events_received_total") for w in workers]
    assert sum(own) == TOTAL and all(n > 0 for n in own), f"events per worker: {own}"

    before = {w["id"]: w["pages"] for w in _workers(relay)}
    scrapes = 0
    while True:  # until each worker has answered a few scrapes, every page checked
        page = _page(relay)
        scrapes += 1
        _check(page, BROWSER_EVENTS, BACKEND_EVENTS)
        assert metric(page, "relay_workers", state="answered") == 2
        pages = {w["id"]: w["pages"] - before.get(w["id"], 0) for w in _workers(relay)}
        if len(pages) == 2 and min(pages.values()) >= 3:
            break
        assert scrapes < MOST_SCRAPES, f"one worker answered every scrape: {pages}"
    assert relay.stop() == 0


def test_counts_survive_a_killed_worker_and_sighup_reloads_in_place(relays: MakeRelay,
                                                                   redis_url: str) -> None:
    relay = relays(env={"RELAY_STATE": redis_url}, args=["--workers", "2"])
    wait_until(lambda: _answered(relay, 2), 20, "both workers answering")
    started = metric(_page(relay), "process_start_time_seconds")
    ids = _send(relay, 1000, 40, 10)
    wait_until(lambda: len(archived(relay)) >= 50, 20, "the first events archived")
    _check(_page(relay), 40, 10)  # the page writes every worker's figures first

    relay.signal(signal.SIGHUP)  # to the main process: each worker reloads its rules
    wait_until(lambda: metric(_page(relay), "relay_rules_reloads_total", result="ok") == 2,
               10, "both workers' reloads counted")
    assert len(_workers(relay)) == 2 and metric(_page(relay), "relay_workers",
                                                state="exited") == 0

    victim = max(_workers(relay), key=lambda w: _own(w, "relay_events_received",
                                                     "relay_events_received_total"))
    wait_until(lambda: uptime_over(victim["pid"], 6.0), 15, "the worker up for 6 s")
    os.kill(victim["pid"], signal.SIGKILL)
    wait_until(lambda: len(_workers(relay)) == 2 and victim["id"] not in
               {w["id"] for w in _workers(relay)}, 20, "a new worker in the killed one's place")
    wait_until(lambda: _answered(relay, 2), 20, "both workers answering again")
    page = _page(relay)
    _check(page, 40, 10)  # the killed worker's counts stay
    assert metric(page, "relay_workers", state="exited") == 1
    assert metric(page, "process_start_time_seconds") == started  # the first worker's
    assert metric(page, "relay_rules_reloads_total", result="ok") == 2

    more = _send(relay, 2000, 20, 5)
    wait_until(lambda: {e["event_id"] for e in archived(relay)} >= set(ids + more), 20,
               "the later events archived")
    for _ in range(10):
        _check(_page(relay), 60, 15)
    assert "exited (code -9)" in relay.log_text()
    assert relay.stop() == 0

