"""Prometheus metrics (SPEC section 6). One ``Metrics`` per app, on its own registry.

Labels never carry personal data: only source, event, destination, purpose, reason, outcome,
transform and route names from the rules (event names are bounded by the contracts).

Counters and histograms are small classes of our own rather than prometheus_client's: an
accepted browser event makes about ten increments, and each of prometheus_client's takes a
``threading.Lock`` (``Counter.inc`` -> ``MutexValue.inc``), which showed up in the ingest
profile. Ours add to a plain float instead. That is only safe because every increment runs on
the event-loop thread (handlers, engine, dispatch workers, proxy); the SQLite spool's own thread
and the ``asyncio.to_thread`` calls never touch metrics. A metric that must be updated from
another thread has to use a prometheus_client class (they lock). Each family is a registry
``Collector`` and renders exactly as the prometheus_client class would, byte for byte
(``tests/observe/test_metrics.py`` compares the two).

Under ``relay serve --workers N`` each worker process has its own ``Metrics``;
``relay.observe.workers`` adds them up on every scrape, family by family as ``policy``
says: counters and histograms are summed, each gauge as ``GAUGES`` names.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, Literal, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import INF, floatToGoString

disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series are noise

# How a family's samples are added up over ``relay serve --workers N``'s processes:
# ``sum`` (every worker, exited ones included: counts never go back), ``sum_live`` and
# ``max_live`` (the workers running now), ``min`` (exited ones included), ``own`` (the
# answering worker's reading of something the workers share: the spool file, the state).
Policy = Literal["sum", "sum_live", "max_live", "min", "own"]
GAUGES: dict[str, Policy] = {
    "relay_consent_pending": "own",
    "relay_state_up": "own",
    "relay_spool_depth": "own",
    "relay_dlq_depth": "own",
    "relay_spool_oldest_age_seconds": "own",
    "relay_spool_file_bytes": "own",
    "relay_circuit_open": "max_live",  # each worker has its own breaker
    "relay_ledger_pending_hops": "sum_live",
    "relay_workers": "own",  # counted by the adding up itself
    "process_resident_memory_bytes": "sum_live",
    "process_virtual_memory_bytes": "sum_live",
    "process_open_fds": "sum_live",
    "process_max_fds": "own",
    "process_start_time_seconds": "min",  # the first worker's: when the counts started
}
ADDITIVE = ("counter", "histogram", "summary")
# A worker's share of the page: family name -> (policy, [(sample name, labels, value)]).
Snapshot = dict[str, tuple[Policy, list[tuple[str, dict[str, str], float]]]]
WORKER_STATES = ("answered", "unanswered", "exited")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

ChildT = TypeVar("ChildT")


class CounterChild:
    """One counter series. Event-loop thread only: ``+=`` on a float is not atomic."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters can only go up")
        self.value += amount


class HistogramChild:
    """One histogram series. Event-loop thread only, like ``CounterChild``.

    ``counts`` is per bucket, not cumulative; an observation lands in the first bucket whose
    bound is >= it, as in prometheus_client. With bounds (0.1, 1.0, +Inf), ``observe(0.1)``
    counts in bucket 0, ``observe(0.5)`` in bucket 1, ``observe(7)`` in bucket 2 (+Inf).
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds  # ascending, +Inf last: bisect always finds a bucket
        self.counts = [0.0] * len(bounds)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.sum += amount
        self.counts[bisect_left(self.bounds, amount)] += 1.0


class _Family(Collector, Generic[ChildT]):
    """A labelled metric registered on ``registry``; its children live in a dict keyed by
    label values. Label values come from the rules (bounded), never from clients."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        new_child: Callable[[], ChildT],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.children: dict[tuple[str, ...], ChildT] = {}
        self._new_child = new_child
        registry.register(self)

    def labels(self, *values: str) -> ChildT:
        """The child for these label values, created at zero the first time (so a bare
        ``labels(...)`` makes the series visible before anything is counted)."""
        try:
            return self.children[values]
        except KeyError:
            if len(values) != len(self.labelnames):
                raise ValueError(
                    f"metric {self.name}: expected labels {self.labelnames}, got {values}"
                ) from None
            child = self.children[values] = self._new_child()
            return child

    def describe(self) -> Iterable[Metric]:
        """The family without samples, so the registry checks names without collecting."""
        return [self._family()]

    def _family(self) -> Metric:
        raise NotImplementedError


class CounterFamily(_Family[CounterChild]):
    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        super().__init__(name, documentation, labelnames, CounterChild, registry)

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for values, child in self.children.items():
            family.add_metric(values, child.value)
        return [family]


class HistogramFamily(_Family[HistogramChild]):
    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        bounds = tuple(sorted(float(b) for b in buckets))
        if bounds[-1] != INF:
            bounds += (INF,)
        self.bounds = bounds
        self._le = [floatToGoString(b) for b in bounds]  # type: ignore[no-untyped-call]
        super().__init__(name, documentation, labelnames, lambda: HistogramChild(bounds), registry)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for values, child in self.children.items():
            cumulative, acc = [], 0.0
            for le, n in zip(self._le, child.counts, strict=True):
                acc += n
                cumulative.append((le, acc))
            family.add_metric(values, cumulative, child.sum)
        return [family]


def policy(family: Metric) -> Policy:
    """How ``family`` is added up over worker processes; a gauge must be in ``GAUGES``."""
    if family.type in ADDITIVE:
        return "sum"
    try:
        return GAUGES[family.name]
    except KeyError:
        raise ValueError(f"metric {family.name}: a gauge needs its policy in GAUGES") from None


def snapshot_of(families: Iterable[Metric]) -> Snapshot:
    """A worker's share of the page: per family that is not ``own``, its policy and samples
    as ``(name, labels, value)``. ``relay.observe.workers`` adds these up."""
    out: Snapshot = {}
    for family in families:
        how = policy(family)
        if how != "own":
            out[family.name] = (how, [(s.name, s.labels, s.value) for s in family.samples])
    return out


def workers_family(states: dict[str, int]) -> GaugeMetricFamily:
    """``relay_workers``: how many workers' figures a page adds up, per ``WORKER_STATES``."""
    family = GaugeMetricFamily(
        "relay_workers", "Worker processes whose figures this page adds up", labels=["state"]
    )
    for state in WORKER_STATES:
        family.add_metric([state], states.get(state, 0))
    return family


class _DepthCollector(Collector):
    """Spool and DLQ depth, read when scraped (the spool keeps its own counts)."""

    def __init__(self, read: Callable[[], tuple[dict[str, int], dict[str, int]]]) -> None:
        self.read = read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        spool, dlq = self.read()
        g1 = GaugeMetricFamily(
            "relay_spool_depth", "Copies waiting in the spool", labels=["destination"]
        )
        for dest, n in sorted(spool.items()):
            g1.add_metric([dest], n)
        g2 = GaugeMetricFamily(
            "relay_dlq_depth", "Copies in the dead-letter store", labels=["destination"]
        )
        for dest, n in sorted(dlq.items()):
            g2.add_metric([dest], n)
        yield g1
        yield g2


class _PendingCollector(Collector):
    """``relay_consent_pending``: copies waiting for a consent choice now. The state store
    keeps the counts (in Redis, shared by every replica); ``Metrics.set_pending`` hands
    this a reading just before each scrape."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] | None = None  # None: no reading
        self.up: bool | None = None  # did the state store answer the last reading?

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "relay_consent_pending",
            "Copies waiting for a consent choice",
            labels=["destination", "purpose"],
        )
        for (dest, purpose), n in sorted((self.counts or {}).items()):
            family.add_metric([dest, purpose], n)
        yield family
        up = GaugeMetricFamily(
            "relay_state_up", "1 when the state store (dedup marks, held copies) answered"
        )
        if self.up is not None:
            up.add_metric([], 1 if self.up else 0)
        yield up


class _Readings(Collector):
    """Gauges read at scrape time from what the runtime hands over (``Metrics.set_spool``,
    ``Metrics.track_ledger``): no sample when there is no reading."""

    def __init__(self) -> None:
        self.oldest: dict[str, float] | None = None  # seconds, per destination
        self.spool_bytes: int | None = None
        self.ledger_pending: Callable[[], int | None] = lambda: None

    def collect(self) -> Iterable[GaugeMetricFamily]:
        oldest = GaugeMetricFamily(
            "relay_spool_oldest_age_seconds",
            "Age of the oldest copy waiting in the spool (0 when none waits)",
            labels=["destination"],
        )
        for dest, age in sorted((self.oldest or {}).items()):
            oldest.add_metric([dest], age)
        yield oldest
        size = GaugeMetricFamily(
            "relay_spool_file_bytes", "Bytes on disk of the spool's files (database and WAL)"
        )
        if self.spool_bytes is not None:
            size.add_metric([], self.spool_bytes)
        yield size
        pending = GaugeMetricFamily(
            "relay_ledger_pending_hops", "Hops handed to the ledger and not written yet"
        )
        waiting = self.ledger_pending()
        if waiting is not None:
            pending.add_metric([], waiting)
        yield pending
        yield workers_family({"answered": 1})  # one process; relay.observe.workers: more


class _Children:
    """A prometheus_client metric whose children are looked up in a dict: its ``labels()``
    otherwise takes a lock and rebuilds the key on every call."""

    __slots__ = ("children", "metric")

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.children: dict[tuple[str, ...], Any] = {}

    def labels(self, *values: str) -> Any:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self.metric.labels(*values)
        return child


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        counter = self._counter
        self.events_received = counter(
            "relay_events_received", "Events received", "source", "event"
        )
        self.events_rejected = counter(
            "relay_events_rejected", "Events rejected", "source", "reason"
        )
        self.events_duplicate = counter(
            "relay_events_duplicate", "Copies not forwarded as duplicates", "destination"
        )
        self.events_held = counter(
            "relay_events_held", "Browser copies held for an authoritative source", "event"
        )
        self.held_expired = counter(
            "relay_held_expired", "Held browser copies that expired unconfirmed", "event"
        )
        self.ledger_errors = counter(
            "relay_ledger_errors", "Ledger writes that failed or were dropped (hops not recorded)"
        )
        self.ledger_write_latency = self._histogram(
            "relay_ledger_write_seconds",
            "From hops handed to the ledger to their commit (its lag behind the events)",
        ).labels()
        self.events_quarantined = counter(
            "relay_events_quarantined", "Events with no contract, kept in quarantine", "source"
        )
        self.consent_suppressed = counter(
            "relay_consent_suppressed", "Copies suppressed by consent", "destination", "purpose"
        )
        self.events_dropped = counter(
            "relay_events_dropped", "Copies dropped by a pipeline step", "destination"
        )
        self.fields_redacted = counter(
            "relay_fields_redacted", "Fields removed, hashed, truncated or redacted", "transform"
        )
        self.spooled = counter("relay_spooled", "Copies committed to the spool", "destination")
        self.deliveries = counter(
            "relay_deliveries", "Delivery outcomes per copy", "destination", "outcome"
        )
        self.ingest_failures = counter(
            "relay_ingest_failures",
            "Ingest requests answered 5xx: nothing accepted (503 spool, 500 internal)",
            "endpoint",
            "status",
        )
        self.rate_limited = counter(
            "relay_rate_limited", "Requests answered 429: the client address is over its rate",
            "endpoint",
        )
        self.origin_refused = counter(
            "relay_origin_refused",
            "Browser requests answered 403: their page's origin is not allowed", "source",
        )
        self.bot_events = counter(
            "relay_bot_events", "Events from recognised bots, by what was done with them",
            "source", "action",
        )
        self.delivery_latency = self._histogram(
            "relay_delivery_latency_seconds", "Vendor request latency", "destination"
        )
        self.ingest_latency = self._histogram(
            "relay_ingest_latency_seconds", "Ingest request latency, spool commit included"
        ).labels()
        self.rules_reloads = counter("relay_rules_reloads", "Rule reloads", "result")
        self.proxy_requests = counter("relay_proxy_requests", "Proxied requests", "route", "status")
        self.proxy_queued = counter(
            "relay_proxy_queued",
            "Proxied requests that found the route's concurrency full and waited for a slot",
            "route",
        )
        self.proxy_refused = counter(
            "relay_proxy_refused",
            "Proxied requests answered 503 busy: the route's queue was full, or the wait ran out",
            "route", "reason",
        )
        self.proxy_pin_mismatch = counter(
            "relay_proxy_pin_mismatch",
            "Upstream scripts refused because they do not match their pin",
            "route",
        )
        self._pending = _PendingCollector()
        self.registry.register(self._pending)
        self._readings = _Readings()
        self.registry.register(self._readings)
        self.breaker_open = _Children(  # set on breaker transitions only: not worth a class
            Gauge(
                "relay_circuit_open",
                "1 while a destination's circuit breaker is open",
                ["destination"],
                registry=self.registry,
            )
        )
        ProcessCollector(registry=self.registry)  # process_*: memory, CPU, fds (Linux)

    def _counter(self, name: str, doc: str, *labels: str) -> CounterFamily:
        return CounterFamily(name, doc, labels, self.registry)

    def _histogram(self, name: str, doc: str, *labels: str) -> HistogramFamily:
        return HistogramFamily(name, doc, labels, LATENCY_BUCKETS, self.registry)

    def set_pending(
        self, counts: dict[tuple[str, str], int] | None, known: Iterable[tuple[str, str]]
    ) -> None:
        """The waiting copies per (destination, purpose), as the state store counts them,
        with a zero for each ``known`` pair (the rules' consent-gated destinations) that
        has none; ``None`` when the store could not be read (the gauge has no samples)."""
        self._pending.up = counts is not None
        if counts is None:
            self._pending.counts = None
            return
        self._pending.counts = {**dict.fromkeys(known, 0), **counts}

    def set_spool(self, oldest: dict[str, float] | None, size: int | None) -> None:
        """The spool's figures read from its file for this scrape: the oldest waiting copy's
        age per destination (seconds), and its files' size; ``None`` when unread."""
        self._readings.oldest, self._readings.spool_bytes = oldest, size

    def track_ledger(self, pending: Callable[[], int | None]) -> None:
        """Where ``relay_ledger_pending_hops`` is read (None: no ledger)."""
        self._readings.ledger_pending = pending

    def snapshot(self) -> Snapshot:
        """This process's share of the page (``snapshot_of`` its families now)."""
        return snapshot_of(self.families())

    def families(self) -> list[Metric]:
        """Every family as collected now, in the page's order."""
        return list(self.registry.collect())

    def track_depths(self, read: Callable[[], tuple[dict[str, int], dict[str, int]]]) -> None:
        self.registry.register(_DepthCollector(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)
