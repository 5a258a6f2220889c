"""Replicas (SPEC 7b, 9): several ``relay serve`` processes, each with its own ``--var``,
sharing one Redis for ``state:`` and ``spool:``.

1. Three replicas take a load round-robin (browser batches and signed backend events, some
   event ids sent again to another replica on purpose); one is SIGKILLed mid-load, and the
   client sends what got no answer to another replica, as a real client would. Every event
   that got a 202 reaches the stand-in vendor once; a second copy only of what the killed
   replica held unacknowledged when it died (counted and printed).
2. The vendor is down; a replica holds copies in flight when it is SIGKILLed; the vendor
   recovers; another replica claims the dead one's copies after ``spool_claim_after``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis

from relay.spool.redis.keys import FIELD, GROUP, unpack

from .conftest import MakeRelay, MakeVendor
from .relayproc import BACKEND_SECRET, RelayProcess
from .rulesdir import webhook
from .wire import (
    US,
    client,
    fresh_t,
    metric,
    page_view,
    purchase,
    scrape,
    signature,
    wait_until,
)

REPLICAS = 3
BROWSER_EVENTS = 2400
BACKEND_EVENTS = 600
DUPLICATES = 150  # event ids sent again, each to another replica than the first time
KILL_AFTER = 1000  # accepted events before the SIGKILL
CONCURRENCY = 12
TRIES = REPLICAS + 2  # a request with no answer goes to the next replica, this often at most
DELIVERY_DEADLINE = 120.0
CLAIM_AFTER = "5s"  # above the destination's 2s timeout
PREFIX = "relay-e2e:spool:"
HOOK_SECRET = "e2e-replicas-hook-secret"
CONCURRENCY_PER_DESTINATION = 4


def shared_env(redis_url: str) -> dict[str, str]:
    return {"RELAY_STATE": redis_url, "RELAY_SPOOL": f"{redis_url}?prefix={PREFIX}"}


def process_ids(relay: RelayProcess) -> set[int]:
    """The pids of a relay's process group (``relay serve`` and any child it runs)."""
    assert relay.proc is not None
    group = relay.proc.pid
    out = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.getpgid(int(name)) == group:
                    out.add(int(name))
            except ProcessLookupError:
                continue
    return out


def held_by(r: redis.Redis, destination: str, pids: set[int]) -> dict[str, list[bytes]]:
    """Consumer -> the stream ids it holds unacknowledged, for the consumers of ``pids``
    (a consumer is named host:pid:random)."""
    key = f"{PREFIX}o:{destination}"
    out: dict[str, list[bytes]] = {}
    for consumer in r.xinfo_consumers(key, GROUP):
        name = consumer["name"].decode()
        if int(name.split(":")[-2]) in pids:
            pending: Any = r.xpending_range(key, GROUP, "-", "+", 100_000, consumername=name)
            out[name] = [p["message_id"] for p in pending]
    return out


def event_ids(r: redis.Redis, destination: str, sids: list[bytes]) -> set[str]:
    key = f"{PREFIX}o:{destination}"
    ids = set()
    for sid in sids:
        entries: Any = r.xrange(key, sid, sid)
        for _, fields in entries:
            ids.add(str(unpack(fields[FIELD])[0]["e"]))
    return ids


def spooled(r: redis.Redis, wanted: set[str]) -> dict[str, int]:
    """Where in the spool's keys these events are (for a failure's message)."""
    found: collections.Counter[str] = collections.Counter()
    for key in r.scan_iter(match=PREFIX + "*"):
        kind = r.type(key)
        entries: Any = r.xrange(key) if kind == b"stream" else []
        blobs: Any = ([f[FIELD] for _, f in entries] if kind == b"stream"
                      else r.zrange(key, 0, -1) if kind == b"zset" else [])
        for blob in blobs:
            if str(unpack(blob)[0].get("e")) in wanted:
                found[key.decode()] += 1
    return dict(found)


@dataclass
class Job:
    kind: str  # "browser" or "backend"
    events: list[dict[str, Any]]
    first: int  # the replica it goes to first


@dataclass
class Outcome:
    accepted: set[str] = field(default_factory=set)  # event ids answered 202, not rejected
    duplicates: int = 0  # events answered as duplicates
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    retried: int = 0  # requests sent again to another replica
    # Events of requests that got no answer (the killed replica's, in flight): it may have
    # spooled them before it died, and the client sends them again elsewhere.
    unanswered: set[str] = field(default_factory=set)
    # Events of a request sent again that the other replica answered as duplicates: the
    # killed replica had marked them seen (none may be lost because of it).
    marked_elsewhere: set[str] = field(default_factory=set)
    failed: list[Job] = field(default_factory=list)


def make_jobs(seed: int = 11) -> list[Job]:
    rng = random.Random(seed)
    jobs: list[Job] = []
    n = 0
    while n < BROWSER_EVENTS:
        size = min(rng.randint(1, 10), BROWSER_EVENTS - n)
        jobs.append(Job("browser", [page_view(f"rep-b-{n + i}") for i in range(size)], 0))
        n += size
    n = 0
    while n < BACKEND_EVENTS:
        size = min(rng.randint(1, 5), BACKEND_EVENTS - n)
        jobs.append(Job("backend", [purchase(f"rep-o-{n + i}") for i in range(size)], 0))
        n += size
    rng.shuffle(jobs)
    for i, job in enumerate(jobs):
        job.first = i % REPLICAS  # round-robin
    # The same event ids again, alone, to another replica, later in the load.
    chosen = rng.sample(range(len(jobs) // 2), DUPLICATES)
    for i in chosen:
        original = jobs[i]
        again = Job(original.kind, [rng.choice(original.events)], (original.first + 1) % REPLICAS)
        jobs.insert(rng.randint(i + 1, len(jobs)), again)
    return jobs


async def send(replicas: list[RelayProcess], jobs: list[Job], dead: set[int],
               on_accepted: Any) -> Outcome:
    outcome = Outcome()
    queue = collections.deque(jobs)

    async def post(http: httpx.AsyncClient, relay: RelayProcess, job: Job) -> httpx.Response:
        if job.kind == "browser":
            return await http.post(relay.url("/e"), json=job.events, headers=US)
        body = json.dumps(job.events).encode()
        return await http.post(relay.url("/hook/backend"), content=body, headers={
            "Content-Type": "application/json",
            # each attempt signed afresh, as a backend does: the same signed bytes twice
            # are a replay (401), the same event signed again is a duplicate (202)
            "X-Relay-Signature": signature(BACKEND_SECRET, body, fresh_t(body))})

    async def worker(http: httpx.AsyncClient) -> None:
        while queue:
            job = queue.popleft()
            for attempt in range(TRIES):
                index = (job.first + attempt) % REPLICAS
                if index in dead:
                    continue
                if attempt:
                    outcome.retried += 1
                try:
                    r = await post(http, replicas[index], job)
                except httpx.HTTPError as exc:
                    outcome.statuses[type(exc).__name__] += 1
                    outcome.unanswered.update(e["event_id"] for e in job.events)
                    continue  # no answer: another replica
                outcome.statuses[str(r.status_code)] += 1
                if r.status_code != 202:
                    continue
                answer = r.json()
                rejected = {x["index"] for x in answer.get("rejected", [])}
                assert not rejected, answer
                outcome.duplicates += answer["duplicates"]
                if attempt and answer["duplicates"]:
                    outcome.marked_elsewhere.update(e["event_id"] for e in job.events)
                outcome.accepted.update(e["event_id"] for e in job.events)
                on_accepted(len(outcome.accepted))
                break
            else:
                outcome.failed.append(job)

    limits = httpx.Limits(max_connections=CONCURRENCY * REPLICAS)
    async with httpx.AsyncClient(timeout=30.0, limits=limits, trust_env=False) as http:
        await asyncio.gather(*(worker(http) for _ in range(CONCURRENCY)))
    return outcome


def test_three_replicas_one_killed_mid_load_lose_nothing(
        relays: MakeRelay, vendors: MakeVendor, redis_url: str) -> None:
    vendor = vendors(secret=HOOK_SECRET, batch=True, name="replicas-vendor")
    vendor.respond(200, delay=0.1)  # a vendor's usual pace: replicas always have batches out
    destination = webhook(vendor, events=["page_view", "purchase"],
                          concurrency=CONCURRENCY_PER_DESTINATION)
    replicas = [relays(name=f"replica{i}", env=shared_env(redis_url),
                       relay={"spool_claim_after": CLAIM_AFTER},
                       destinations={"hook": destination}) for i in range(REPLICAS)]
    r = redis.Redis.from_url(redis_url)
    jobs = make_jobs()
    sent_ids = {e["event_id"] for job in jobs for e in job.events}
    assert len(sent_ids) == BROWSER_EVENTS + BACKEND_EVENTS

    victim = 1
    pids = process_ids(replicas[victim])
    dead: set[int] = set()
    in_flight: dict[str, list[bytes]] = {}
    held_ids: set[str] = set()

    def kill_midway(accepted: int) -> None:
        if accepted >= KILL_AFTER and not dead:
            replicas[victim].kill()  # SIGKILL, requests and deliveries in flight
            dead.add(victim)
            # What it held unacknowledged: frozen now (nobody claims it for CLAIM_AFTER).
            in_flight.update(held_by(r, "hook", pids))
            held_ids.update(event_ids(r, "hook", [s for sids in in_flight.values() for s in sids]))

    outcome = asyncio.run(send(replicas, jobs, dead, kill_midway))
    assert dead, f"the load ended before {KILL_AFTER} events were accepted: {outcome.statuses}"
    assert not outcome.failed, (len(outcome.failed), outcome.statuses)
    assert outcome.accepted == sent_ids, len(sent_ids - outcome.accepted)
    assert outcome.duplicates >= DUPLICATES  # the deliberate ones, at least
    held = [sid for sids in in_flight.values() for sid in sids]
    assert len(held_ids) == len(held)

    def missing() -> set[str]:
        return outcome.accepted - set(vendor.delivered())

    survivors = [x for i, x in enumerate(replicas) if i not in dead]

    def settled() -> bool:
        with client() as http:
            return all(metric(scrape(http, x), "relay_spool_depth", destination="hook") == 0
                       for x in survivors) and missing() <= outcome.marked_elsewhere

    try:
        wait_until(settled, DELIVERY_DEADLINE,
                   "an empty spool, counted by every survivor, and the accepted events at the "
                   "vendor", interval=0.5)
    except AssertionError:
        lost = missing()
        raise AssertionError(f"{len(lost)} accepted events never reached the vendor, e.g. "
                             f"{sorted(lost)[:10]}; in the spool: {spooled(r, lost)}; "
                             f"vendor problems {vendor.problems[:3]}") from None
    # SPEC 5: the dedup mark and the spool write are one unit, so an event the killed replica
    # marked without committing is accepted again elsewhere: nothing accepted is lost.
    lost = missing()
    assert not lost, (f"{len(lost)} accepted events lost, {len(lost & outcome.marked_elsewhere)}"
                      f" of them answered as duplicates after the kill: {sorted(lost)[:10]}")
    # The killed replica's requests to the vendor were cut off mid-body: the stand-in says
    # so (at most one per delivery worker), and answers them 4xx (no delivery counted).
    cut = [x for x in vendor.received if x.problems]
    assert len(cut) <= CONCURRENCY_PER_DESTINATION, [x.problems for x in cut]
    assert all(not x.ok for x in cut)
    counts = vendor.delivered()
    assert set(counts) | lost == sent_ids  # nothing the client did not send
    again = {eid: n for eid, n in counts.items() if n > 1}
    print(f"\nreplicas: {len(outcome.accepted)} events accepted by {REPLICAS} replicas, "
          f"{outcome.duplicates} answered as duplicates, {outcome.retried} requests sent again "
          f"to another replica after replica{victim} was SIGKILLed; it held {len(held)} copies "
          f"unacknowledged and {len(outcome.unanswered)} events in requests it never answered; "
          f"{len(again)} events reached the vendor twice: {sorted(again)[:20]}; "
          f"statuses {dict(outcome.statuses)}; {vendor.attempts()} vendor requests; none lost")
    # A second copy only of what was in flight on the killed replica: copies it had claimed
    # and not acknowledged, and events of requests it took and never answered.
    assert all(n == 2 for n in again.values()), again
    in_flight_ids = held_ids | outcome.unanswered
    assert set(again) <= in_flight_ids, sorted(set(again) - in_flight_ids)[:10]


def test_a_dead_replicas_copies_are_delivered_by_another_after_claim_after(
        relays: MakeRelay, vendors: MakeVendor, redis_url: str) -> None:
    vendor = vendors(secret=HOOK_SECRET, batch=True, name="down-vendor")
    vendor.respond(503, delay=4.0)  # down, and slow to say so: the copies stay claimed
    destination = webhook(vendor, events=["page_view"], timeout="10s", concurrency=1)
    rules: dict[str, Any] = {"relay": {"spool_claim_after": "2s"},
                             "destinations": {"hook": destination}}
    first = relays(name="first", env=shared_env(redis_url), **rules)
    r = redis.Redis.from_url(redis_url)
    ids = [f"down-{i}" for i in range(60)]
    with client() as http:
        for chunk in (ids[i:i + 10] for i in range(0, len(ids), 10)):
            answer = http.post(first.url("/e"), json=[page_view(i) for i in chunk], headers=US)
            assert answer.status_code == 202 and answer.json()["accepted"] == len(chunk)
    pids = process_ids(first)
    wait_until(lambda: vendor.attempts() >= 1 and any(held_by(r, "hook", pids).values()), 30,
               "the first replica sending a batch to the vendor")
    first.kill()
    held = held_by(r, "hook", pids)
    [(consumer, sids)] = held.items()
    assert sids, "the first replica held nothing when it died"
    held_ids = event_ids(r, "hook", sids)
    assert vendor.delivered() == collections.Counter()  # the vendor took nothing yet

    second = relays(name="second", env=shared_env(redis_url), **rules)
    with client() as http:  # the depth is counted in Redis: the dead replica's copies too
        wait_until(lambda: metric(scrape(http, second), "relay_spool_depth",
                                  destination="hook") == len(ids), 30,
                   "every copy counted by the second replica, the vendor still down")
    vendor.respond(200)
    wait_until(lambda: set(vendor.delivered()) == set(ids), 60,
               "every copy at the vendor, delivered by the second replica")
    assert held_ids <= set(vendor.delivered())
    assert all(n == 1 for n in vendor.delivered().values()), vendor.delivered()
    assert held_by(r, "hook", pids) == {consumer: []}  # claimed away from the dead one
    with client() as http:
        wait_until(lambda: metric(scrape(http, second), "relay_spool_depth",
                                  destination="hook") == 0, 30, "an empty spool")
    print(f"\nclaim after: the killed replica held {len(sids)} of {len(ids)} copies; "
          f"the second delivered all of them once")

