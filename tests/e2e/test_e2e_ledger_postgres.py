"""Two ``relay serve`` processes (shared state on Redis) sharing one PostgreSQL ledger
(``relay.ledger.url: postgresql://...``): ``relay trace`` and ``relay reconcile`` run in the
first relay's folder see what went through the second one too; and the workers of one
``relay serve --workers 2`` writing the same database."""

from __future__ import annotations

import json
import time
from typing import Any

from relay.ledger.base import iso

from .conftest import MakeRelay
from .relayproc import RelayProcess
from .test_e2e_workers import _answered, _own, _workers
from .wire import client, page_view, post_browser, wait_until

WAIT = 30.0


def _trace(relay: RelayProcess, event_id: str) -> list[dict[str, Any]] | None:
    done = relay.cli("trace", event_id, "--var", str(relay.var_dir), "--format", "json")
    if done.returncode != 0:
        return None
    hops: list[dict[str, Any]] = json.loads(done.stdout)["hops"]
    return hops if any(h["hop"] == "delivered" for h in hops) else None


def _archive_delivered(relay: RelayProcess, since: str, want: int) -> dict[str, Any] | None:
    """``relay reconcile --by destination``'s ``archive`` row once it counts ``want``
    deliveries."""
    done = relay.cli("reconcile", "--var", str(relay.var_dir), "--since", since, "--by",
                     "destination", "--format", "json")
    assert done.returncode == 0, done.stderr
    rows = [r for r in json.loads(done.stdout)["rows"] if r["destination"] == "archive"]
    return rows[0] if rows and rows[0]["delivered"] == want else None


def test_two_relays_share_one_postgresql_ledger(relays: MakeRelay, redis_url: str,
                                                postgres_url: str) -> None:
    shared = {"ledger": {"url": postgres_url}}
    a = relays(env={"RELAY_STATE": redis_url}, name="a", relay=shared)
    b = relays(env={"RELAY_STATE": redis_url}, name="b", relay=shared)
    since = iso(time.time() - 60)
    via_a, via_b = page_view(), page_view()
    with client() as http:
        assert post_browser(http, a, via_a).json()["accepted"] == 1
        assert post_browser(http, b, via_b).json()["accepted"] == 1

    # The second relay's event, traced from the first relay's folder.
    hops = wait_until(lambda: _trace(a, via_b["event_id"]), WAIT,
                      "the second relay's delivery in the shared ledger")
    names = [h["hop"] for h in hops]
    assert names[0] == "received" and "spooled" in names and "delivered" in names
    assert all(h["source"] == "browser" and h["event"] == "page_view" for h in hops)
    assert not (a.var_dir / "ledger.db").exists()  # no replica keeps a file of its own
    wait_until(lambda: _trace(b, via_a["event_id"]), WAIT,
               "the first relay's delivery, seen from the second")

    archive = wait_until(lambda: _archive_delivered(a, since, 2), WAIT,
                         "both deliveries counted by reconcile")
    assert (archive["browser"], archive["backend"], archive["delivered"]) == (2, 0, 2)
    total = a.cli("reconcile", "--var", str(a.var_dir), "--since", since, "--by", "",
                  "--format", "json")
    assert json.loads(total.stdout)["rows"][0]["browser"] == 2  # each receive once


WORKER_EVENTS = 40


def _own_received(worker: dict[str, Any]) -> float:
    return _own(worker, "relay_events_received", "relay_events_received_total")


def test_workers_of_one_relay_share_the_postgresql_ledger(relays: MakeRelay, redis_url: str,
                                                          postgres_url: str) -> None:
    """``relay serve --workers 2``: every worker writes the ledger's rows to the one
    database; each event is received once and delivered once, whichever worker took it."""
    relay = relays(env={"RELAY_STATE": redis_url}, args=["--workers", "2"],
                   relay={"ledger": {"url": postgres_url}})
    wait_until(lambda: _answered(relay, 2), 20, "both workers answering")
    since = iso(time.time() - 60)
    ids = []
    for _ in range(WORKER_EVENTS):
        with client() as http:  # a connection each: either worker may accept it
            event = page_view()
            assert post_browser(http, relay, event).json()["accepted"] == 1
            ids.append(event["event_id"])

    archive = wait_until(lambda: _archive_delivered(relay, since, WORKER_EVENTS), WAIT,
                         "every worker's deliveries in the shared ledger")
    assert (archive["browser"], archive["delivered"]) == (WORKER_EVENTS, WORKER_EVENTS)
    assert not (relay.var_dir / "ledger.db").exists()
    hops = _trace(relay, ids[-1])
    assert hops is not None and [h["hop"] for h in hops].count("received") == 1
    own = [_own_received(w) for w in _workers(relay)]  # both workers took some
    assert len(own) == 2 and sum(own) == WORKER_EVENTS and all(own), f"per worker: {own}"
