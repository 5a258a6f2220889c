"""Per-destination delivery workers: batching, backoff, circuit breaker, dead letters.

Every destination gets its own ``concurrency`` worker tasks, wake-up event and breaker, and
nothing they share blocks (the spool answers every claim at once; each vendor request has its
own deadline), so one failing destination never slows the others (SPEC section 5).

A worker claims a batch from the spool (a lease a little longer than the request timeout),
sends it, and then acks it, schedules a retry or dead-letters it:

- ok: acked, counted ``delivered``, one ``delivered`` hop per event;
- retry (network error, timeout, 408, 429, 5xx, ``Retryable``): attempt ``n`` waits
  ``max(Retry-After, rng() * min(max_backoff, base_backoff * 2**(n-1)))`` (full jitter); when
  ``n`` reaches ``retry.attempts`` or the copy is older than ``retry.max_age`` it is
  dead-lettered instead;
- permanent (other 4xx, ``Permanent``): dead-lettered at once with the vendor's status and
  answer.

A claim is cut into requests in two steps: ``by_group`` first, for types whose requests share
fields between their items (``DestinationDef.group``: a GA4 request has one ``client_id``,
``user_id`` and consent for all its events), so that one request only carries items of one
key; then ``by_size``, at the vendor's body limit (``DestinationDef.max_bytes``).

A copy whose request cannot be built (``build_request`` raises, or a header value it made is
one HTTP cannot carry: ``unsendable``) is dead-lettered alone with the reason, before anything
is sent; the other copies of its batch go in one request without it. No vendor was asked, so
it is neither a retry nor an attempt the breaker counts.

The breaker counts consecutive failed attempts (retry verdicts only: a 4xx is the vendor
answering). After ``breaker_failures`` of them it opens for ``breaker_cooldown`` seconds: the
destination's workers sleep. Then it is half-open: one worker sends one batch; success closes
it, failure opens it again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import orjson

from relay.destinations import DESTINATIONS
from relay.destinations.base import unsendable
from relay.errors import Permanent, Retryable
from relay.observe.log import hop
from relay.observe.metrics import Metrics
from relay.rules.model import Destination, Retry
from relay.spool.base import Claimed, Spool
from relay.types import OK, DestinationDef, Event, Verdict

LOG = logging.getLogger("relay.dispatch")

POLL_INTERVAL = 1.0  # idle workers look at the spool at least this often (other processes)
LEASE_MARGIN = 10.0  # a claim's lease is the request timeout plus this
LINGER = 0.02  # after a wake-up, how long new rows may gather before the claim
ERROR_PAUSE = 1.0  # after an unexpected error (the spool unavailable, say) before trying again


def _facts(event: Event | None) -> dict[str, Any]:
    """What a delivery hop line says about the event besides its id (SPEC: source, event,
    schema version, consent), from the copy as spooled; nothing personal."""
    if not isinstance(event, dict):
        return {}
    return {
        "source": event.get("source"),
        "event": event.get("event"),
        "schema": event.get("schema"),
        "consent": event.get("consent") if isinstance(event.get("consent"), dict) else None,
    }


def _row_facts(row: Claimed) -> dict[str, Any]:
    """``_facts`` of a claimed row's payload (the retry and dead-letter paths, off the hot one)."""
    try:
        return _facts(orjson.loads(row.payload))
    except ValueError:
        return {}


Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]
Rng = Callable[[], float]
# (destination, event ids, verdict, HTTP status): one call per delivery attempt
AttemptListener = Callable[[str, list[str], Verdict, "int | None"], None]


def backoff(policy: Retry, attempt: int, draw: float) -> float:
    """Full-jitter delay after failed attempt ``attempt`` (1-based) for a draw in [0, 1).

    ``backoff(Retry(base_backoff=1, max_backoff=600), 4, 0.5)`` -> 0.5 * min(600, 8) = 4.0.
    """
    cap = min(policy.max_backoff, policy.base_backoff * 2.0 ** min(attempt - 1, 64))
    return draw * cap


def batch_limit(definition: DestinationDef, settings: Any, destination: Destination) -> int:
    """Events per request: the type's ``max_batch``, narrowed by the settings object's own
    ``batch_limit`` when it has one (webhook without ``batch``: 1) and by ``batch_size``."""
    limit = definition.max_batch
    narrowed = getattr(settings, "batch_limit", None)
    if isinstance(narrowed, int) and narrowed > 0:
        limit = min(limit, narrowed)
    if destination.batch_size:
        limit = min(limit, destination.batch_size)
    return max(1, limit)


@dataclass(frozen=True, slots=True)
class Part:
    """Rows sent in one request, and their indices among the decoded rows of a claim."""

    rows: list[Claimed]
    indices: list[int]


def by_size(rows: list[Claimed], max_bytes: int | None) -> list[Part]:
    """The claimed rows in order, cut so that each part's payloads (the vendor's items as
    JSON, one separator each) stay within ``max_bytes``; a row larger than that alone goes
    in a part of its own (the vendor decides; usually a 4xx, dead-lettered with its answer).

    ``by_size(rows of 40, 40, 40 bytes, 90)`` -> parts of [0, 1] and [2].
    """
    if not max_bytes:
        return [Part(rows, list(range(len(rows))))]
    parts: list[Part] = []
    current: list[Claimed] = []
    indices: list[int] = []
    size = 0
    for i, row in enumerate(rows):
        n = len(row.payload) + 1
        if current and size + n > max_bytes:
            parts.append(Part(current, indices))
            current, indices, size = [], [], 0
        current.append(row)
        indices.append(i)
        size += n
    if current:
        parts.append(Part(current, indices))
    return parts


def by_group(events: Sequence[Event], group: Callable[[Event], str] | None) -> list[list[int]]:
    """The indices of ``events`` cut by the key ``group`` gives each (the vendor's item), in
    the order each key first appears; all in one list when the type has no ``group``. An item
    whose key cannot be computed goes alone.

    ``by_group([a1, b1, a2], key)`` -> ``[[0, 2], [1]]`` (``key`` of ``a1`` and ``a2`` alike).
    """
    if group is None:
        return [list(range(len(events)))]
    out: dict[str, list[int]] = {}
    for i, event in enumerate(events):
        try:
            key = group(event)
        except Exception:
            key = f"\x00{i}"  # never a key of another item
        out.setdefault(key, []).append(i)
    return list(out.values())


def _build(
    build_request: Callable[[Sequence[Event], Any], httpx.Request],
    events: Sequence[Event],
    settings: Any,
) -> httpx.Request | Verdict:
    """``build_request``, checked. ``Retryable`` is a retry verdict (the destination cannot
    build the request yet: a failed attempt). Any other failure, and a request whose headers
    HTTP cannot carry, mean the events cannot be mapped to the vendor's format: retrying
    would not help, so it raises ``Permanent``."""
    try:
        request = build_request(events, settings)
    except Retryable as exc:
        return Verdict("retry", exc.detail, exc.status, exc.retry_after)
    except Permanent:
        raise
    except Exception as exc:
        raise Permanent(f"cannot build the request: {type(exc).__name__}: {exc}") from exc
    why = unsendable(request)
    if why is not None:
        raise Permanent(f"cannot build the request: {why}")
    return request


class Breaker:
    """One destination's circuit breaker (state only; the dispatcher does the waiting)."""

    def __init__(self, threshold: int, cooldown: float) -> None:
        self.threshold = threshold  # 0 or less: never opens
        self.cooldown = cooldown
        self.failures = 0  # consecutive failed attempts
        self.open_until: float | None = None  # None: closed
        self.probe = 0  # id of the half-open probe in flight, 0 when none
        self._probes = 0
        self._settled = asyncio.Event()

    def state(self, now: float) -> Literal["closed", "open", "half-open"]:
        if self.open_until is None:
            return "closed"
        return "open" if now < self.open_until else "half-open"

    def start_probe(self) -> int:
        self._probes += 1
        self.probe = self._probes
        return self.probe

    def end_probe(self, probe: int) -> None:
        """The probe ``probe`` is over (idempotent; another probe is left alone)."""
        if probe and self.probe == probe:
            self.probe = 0
            self._settled.set()
            self._settled = asyncio.Event()

    async def probe_settled(self) -> None:
        await self._settled.wait()

    def success(self) -> bool:
        """Record an answered attempt; True when this closed the breaker."""
        was_open = self.open_until is not None
        self.failures = 0
        self.open_until = None
        self.end_probe(self.probe)
        return was_open

    def failure(self, now: float) -> bool:
        """Record a failed attempt; True when this opened the breaker."""
        self.failures += 1
        # Once open, any failure (the half-open probe's) opens it for another cooldown.
        if self.open_until is None and (self.threshold <= 0 or self.failures < self.threshold):
            return False
        self.open_until = now + self.cooldown
        self.end_probe(self.probe)
        return True


@dataclass(slots=True)
class _Lane:
    """One destination's workers and their shared state."""

    name: str
    destination: Destination
    definition: DestinationDef
    limit: int
    lease: float
    breaker: Breaker
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Dispatcher:
    """Delivers spooled copies. ``start()`` in the app's lifespan, ``notify(name)`` after a
    put, ``await stop()`` at shutdown. ``clock``, ``sleep`` and ``rng`` are for tests."""

    def __init__(
        self,
        spool: Spool,
        destinations: Mapping[str, Destination],
        client: httpx.AsyncClient,
        metrics: Metrics,
        *,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: Rng = random.random,
        registry: Mapping[str, DestinationDef] = DESTINATIONS,
        on_attempt: AttemptListener | None = None,
    ) -> None:
        self.spool = spool
        self.on_attempt = on_attempt  # the debug view's feed, when someone is watching
        self.client = client
        self.metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._lanes: dict[str, _Lane] = {}
        self._draining = False
        for name, dest in destinations.items():
            definition = registry.get(dest.type)
            if definition is None:
                raise ValueError(f"destination {name}: unknown type '{dest.type}'")
            if definition.write is None and (
                definition.build_request is None or definition.classify is None
            ):
                raise ValueError(f"destination {name}: type '{dest.type}' cannot deliver")
            self._lanes[name] = _Lane(
                name=name,
                destination=dest,
                definition=definition,
                limit=batch_limit(definition, dest.settings, dest),
                lease=dest.timeout + LEASE_MARGIN,
                breaker=Breaker(dest.breaker_failures, dest.breaker_cooldown),
            )

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start ``concurrency`` workers per destination (needs a running event loop)."""
        for lane in self._lanes.values():
            if lane.tasks:
                continue
            self.metrics.breaker_open.labels(lane.name).set(0)
            for i in range(max(1, lane.destination.concurrency)):
                task = asyncio.create_task(self._work(lane), name=f"deliver {lane.name} #{i}")
                lane.tasks.append(task)

    async def stop(self, grace: float = 0.0) -> None:
        """Stop the workers: each may finish the batch it is sending for up to ``grace``
        seconds, then the rest are cancelled. A cancelled batch keeps its lease: it is
        delivered again after the lease expires, or at once after ``release_leases()``."""
        self._draining = True
        tasks = [task for lane in self._lanes.values() for task in lane.tasks]
        for lane in self._lanes.values():
            lane.wake.set()
        if grace > 0 and tasks:
            await asyncio.wait(tasks, timeout=grace)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for lane in self._lanes.values():
            lane.tasks.clear()

    def notify(self, destination: str) -> None:
        """New rows for ``destination`` are committed: wake its idle workers."""
        lane = self._lanes.get(destination)
        if lane is not None:
            lane.wake.set()

    async def replay(self, destination: str | None = None) -> int:
        """Move dead letters (of one destination or all) back to the spool and deliver them."""
        count = await self.spool.dlq_replay(destination)
        hop("replayed", destination=destination, count=count)
        for name in self._lanes if destination is None else (destination,):
            self.notify(name)
        return count

    # -- the worker loop --------------------------------------------------------------

    async def _work(self, lane: _Lane) -> None:
        while not self._draining:
            try:
                probe = await self._admit(lane.breaker)
                try:
                    claimed = await self.spool.claim(lane.name, lane.limit, lane.lease)
                    if claimed:
                        await self._deliver(lane, claimed)
                finally:
                    lane.breaker.end_probe(probe)  # a probe with nothing to send
                if not claimed:
                    await self._idle(lane)
            except asyncio.CancelledError:
                raise
            except Exception:
                LOG.exception(
                    "destination %s: delivery worker error; again in %ss", lane.name, ERROR_PAUSE
                )
                await self._sleep(ERROR_PAUSE)

    async def _admit(self, breaker: Breaker) -> int:
        """Wait while the breaker is open; the id of the probe this worker is, or 0."""
        while True:
            now = self._clock()
            state = breaker.state(now)
            if state == "closed":
                return 0
            if state == "open":
                assert breaker.open_until is not None
                await self._sleep(breaker.open_until - now)
            elif not breaker.probe:
                return breaker.start_probe()
            else:
                await breaker.probe_settled()

    async def _idle(self, lane: _Lane) -> None:
        """Until ``notify``, the next row is due, or ``POLL_INTERVAL`` has passed."""
        if lane.wake.is_set():
            lane.wake.clear()
            return
        due = await self.spool.next_due(lane.name)
        delay = POLL_INTERVAL if due is None else min(POLL_INTERVAL, due - self._clock())
        if delay <= 0:
            return
        waiter = asyncio.ensure_future(lane.wake.wait())
        sleeper = asyncio.ensure_future(self._sleep(delay))
        try:
            await asyncio.wait((waiter, sleeper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            sleeper.cancel()
        if lane.wake.is_set() and not self._draining:
            # Woken by new rows: let a few more arrive, so one claim, request and ack
            # carry a batch instead of one event each.
            await self._sleep(LINGER)
        lane.wake.clear()  # the claim that follows covers any notify up to here

    # -- one batch --------------------------------------------------------------------

    async def _deliver(self, lane: _Lane, claimed: Sequence[Claimed]) -> None:
        rows: list[Claimed] = []
        events: list[Event] = []
        for row in claimed:
            try:
                event = orjson.loads(row.payload)
            except ValueError:
                event = None
            if isinstance(event, dict):
                rows.append(row)
                events.append(event)
            else:
                await self._dead(lane, [row], Verdict("permanent", "undecodable payload"), None)
        for indices in by_group(events, lane.definition.group):
            same = [rows[i] for i in indices]
            for part in by_size(same, lane.definition.max_bytes):
                await self._send(lane, part, [events[indices[j]] for j in part.indices])

    async def _send(self, lane: _Lane, part: Part, events: list[Event]) -> None:
        rows = part.rows
        if not rows:
            return
        request: httpx.Request | None = None
        outcome: tuple[Verdict, int | None] | None = None
        if lane.definition.write is None:
            built, rows, events = await self._request(lane, rows, events)
            if built is None:
                return
            if isinstance(built, Verdict):
                outcome = built, built.status
            else:
                request = built
        started = time.perf_counter()
        verdict, status = outcome or await self._attempt(lane, events, request)
        latency = time.perf_counter() - started
        self.metrics.delivery_latency.labels(lane.name).observe(latency)
        self._record(lane, verdict)
        if self.on_attempt is not None:
            self.on_attempt(lane.name, [r.event_id for r in rows], verdict, status)
        about = {row.id: event for row, event in zip(rows, events, strict=False)}
        if verdict.kind == "ok" and verdict.failed:
            rows = await self._refused(lane, rows, verdict, status)
        if verdict.kind == "ok":
            await self.spool.ack([r.id for r in rows])
            self.metrics.deliveries.labels(lane.name, "delivered").inc(len(rows))
            for row in rows:
                hop(
                    "delivered",
                    event_id=row.event_id,
                    **_facts(about.get(row.id)),
                    destination=lane.name,
                    status=status,
                    attempt=row.attempts + 1,
                    latency_ms=round(latency * 1000, 1),
                )
        elif verdict.kind == "retry":
            await self._retry(lane, rows, verdict, status)
        else:
            await self._dead(lane, rows, verdict, status)

    async def _refused(
        self, lane: _Lane, rows: list[Claimed], verdict: Verdict, status: int | None
    ) -> list[Claimed]:
        """A partial success: dead-letter the items the vendor refused (each with its own
        reason) and return the rows it took."""
        refused = dict(verdict.failed)
        for index, why in sorted(refused.items()):
            if 0 <= index < len(rows):
                await self._dead(lane, [rows[index]], Verdict("permanent", why, status), status)
        return [r for i, r in enumerate(rows) if i not in refused]

    async def _request(
        self, lane: _Lane, rows: list[Claimed], events: list[Event]
    ) -> tuple[httpx.Request | Verdict | None, list[Claimed], list[Event]]:
        """The request for the batch (or the retry verdict of a destination that cannot build
        it yet), and the rows and events it is for; None when nothing is left to send. When
        the request cannot be built, each event is tried alone: those that cannot be built
        are dead-lettered with the reason (``_unbuildable``), the others go together."""
        build, settings = lane.definition.build_request, lane.destination.settings
        assert build is not None and lane.definition.classify is not None
        try:
            return _build(build, events, settings), rows, events
        except Permanent as exc:
            failed = exc
        if len(rows) > 1:
            good: list[tuple[Claimed, Event]] = []
            for row, event in zip(rows, events, strict=True):
                try:
                    _build(build, [event], settings)
                except Permanent as exc:
                    await self._unbuildable(lane, [row], exc)
                else:
                    good.append((row, event))
            rows, events = [r for r, _ in good], [e for _, e in good]
            if not rows:
                return None, [], []
            try:
                return _build(build, events, settings), rows, events
            except Permanent as exc:  # each one alone, but not all together
                failed = exc
        await self._unbuildable(lane, rows, failed)
        return None, [], []

    async def _unbuildable(self, lane: _Lane, rows: list[Claimed], exc: Permanent) -> None:
        """Dead-letter copies whose request cannot be built: nothing was sent, so the breaker
        does not hear of it, and there is no retry."""
        verdict = Verdict("permanent", exc.detail, exc.status)
        if self.on_attempt is not None:
            self.on_attempt(lane.name, [r.event_id for r in rows], verdict, None)
        await self._dead(lane, rows, verdict, None, reason="unbuildable")

    async def _attempt(
        self, lane: _Lane, events: list[Event], request: httpx.Request | None
    ) -> tuple[Verdict, int | None]:
        """One delivery attempt (``request``, or the destination's ``write`` of ``events``),
        never raising: its verdict and the HTTP status if any."""
        definition, settings = lane.definition, lane.destination.settings
        timeout = lane.destination.timeout
        try:
            async with asyncio.timeout(timeout):  # the whole exchange, not each read
                if definition.write is not None:
                    await definition.write(events, settings)
                    return OK, None
                assert request is not None and definition.classify is not None
                request.extensions["timeout"] = httpx.Timeout(timeout).as_dict()
                response = await self.client.send(request)
            return definition.classify(response), response.status_code
        except Retryable as exc:
            return Verdict("retry", exc.detail, exc.status, exc.retry_after), exc.status
        except Permanent as exc:
            return Verdict("permanent", exc.detail, exc.status), exc.status
        except TimeoutError:
            return Verdict("retry", f"timeout after {timeout:g}s"), None
        except httpx.RequestError as exc:  # connection refused, reset, TLS, protocol errors
            return Verdict("retry", f"{type(exc).__name__}: {exc}"), None
        except Exception as exc:  # a bug, most likely: retried, dead-lettered when exhausted
            LOG.exception("destination %s: delivery attempt failed", lane.name)
            return Verdict("retry", f"{type(exc).__name__}: {exc}"), None

    def _record(self, lane: _Lane, verdict: Verdict) -> None:
        breaker = lane.breaker
        if verdict.kind != "retry":
            if breaker.success():
                self.metrics.breaker_open.labels(lane.name).set(0)
                LOG.info("destination %s: circuit closed", lane.name)
        elif breaker.failure(self._clock()):
            self.metrics.breaker_open.labels(lane.name).set(1)
            LOG.warning(
                "destination %s: circuit open for %gs after %d failed attempts",
                lane.name,
                breaker.cooldown,
                breaker.failures,
            )

    async def _retry(
        self, lane: _Lane, rows: list[Claimed], verdict: Verdict, status: int | None
    ) -> None:
        policy = lane.destination.retry
        now = self._clock()
        exhausted: list[Claimed] = []
        by_attempt: dict[int, list[Claimed]] = {}
        for row in rows:
            attempt = row.attempts + 1
            if attempt >= policy.attempts or now - row.created_at > policy.max_age:
                exhausted.append(row)
            else:
                by_attempt.setdefault(attempt, []).append(row)
        for attempt, group in by_attempt.items():
            delay = max(verdict.retry_after or 0.0, backoff(policy, attempt, self._rng()))
            await self.spool.retry([r.id for r in group], now + delay, verdict.detail)
            self.metrics.deliveries.labels(lane.name, "retried").inc(len(group))
            for row in group:
                hop(
                    "retried",
                    event_id=row.event_id,
                    **_row_facts(row),
                    destination=lane.name,
                    status=status,
                    attempt=attempt,
                    retry_in=round(delay, 3),
                )
        if exhausted:
            if self.on_attempt is not None:  # the debug view: that retry was their last
                last = Verdict("permanent", f"retries exhausted: {verdict.detail}", status)
                self.on_attempt(lane.name, [r.event_id for r in exhausted], last, status)
            await self._dead(lane, exhausted, verdict, status)

    async def _dead(
        self,
        lane: _Lane,
        rows: list[Claimed],
        verdict: Verdict,
        status: int | None,
        reason: str | None = None,
    ) -> None:
        by_attempt: dict[int, list[Claimed]] = {}
        for row in rows:
            by_attempt.setdefault(row.attempts + 1, []).append(row)
        status = verdict.status or status
        reason = reason or ("exhausted" if verdict.kind == "retry" else "permanent")
        for attempt, group in by_attempt.items():
            await self.spool.dead(group, status, verdict.detail, attempt)
            self.metrics.deliveries.labels(lane.name, "dead_lettered").inc(len(group))
            for row in group:
                hop(
                    "dead-lettered",
                    event_id=row.event_id,
                    **_row_facts(row),
                    destination=lane.name,
                    status=status,
                    attempt=attempt,
                    reason=reason,
                )
