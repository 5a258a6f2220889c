"""Crash safety (SPEC section 5): a 202 means the event is durable. SIGKILL the relay in the
middle of a load while a vendor is down, start it again on the same spool, and every event
it answered 202 still reaches the vendor (at least once: duplicates are counted, allowed)."""

from __future__ import annotations

import asyncio
import time

from .conftest import MakeRelay, MakeVendor
from .load import make_batches, send_batches
from .rulesdir import webhook
from .wire import archived, client, metric, scrape, wait_until

TOTAL_EVENTS = 3000
KILL_AFTER = 1200  # accepted events before the SIGKILL
CONCURRENCY = 20
DELIVERY_DEADLINE = 60.0
HOOK_SECRET = "e2e-crash-hook-secret"


def test_every_202_event_survives_a_sigkill(relays: MakeRelay, vendors: MakeVendor) -> None:
    vendor = vendors(secret=HOOK_SECRET, batch=True, name="crash-vendor")
    vendor.fail_for(3600, status=503)  # down: copies pile up in the spool
    retry = {"attempts": 100000, "base_backoff": "100ms", "max_backoff": "1s", "max_age": "1h"}
    relay = relays(destinations={"crashhook": webhook(vendor, events=["page_view"],
                                                      retry=retry)})
    batches = make_batches(TOTAL_EVENTS, prefix="crash")
    url = relay.url("/e")

    killed_at: list[float] = []

    def kill_midway(accepted: int) -> None:
        if accepted >= KILL_AFTER and not killed_at:
            relay.kill()  # SIGKILL with requests in flight
            killed_at.append(time.monotonic())

    t0 = time.monotonic()
    first = asyncio.run(send_batches(url, batches, concurrency=CONCURRENCY,
                                     on_accepted=kill_midway))
    assert killed_at, f"the load finished before {KILL_AFTER} events were accepted: {first}"
    assert first.unsent, "the relay was killed after the load had already ended"
    # Start again on the same working directory, spool and ports.
    relay.start()
    with client() as http:
        depth = metric(scrape(http, relay), "relay_spool_depth", destination="crashhook")
    assert depth > 0, "nothing was waiting in the spool after the restart"
    # A client retries what got no answer, then sends the rest.
    second = asyncio.run(send_batches(url, first.unanswered + first.unsent,
                                      concurrency=CONCURRENCY))
    assert not second.unanswered and not second.unsent, second.statuses
    accepted = set(first.accepted) | set(second.accepted)
    assert len(first.accepted) >= KILL_AFTER
    assert len(accepted) == TOTAL_EVENTS, (len(accepted), first.statuses, second.statuses)

    vendor.respond(200)
    t1 = time.monotonic()

    def missing() -> set[str]:
        return accepted - set(vendor.delivered())

    wait_until(lambda: not missing(), DELIVERY_DEADLINE,
               "every 202'd event_id at the stand-in vendor", interval=0.25)
    delivered_in = time.monotonic() - t1
    in_archive = {e["event_id"] for e in archived(relay)}
    assert accepted <= in_archive, f"{len(accepted - in_archive)} accepted events not archived"
    assert vendor.problems == [], vendor.problems[:5]

    counts = vendor.delivered()
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    print(f"\ncrash safety: {len(first.accepted)} events accepted before SIGKILL "
          f"({sum(len(b) for b in first.unanswered)} unanswered in flight), "
          f"{len(second.accepted)} after restart; {len(accepted)} distinct accepted; "
          f"all delivered {delivered_in:.1f}s after the vendor recovered; "
          f"{duplicates} duplicate deliveries at the vendor, "
          f"{len(archived(relay)) - len(in_archive)} duplicate lines in the archive; "
          f"{vendor.attempts()} vendor requests; total {time.monotonic() - t0:.1f}s")
