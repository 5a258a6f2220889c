"""Faults against real processes (issue 11, item 5): a vendor that refuses connections, one
that hangs past the destination's timeout, SIGTERM in the middle of a load, and a spool at
its size limit. What test_e2e_delivery.py (5xx for a while, 429 + Retry-After, a 400 dead-
lettered, a failing destination never delaying a healthy one) and test_e2e_crash.py
(SIGKILL) cover is not repeated here."""

from __future__ import annotations

import asyncio
import errno
import json
import signal
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import MakeRelay, MakeVendor
from .load import LoadResult, make_batches, send_batches
from .relayproc import RelayProcess, free_port
from .rulesdir import edit, make_rules, webhook
from .test_e2e_delivery import _send
from .vendor import Answer, StandInVendor
from .wire import client, metric, page_view, post_browser, scrape, wait_until

# Plenty of fast retries: nothing may be dead-lettered while the fault lasts.
PATIENT_RETRY: dict[str, Any] = {"attempts": 10000, "base_backoff": "100ms",
                                 "max_backoff": "1s", "max_age": "1h"}
# SIGTERM: the server's graceful timeout (5 s) plus the delivery drain (3 s,
# relay.runtime.SHUTDOWN_DRAIN_SECONDS), with a wide margin: a bound, not a timing.
EXIT_BOUND = 30.0


def _deliveries(http: httpx.Client, relay: RelayProcess, destination: str,
                outcome: str) -> float:
    return metric(scrape(http, relay), "relay_deliveries_total", destination=destination,
                  outcome=outcome)


def _drained(http: httpx.Client, relay: RelayProcess, destination: str) -> bool:
    return metric(scrape(http, relay), "relay_spool_depth", destination=destination) == 0


def _once_each(counts: dict[str, int], ids: list[str]) -> None:
    assert {i: counts.get(i, 0) for i in ids} == dict.fromkeys(ids, 1), (
        {i: n for i, n in counts.items() if n != 1})


def test_a_vendor_refusing_connections_gets_everything_once_it_listens(
        relays: MakeRelay, vendors: MakeVendor) -> None:
    port = free_port()  # nothing listens here: every attempt is refused
    relay = relays(destinations={
        "late": webhook(f"http://127.0.0.1:{port}/hook", retry=PATIENT_RETRY)})
    with client() as http:
        ids = _send(http, relay, 30)
        wait_until(lambda: _deliveries(http, relay, "late", "retried") >= len(ids), 30,
                   "every copy retried at least once against the refusing port")
        refused = _deliveries(http, relay, "late", "retried")
        vendor = vendors(name="late", port=port)  # the vendor comes up where the relay sends
        wait_until(lambda: set(ids) <= set(vendor.delivered()), 30,
                   "all 30 events at the vendor once it listens", interval=0.25)
        wait_until(lambda: _drained(http, relay, "late"), 15, "the spool drained for 'late'")
        text = scrape(http, relay)
    _once_each(vendor.delivered(), ids)
    assert metric(text, "relay_deliveries_total", destination="late",
                  outcome="dead_lettered") == 0
    assert metric(text, "relay_dlq_depth", destination="late") == 0
    assert metric(text, "relay_deliveries_total", destination="late",
                  outcome="delivered") == len(ids)
    assert vendor.problems == [], vendor.problems[:5]
    print(f"\nrefused: {refused:.0f} retries while nothing listened, then {len(ids)} "
          f"delivered once each in {vendor.attempts()} vendor requests")


def test_a_vendor_hanging_past_the_timeout_is_retried_and_the_relay_stays_responsive(
        relays: MakeRelay, vendors: MakeVendor) -> None:
    vendor = vendors(name="hung")
    # Accepts, reads the request, never answers; released later, it records a failure.
    vendor.set_plan(lambda n, t: Answer(503, hang=True))
    relay = relays(destinations={"hung": webhook(vendor, timeout="1s", retry=PATIENT_RETRY)})
    with client() as http:
        ids = _send(http, relay, 10)
        wait_until(lambda: _deliveries(http, relay, "hung", "retried") >= 2, 30,
                   "two attempts timed out and were retried")
        # Meanwhile ingest is answered as ever: every post gets its 202 (``_send`` asserts).
        ids += _send(http, relay, 40)
        assert http.get(relay.url("/healthz")).status_code == 200
        timed_out = _deliveries(http, relay, "hung", "retried")
        assert vendor.attempts() >= 2 and not any(r.ok for r in vendor.received)
        vendor.respond(200)  # the vendor answers again...
        vendor.release()  # ...and the requests it sat on end (recorded as failed)
        wait_until(lambda: set(ids) <= set(vendor.delivered()), 30,
                   "all 50 events once the vendor answers", interval=0.25)
        wait_until(lambda: _drained(http, relay, "hung"), 15, "the spool drained for 'hung'")
        text = scrape(http, relay)
    _once_each(vendor.delivered(), ids)
    assert metric(text, "relay_dlq_depth", destination="hung") == 0
    assert metric(text, "relay_deliveries_total", destination="hung",
                  outcome="dead_lettered") == 0
    assert vendor.problems == [], vendor.problems[:5]
    print(f"\nhang: {timed_out:.0f} attempts timed out and were retried while 40 more events "
          f"were accepted; then {len(ids)} delivered once each")


def test_a_400_is_dead_lettered_at_once_and_is_no_breaker_strike(
        relays: MakeRelay, vendors: MakeVendor) -> None:
    """A 400 is the vendor refusing that event, not the vendor being down: dead-lettered
    with its answer, never retried, and it does not open the circuit (whose cooldown here is
    an hour: a strike count would block the next good event)."""
    vendor = vendors(name="picky")
    refusal = Answer(400, body=b'{"error":"e2e-picky: event_name is not allowed"}')
    vendor.set_plan(lambda n, t: refusal if n < 8 else Answer())
    relay = relays(destinations={"picky": webhook(
        vendor, retry=PATIENT_RETRY, circuit_breaker={"failures": 3, "cooldown": "1h"})})
    with client() as http:
        refused: list[str] = []

        def dead_letters() -> float:
            return _deliveries(http, relay, "picky", "dead_lettered")

        for n in range(1, 9):  # one at a time: 8 attempts, each answered 400
            refused += _send(http, relay, 1)
            wait_until(lambda: dead_letters() >= n, 15, f"{n} dead letters")  # noqa: B023
        good = _send(http, relay, 3)
        wait_until(lambda: set(good) <= set(vendor.delivered()), 15,
                   "the good events after 8 refusals (an open circuit would hold them 1h)")
        text = scrape(http, relay)
    assert vendor.attempts() == len(refused) + len(good), "a 400 was retried"
    assert metric(text, "relay_deliveries_total", destination="picky", outcome="retried") == 0
    assert metric(text, "relay_circuit_open", destination="picky") == 0
    assert "circuit open" not in relay.log_text()
    done = relay.cli("dlq", "list", "--destination", "picky")
    assert done.returncode == 0, done.stdout + done.stderr
    letters = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert sorted(str(d["event_id"]) for d in letters) == sorted(refused), letters
    for d in letters:
        assert d["status"] == 400 and "event_name is not allowed" in str(d["response"]), d
        assert d["attempts"] == 1, d
    assert vendor.problems == [], vendor.problems[:5]


def _outbox_ids(spool: Path, destination: str, *, leased: bool = False) -> set[str]:
    """The event ids waiting in a stopped relay's spool (``leased``: only those a delivery
    worker had claimed when it stopped)."""
    query = "SELECT event_id FROM outbox WHERE destination = ?"
    if leased:
        query += " AND lease_until > 0"
    with sqlite3.connect(f"file:{spool}?mode=ro", uri=True) as conn:
        return {i for (i,) in conn.execute(query, (destination,))}


def test_sigterm_during_a_load_exits_within_the_grace_and_loses_no_202_event(
        relays: MakeRelay, vendors: MakeVendor) -> None:
    vendor = vendors(name="slow")
    vendor.respond(200, delay=0.3)  # slow: copies wait in the spool while the load runs
    relay = relays(destinations={"slow": webhook(vendor, timeout="10s",
                                                 retry=PATIENT_RETRY)})
    # Enough that the load cannot finish in the moment between the SIGTERM and the server's
    # stop (uvicorn checks for it every 0.1 s): still bounded, a few seconds at most.
    batches = make_batches(3000, prefix="term")
    hung_after: list[int] = []
    signalled = threading.Event()

    def hang_midway(accepted: int) -> None:
        if accepted >= 150 and not hung_after:
            # From now on the vendor sits on what it gets: the batch in flight at the SIGTERM
            # outlasts the delivery drain and is cancelled at the stop, keeping its lease.
            hung_after.append(vendor.attempts())
            vendor.set_plan(lambda n, t: Answer(503, hang=True))
            # The load pauses (this blocks its event loop, the other requests stay in flight)
            # until the SIGTERM is sent, so the stop comes in the middle of it, every run.
            signalled.wait(60)

    results: list[LoadResult] = []
    load = threading.Thread(target=lambda: results.append(asyncio.run(send_batches(
        relay.url("/e"), batches, concurrency=10, on_accepted=hang_midway))), daemon=True)
    load.start()
    wait_until(lambda: hung_after and vendor.attempts() > hung_after[0], 60,
               "150 events accepted, then a delivery the vendor sits on")
    relay.signal(signal.SIGTERM)
    signalled.set()
    assert relay.proc is not None
    try:
        code = relay.proc.wait(timeout=EXIT_BOUND)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the relay did not exit within {EXIT_BOUND:g}s of SIGTERM") from None
    assert code == 0, f"exit code {code} after SIGTERM\n{relay.log_text()[-3000:]}"
    load.join(timeout=60)
    assert not load.is_alive() and results, "the load did not end after the relay stopped"
    first = results[0]
    accepted = set(first.accepted)
    assert len(accepted) >= 150 and first.unsent + first.unanswered, (
        "the load ended before the SIGTERM", len(accepted), first.statuses)

    # Every 202 event is at the vendor or still in the spool: none was lost at the stop.
    waiting = _outbox_ids(relay.spool_path, "slow")
    before = set(vendor.delivered())
    lost = accepted - before - waiting
    assert not lost, f"{len(lost)} accepted, neither delivered nor spooled: {sorted(lost)[:5]}"
    assert waiting, "nothing was left in the spool: SIGTERM came too late to prove anything"
    in_flight = _outbox_ids(relay.spool_path, "slow", leased=True)
    assert in_flight, "no batch was in flight at the stop: the test proved less than it says"

    vendor.respond(200)
    vendor.release()  # what it sat on ends, recorded as failed
    relay.start()  # the same --var, the same spool
    with client() as http:
        wait_until(lambda: accepted <= set(vendor.delivered()), 60,
                   "every 202 event at the vendor after the restart", interval=0.25)
        wait_until(lambda: _drained(http, relay, "slow"), 15, "the spool drained for 'slow'")
        text = scrape(http, relay)
    counts = vendor.delivered()
    redelivered = {i: n for i, n in counts.items() if n > 1}
    assert set(counts) <= accepted | {e["event_id"] for b in first.unanswered for e in b}
    assert metric(text, "relay_dlq_depth", destination="slow") == 0
    assert vendor.problems == [], vendor.problems[:5]
    unanswered = sum(len(b) for b in first.unanswered)
    print(f"\nSIGTERM: {len(accepted)} events accepted before the stop "
          f"({len(before & accepted)} delivered, {len(waiting)} in the spool of which "
          f"{len(in_flight)} in flight, {unanswered} unanswered in flight), exit code {code}; "
          f"all delivered after the restart; {len(redelivered)} redelivered "
          f"({sum(redelivered.values()) - len(redelivered)} extra copies)")


def _spool_full_rules(directory: Path, vendor_dest: dict[str, Any]) -> Path:
    rules = make_rules(directory, relay={"spool_max_bytes": 1024 * 1024},
                       destinations={"down": vendor_dest})

    def archive_purchases_only(data: dict[str, Any]) -> None:
        # The shipped archive drains its copies at once; kept out, the spool only fills.
        data["destinations"]["archive"]["events"] = ["purchase"]

    edit(rules / "destinations.yaml", archive_purchases_only)
    return rules


def _padded() -> dict[str, Any]:
    return page_view(context={"page": {"url": "https://shop.example/" + "p" * 1500}})


def _post_until_refused(http: httpx.Client, relay: RelayProcess,
                        accepted: list[str]) -> httpx.Response | None:
    """Post batches of padded events (adding what is accepted to ``accepted``) until one is
    not answered 202: that answer. 400 x 10 of them is ~6 MB, more than either limit here;
    a relay that hangs fails on the client's timeout."""
    for _ in range(400):
        batch = [_padded() for _ in range(10)]
        r = post_browser(http, relay, batch)
        if r.status_code != 202:
            return r
        accepted += [e["event_id"] for e in batch]
    return None


def _recovers(http: httpx.Client, relay: RelayProcess, vendor: StandInVendor,
              destination: str, accepted: list[str], why: str) -> str:
    """Once ``why`` (the cause of the 503s) is gone: a new event is answered 202 again,
    everything accepted reaches the vendor, the spool drains. The scrape after."""

    def accepts_again() -> list[str]:
        later = [_padded()]
        r = post_browser(http, relay, later)
        assert r.status_code in (202, 503), (r.status_code, r.text)
        return [later[0]["event_id"]] if r.status_code == 202 else []

    accepted += wait_until(accepts_again, 60, f"a 202 once {why}", interval=0.5)
    wait_until(lambda: set(accepted) <= set(vendor.delivered()), 60,
               "every accepted event at the vendor", interval=0.25)
    wait_until(lambda: _drained(http, relay, destination), 15,
               f"the spool drained for '{destination}'")
    return scrape(http, relay)


def test_a_full_spool_answers_503_keeps_what_it_holds_and_accepts_again_when_drained(
        relays: MakeRelay, vendors: MakeVendor, tmp_path: Path) -> None:
    vendor = vendors(name="down")
    vendor.fail_for(3600, status=503)  # down: every copy stays in the spool
    rules = _spool_full_rules(tmp_path / "rules", webhook(vendor, retry=PATIENT_RETRY))
    relay = relays(rules)
    accepted: list[str] = []
    with client() as http:
        refused = _post_until_refused(http, relay, accepted)
        assert refused is not None, f"{len(accepted)} events accepted and no 503: no limit"
        assert refused.status_code == 503, (refused.status_code, refused.text)
        assert refused.headers.get("retry-after") == "5", refused.headers
        assert "spool full" in refused.text, refused.text
        assert accepted, "the very first request was refused"
        # At the limit: more posts are refused whole, what is held stays.
        for _ in range(5):
            r = post_browser(http, relay, [_padded()])
            assert r.status_code == 503, (r.status_code, r.text)
        text = scrape(http, relay)
        assert metric(text, "relay_spool_depth", destination="down") == len(accepted)
        assert not any(r.ok for r in vendor.received)

        vendor.respond(200)  # the vendor is back: delivery drains the spool
        text = _recovers(http, relay, vendor, "down", accepted, "delivery drained the spool")
    assert metric(text, "relay_dlq_depth", destination="down") == 0
    assert metric(text, "relay_ingest_failures_total", status="500") == 0
    assert vendor.problems == [], vendor.problems[:5]
    print(f"\nspool limit: {len(accepted) - 1} events accepted up to 1 MiB, then 503 + "
          f"Retry-After; 202 again after draining; all {len(accepted)} delivered")


DISK_BYTES = 4 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted where the ``relays`` fixture puts the relay's --var (root only:
    a test that needs it fails, never skips, when mounting is not permitted). Requested
    before ``relays``, it is unmounted after the relay has stopped."""
    where = tmp_path / "relay" / "var"
    where.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs",
                           str(where)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, (
        f"this test mounts a small tmpfs to fill a disk, and mount failed (it needs root or "
        f"CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def _fill(directory: Path) -> Path:
    """Write a file until the disk is full; the file, to delete to free the space."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb") as fh:
        for _ in range(DISK_BYTES // len(chunk) + 1):
            try:
                fh.write(chunk)
                fh.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
        else:
            raise AssertionError("the small disk never filled up")
    return filler


def test_a_full_disk_answers_503_and_recovers_once_there_is_room(
        small_disk: Path, relays: MakeRelay, vendors: MakeVendor) -> None:
    vendor = vendors(name="disk")
    relay = relays(destinations={"disk": webhook(vendor, retry=PATIENT_RETRY)})
    assert relay.var_dir == small_disk
    with client() as http:
        accepted = _send(http, relay, 20)
        wait_until(lambda: set(accepted) <= set(vendor.delivered()), 30,
                   "the first 20 events at the vendor")
        filler = _fill(small_disk)
        refused = _post_until_refused(http, relay, accepted)
        assert refused is not None, "the disk is full and every commit still succeeded"
        assert refused.status_code == 503, (refused.status_code, refused.text)
        assert refused.headers.get("retry-after") == "5", refused.headers
        assert "not writable" in refused.text, refused.text
        assert metric(scrape(http, relay), "relay_ingest_failures_total", status="500") == 0
        assert relay.running, "the relay died of the full disk"

        filler.unlink()  # room again
        text = _recovers(http, relay, vendor, "disk", accepted, "the disk has room")
    assert metric(text, "relay_ingest_failures_total", status="500") == 0
    assert metric(text, "relay_dlq_depth", destination="disk") == 0
    assert vendor.problems == [], vendor.problems[:5]
    counts = vendor.delivered()
    extra = sum(n - 1 for i, n in counts.items() if n > 1)
    print(f"\ndisk full: {len(accepted) - 1} events accepted before the disk filled, then 503 "
          f"+ Retry-After; 202 again once the space was freed; all {len(accepted)} delivered, "
          f"{extra} extra copies")
