"""Prometheus metrics (SPEC section 6). One ``Metrics`` per app, on its own registry.

Labels never carry personal data: only source, event, destination, purpose, reason, outcome,
transform and route names from the rules (event names are bounded by the contracts).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series are noise

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


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


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.events_received = Counter(
            "relay_events_received", "Events received", ["source", "event"], registry=r
        )
        self.events_rejected = Counter(
            "relay_events_rejected", "Events rejected", ["source", "reason"], registry=r
        )
        self.events_duplicate = Counter(
            "relay_events_duplicate",
            "Copies not forwarded as duplicates",
            ["destination"],
            registry=r,
        )
        self.events_held = Counter(
            "relay_events_held",
            "Browser copies held for an authoritative source",
            ["event"],
            registry=r,
        )
        self.held_expired = Counter(
            "relay_held_expired",
            "Held browser copies that expired unconfirmed",
            ["event"],
            registry=r,
        )
        self.events_quarantined = Counter(
            "relay_events_quarantined",
            "Events with no contract, kept in quarantine",
            ["source"],
            registry=r,
        )
        self.consent_suppressed = Counter(
            "relay_consent_suppressed",
            "Copies suppressed by consent",
            ["destination", "purpose"],
            registry=r,
        )
        self.events_dropped = Counter(
            "relay_events_dropped", "Copies dropped by a pipeline step", ["destination"], registry=r
        )
        self.fields_redacted = Counter(
            "relay_fields_redacted",
            "Fields removed, hashed, truncated or redacted",
            ["transform"],
            registry=r,
        )
        self.spooled = Counter(
            "relay_spooled", "Copies committed to the spool", ["destination"], registry=r
        )
        self.deliveries = Counter(
            "relay_deliveries", "Delivery outcomes per copy", ["destination", "outcome"], registry=r
        )
        self.delivery_latency = Histogram(
            "relay_delivery_latency_seconds",
            "Vendor request latency",
            ["destination"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ingest_latency = Histogram(
            "relay_ingest_latency_seconds",
            "Ingest request latency, spool commit included",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rules_reloads = Counter("relay_rules_reloads", "Rule reloads", ["result"], registry=r)
        self.proxy_requests = Counter(
            "relay_proxy_requests", "Proxied requests", ["route", "status"], registry=r
        )
        self.breaker_open = Gauge(
            "relay_circuit_open",
            "1 while a destination's circuit breaker is open",
            ["destination"],
            registry=r,
        )

    def track_depths(self, read: Callable[[], tuple[dict[str, int], dict[str, int]]]) -> None:
        self.registry.register(_DepthCollector(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)
