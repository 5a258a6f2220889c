"""``relay serve --workers 3`` on one spool, SQLite (WAL, leased claims) or Redis Streams
(consumer groups; state on Redis either way): a
bounded load drained by three processes to a slow stand-in vendor, so that their claims
overlap. Each ``(event_id, destination)`` reaches the vendor exactly once and none is lost;
after one worker is killed with SIGKILL mid-drain (the main process starts another), still
none is lost, and the only copies sent twice are those the killed worker had leased: sent
by it (the vendor answered, the worker died before its ack) and once more by a live worker
when the lease expired (on Redis: when ``spool_claim_after`` passed)."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import time

import httpx

from .conftest import MakeRelay, MakeVendor
from .load import LoadResult, make_batches, send_batches
from .procs import alive, ports_to, uptime_over
from .relayproc import RelayProcess
from .rulesdir import webhook
from .vendor import StandInVendor
from .wire import archived, metric, scrape, wait_until

WORKERS = 3
FIRST = 1000  # events drained with every worker up
SECOND = 1000  # events drained while one worker is killed
BATCH = 10  # events per vendor request
DELAY = 0.2  # seconds the vendor takes per request: the drain lasts seconds, claims overlap
CONCURRENCY = 2  # delivery workers per destination, per process
KILL_TRIES = 1000
FILE_BATCH = 500  # relay.destinations.file.MAX_BATCH: what the killed worker could hold


def _workers(relay: RelayProcess) -> dict[str, int]:
    """Running workers: id -> pid (their files under var/metrics)."""
    out = {}
    for path in (relay.var_dir / "metrics").glob("*.json"):
        if path.name != "exited.json":
            record = json.loads(path.read_bytes())
            if alive(record["pid"]):
                out[record["id"]] = int(record["pid"])
    return out


def _page(relay: RelayProcess) -> str:
    with httpx.Client(timeout=10.0, trust_env=False) as c:
        return scrape(c, relay)


def _send(relay: RelayProcess, total: int, prefix: str) -> LoadResult:
    batches = make_batches(total, prefix=prefix)
    result = asyncio.run(send_batches(relay.url("/e"), batches, concurrency=12))
    assert set(result.statuses) == {"202"}, result.statuses  # no 503: the spool kept up
    assert len(result.accepted) == total and not result.unsent
    return result


def _drained(relay: RelayProcess) -> bool:
    page = _page(relay)  # each scrape counts the spool again
    return all(metric(page, "relay_spool_depth", destination=d) == 0 for d in ("hook", "archive"))


def _senders(vendor: StandInVendor, pids: dict[str, int]) -> set[int]:
    """Which of ``pids`` sent a request the vendor still has a connection for."""
    owners = {port: pid for pid in pids.values() for port in ports_to(pid, vendor.port)}
    return {owners[r.peer_port] for r in vendor.received if r.peer_port in owners}


def _deliveries(vendor: StandInVendor) -> dict[str, list[int]]:
    """event_id -> the sender port of each 2xx request that carried it, in order."""
    out: dict[str, list[int]] = collections.defaultdict(list)
    for r in vendor.received:
        if r.ok:
            for e in r.events:
                out[str(e["event_id"])].append(r.peer_port)
    return out


def test_three_workers_drain_one_spool_exactly_once_and_survive_a_kill(
        relays: MakeRelay, vendors: MakeVendor, redis_url: str,
        spool_env: dict[str, str]) -> None:
    """On SQLite (leased claims) and on Redis Streams (one consumer per worker; a killed
    one's claims taken by the others after ``spool_claim_after``, here 3 s: longer than the
    destination's 2 s timeout, so no live worker's claim is taken from it)."""
    vendor = vendors(batch=True)
    vendor.respond(delay=DELAY)
    relay = relays(env={"RELAY_STATE": redis_url, **spool_env},
                   args=["--workers", str(WORKERS)], relay={"spool_claim_after": "3s"},
                   destinations={"hook": webhook(vendor, concurrency=CONCURRENCY,
                                                 batch_size=BATCH, timeout="2s")})
    wait_until(lambda: metric(_page(relay), "relay_workers", state="answered") == WORKERS,
               30, "every worker answering")

    # 1. Every worker up: exactly once.
    first = _send(relay, FIRST, "one")
    wait_until(lambda: set(vendor.delivered()) >= set(first.accepted), 60,
               "the first events delivered")
    counts = vendor.delivered()
    assert set(counts) == set(first.accepted)
    twice = {k: n for k, n in counts.items() if n != 1}
    assert not twice, f"sent more than once with every worker up: {twice}"
    assert vendor.problems == []
    assert vendor.most_in_flight() >= 2, "the vendor never held two requests at once"
    pids = _workers(relay)
    assert len(pids) == WORKERS
    assert len(_senders(vendor, pids)) >= 2, "one worker sent everything: no overlap"
    page = _page(relay)  # the scrape recounts the spool: every worker's puts and acks
    assert metric(page, "relay_spooled_total", destination="hook") == FIRST
    assert metric(page, "relay_deliveries_total", destination="hook",
                  outcome="delivered") == FIRST
    wait_until(lambda: metric(_page(relay), "relay_spool_depth", destination="hook") == 0,
               20, "the hook's spool depth back to 0")

    # 2. One worker killed mid-drain.
    wait_until(lambda: all(uptime_over(pid, 6.0) for pid in pids.values()), 15,
               "the workers up for 6 s")
    seen = len(vendor.received)
    second = _send(relay, SECOND, "two")
    wait_until(lambda: len(vendor.received) >= seen + 10, 30, "the second drain under way")
    victim_pid, victim_ports, stopped_at = _kill_a_sender(vendor, _workers(relay))
    pending = metric(_page(relay), "relay_spool_depth", destination="hook")
    assert pending > 0, "the drain was over before the kill"
    wait_until(lambda: len(_workers(relay)) == WORKERS and victim_pid not in
               _workers(relay).values(), 30, "a new worker in the killed one's place")

    accepted = set(first.accepted) | set(second.accepted)
    wait_until(lambda: set(vendor.delivered()) >= accepted, 90,
               "every accepted event delivered")
    wait_until(lambda: _drained(relay), 90,
               "every copy acked (the killed worker's leases expired and were taken over)")
    deliveries = _deliveries(vendor)
    assert set(deliveries) == accepted, "the vendor got events nobody sent"
    redelivered = {eid: ports for eid, ports in deliveries.items() if len(ports) > 1}
    by_others = {eid: ports for eid, ports in redelivered.items()
                 if sum(p not in victim_ports for p in ports) > 1}
    assert not by_others, f"copies sent twice by live workers: {list(by_others)[:10]}"
    # What the vendor answered the killed worker after it stopped, it never acked.
    unacked = {str(e["event_id"]) for r in vendor.received if r.peer_port in victim_ports
               and r.answered_at > stopped_at and r.ok for e in r.events}
    assert unacked and unacked <= set(redelivered), unacked - set(redelivered)
    print(f"\nkill -9 of worker {victim_pid} with {pending:.0f} copies waiting: "
          f"{len(redelivered)} copies it had leased were delivered again "
          f"({sum(len(p) for p in deliveries.values()) - len(accepted)} extra deliveries)")
    assert vendor.problems == []

    written = collections.Counter(e["event_id"] for e in archived(relay))
    assert set(written) >= accepted, "an accepted event is missing from the archive"
    extra = sum(n - 1 for n in written.values())
    print(f"archive: {extra} lines written twice (the killed worker's unacked batch)")
    assert extra <= FILE_BATCH
    assert "exited (code -9)" in relay.log_text()
    assert relay.stop() == 0


def _kill_a_sender(vendor: StandInVendor, pids: dict[str, int],
                   ) -> tuple[int, set[int], float]:
    """SIGKILL a worker while the vendor holds a request of its: stopped first (SIGSTOP),
    so that its connections can be listed before it dies. (pid, its ports, when stopped)."""
    for _ in range(KILL_TRIES):
        for pid in pids.values():
            if not ports_to(pid, vendor.port) & vendor.in_flight_ports():
                continue
            os.kill(pid, signal.SIGSTOP)
            stopped_at = time.monotonic()
            ports = ports_to(pid, vendor.port)
            if ports & vendor.in_flight_ports():  # still held now that it cannot ack
                os.kill(pid, signal.SIGKILL)
                return pid, ports, stopped_at
            os.kill(pid, signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError("no worker had a request at the vendor")
