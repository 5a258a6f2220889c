from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from relay.observe.metrics import (
    LATENCY_BUCKETS,
    CounterFamily,
    HistogramFamily,
    Metrics,
    policy,
)


class _Unlabelled:
    """``labels()`` with no values on a prometheus_client metric without labels."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric

    def labels(self) -> Any:
        return self.metric


class PrometheusMetrics(Metrics):
    """The same metrics backed by prometheus_client's own (locking) classes: the reference
    our families must render identically to."""

    def _counter(self, name: str, doc: str, *labels: str) -> Any:
        metric = Counter(name, doc, list(labels), registry=self.registry)
        return metric if labels else _Unlabelled(metric)

    def _histogram(self, name: str, doc: str, *labels: str) -> Any:
        metric = Histogram(name, doc, list(labels), buckets=LATENCY_BUCKETS, registry=self.registry)
        return metric if labels else _Unlabelled(metric)


def _exercise(m: Metrics) -> None:
    """Touch every metric the way the call sites do."""
    m.events_received.labels("browser", "page_view").inc()
    m.events_received.labels("browser", "page_view").inc()
    m.events_received.labels("backend", "purchase").inc()
    m.events_rejected.labels("browser", "contract").inc()
    m.events_duplicate.labels("*").inc()
    m.events_duplicate.labels("ga4").inc()
    m.events_held.labels("purchase").inc()
    m.held_expired.labels("purchase").inc()
    m.ledger_errors.labels().inc()
    for seconds in (0.002, 0.2):
        m.ledger_write_latency.observe(seconds)
    m.track_ledger(lambda: 7)
    m.events_quarantined.labels("browser").inc()
    m.consent_suppressed.labels("ads", "marketing").inc()
    m.events_dropped.labels("ga4").inc()
    m.fields_redacted.labels("hash_email").inc(3)
    m.spooled.labels("ga4").inc()
    m.spooled.labels("archive").inc()
    m.deliveries.labels("ga4", "delivered").inc(7)
    m.deliveries.labels("ga4", "retried").inc(0)
    for seconds in (0.0, 0.001, 0.0011, 0.2, 10.0, 10.5, 99.0):  # bounds, between, past +Inf
        m.delivery_latency.labels("ga4").observe(seconds)
    m.delivery_latency.labels("archive").observe(0.003)
    for seconds in (0.0004, 0.003, 0.003, 0.05, 2.5):
        m.ingest_latency.observe(seconds)
    m.rules_reloads.labels("ok")  # shown at 0 before anything is counted
    m.rules_reloads.labels("error").inc()
    m.ingest_failures.labels("browser", "503").inc()
    m.rate_limited.labels("browser").inc()
    m.origin_refused.labels("browser").inc()
    m.bot_events.labels("browser", "drop").inc(3)
    m.proxy_requests.labels("gtag", "200").inc()
    m.proxy_pin_mismatch.labels("gtag").inc()
    m.proxy_queued.labels("gtag").inc()
    m.proxy_refused.labels("gtag", "queue_full").inc()
    m.breaker_open.labels("ga4").set(1)
    m.breaker_open.labels("ga4").set(0)
    m.track_depths(lambda: ({"ga4": 2}, {"ga4": 1}))
    m.set_spool({"ga4": 12.5, "archive": 0.0}, 4096)
    m.set_pending({("ads", "ads"): 3}, [("ads", "ads"), ("ga4", "analytics")])


def _steady(page: bytes) -> str:
    """The page without the process figures' samples, which move between two renders
    (CPU seconds, memory): their families are prometheus_client's own collector."""
    return "".join(line for line in page.decode().splitlines(keepends=True)
                   if not line.startswith("process_"))


def test_render_is_byte_for_byte_prometheus_client() -> None:
    ours, reference = Metrics(), PrometheusMetrics()
    _exercise(ours)
    _exercise(reference)
    assert _steady(ours.render()) == _steady(reference.render())


def test_exercise_touches_every_metric() -> None:
    """Keeps the comparison above honest: a labelled metric added to ``Metrics`` but not to
    ``_exercise`` would render no samples there, and so compare nothing."""
    m = Metrics()
    _exercise(m)
    assert [f.name for f in m.registry.collect() if not f.samples] == []


def test_sample_values_read_back() -> None:
    m = Metrics()
    _exercise(m)
    get = m.registry.get_sample_value
    assert get("relay_events_received_total", {"source": "browser", "event": "page_view"}) == 2
    assert get("relay_rules_reloads_total", {"result": "ok"}) == 0
    assert get("relay_ingest_latency_seconds_count", {}) == 5
    assert get("relay_ingest_latency_seconds_bucket", {"le": "0.005"}) == 3
    assert get("relay_delivery_latency_seconds_bucket", {"destination": "ga4", "le": "+Inf"}) == 7
    assert get("relay_delivery_latency_seconds_sum", {"destination": "ga4"}) == pytest.approx(
        119.7021
    )
    assert "relay_events_received_created" not in m.render().decode()


def test_consent_pending_gauge_zeroes_known_pairs_and_omits_an_unread_store() -> None:
    m = Metrics()
    get = m.registry.get_sample_value
    assert get("relay_state_up", {}) is None  # not read yet
    m.set_pending({("ads", "ads"): 2, ("gone", "ads"): 1}, [("ads", "ads"), ("ga4", "analytics")])
    assert get("relay_state_up", {}) == 1
    assert get("relay_consent_pending", {"destination": "ads", "purpose": "ads"}) == 2
    assert get("relay_consent_pending", {"destination": "ga4", "purpose": "analytics"}) == 0
    assert get("relay_consent_pending", {"destination": "gone", "purpose": "ads"}) == 1
    m.set_pending({}, [("ads", "ads")])  # nothing waits: a zero, not a missing series
    assert get("relay_consent_pending", {"destination": "ads", "purpose": "ads"}) == 0
    m.set_pending(None, [("ads", "ads")])  # the store could not be read: no sample at all
    assert get("relay_consent_pending", {"destination": "ads", "purpose": "ads"}) is None
    assert get("relay_state_up", {}) == 0
    assert "# TYPE relay_consent_pending gauge" in m.render().decode()


def test_families_refuse_misuse() -> None:
    registry = CollectorRegistry()
    counter = CounterFamily("c", "A counter", ["a", "b"], registry)
    with pytest.raises(ValueError, match="expected labels"):
        counter.labels("only-one")
    with pytest.raises(ValueError, match="only go up"):
        counter.labels("x", "y").inc(-1)
    with pytest.raises(ValueError, match="Duplicated"):
        HistogramFamily("c", "Same name", [], LATENCY_BUCKETS, registry)


DOCS = Path(__file__).resolve().parents[2] / "docs" / "http.md"
# docs/http.md's words for each way --workers N adds a family up.
POLICY_WORDS = {"sum": "sum", "sum_live": "sum now", "max_live": "max now", "min": "min",
                "own": "one reading"}


def _documented() -> dict[str, tuple[set[str], str]]:
    """docs/http.md's metrics table: name -> (labels, how --workers N adds it up)."""
    rows = {}
    for line in DOCS.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        name = re.fullmatch(r"`((?:relay|process)_\w+)`", cells[0])
        if name and len(cells) == 4:
            rows[name.group(1)] = (set(re.findall(r"`(\w+)`", cells[1])), cells[3])
    return rows


def test_the_docs_list_every_metric_with_its_labels_and_how_workers_add_it_up() -> None:
    m = Metrics()
    _exercise(m)
    exported = {}
    for family in m.families():
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = {k for s in family.samples for k in s.labels if k != "le"}
        how = "the page's own" if family.name == "relay_workers" else POLICY_WORDS[policy(family)]
        exported[name] = (labels, how)
    assert _documented() == exported
