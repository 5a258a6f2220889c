"""Prometheus metrics (SPEC section 6). One ``Metrics`` per app, on its own registry.

Labels never carry personal data: only source, event, destination, purpose, reason, outcome,
transform and route names from the rules (event names are bounded by the contracts).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

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


class _Children:
    """A labelled metric whose children are looked up in a dict: ``labels()`` on the hot
    path otherwise takes a lock and rebuilds the key on every event. Label values come from
    the rules (bounded), never from clients."""

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
        r = self.registry = CollectorRegistry(auto_describe=True)

        def counter(name: str, doc: str, *labels: str) -> _Children:
            return _Children(Counter(name, doc, list(labels), registry=r))

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
        self.delivery_latency = _Children(
            Histogram(
                "relay_delivery_latency_seconds",
                "Vendor request latency",
                ["destination"],
                buckets=LATENCY_BUCKETS,
                registry=r,
            )
        )
        self.ingest_latency = Histogram(
            "relay_ingest_latency_seconds",
            "Ingest request latency, spool commit included",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rules_reloads = counter("relay_rules_reloads", "Rule reloads", "result")
        self.proxy_requests = counter("relay_proxy_requests", "Proxied requests", "route", "status")
        self.proxy_pin_mismatch = counter(
            "relay_proxy_pin_mismatch",
            "Upstream scripts refused because they do not match their pin",
            "route",
        )
        self.breaker_open = _Children(
            Gauge(
                "relay_circuit_open",
                "1 while a destination's circuit breaker is open",
                ["destination"],
                registry=r,
            )
        )

    def track_depths(self, read: Callable[[], tuple[dict[str, int], dict[str, int]]]) -> None:
        self.registry.register(_DepthCollector(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)
