"""Adding up workers' figures: each family by its policy; exited workers keep only what
outlives them; folding them first changes nothing."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from relay.observe.merge import Share, fold, merge
from relay.observe.metrics import GAUGES, Metrics, policy
from relay.observe.workers import _Page


def _worker(received: int, latency: float, breaker: int, rss: float, start: float) -> Metrics:
    m = Metrics()
    m.events_received.labels("browser", "page_view").inc(received)
    m.delivery_latency.labels("ga4").observe(latency)
    m.breaker_open.labels("ga4").set(breaker)
    m.track_depths(lambda: ({"ga4": 5}, {"ga4": 1}))
    return _with_process(m, rss, start)


def _with_process(m: Metrics, rss: float, start: float) -> Metrics:
    """The process figures made up, so the test knows them."""
    real = m.families

    def families() -> list[Metric]:
        out = []
        for family in real():
            if family.name == "process_resident_memory_bytes":
                family = GaugeMetricFamily(family.name, family.documentation, value=rss)
            elif family.name == "process_start_time_seconds":
                family = GaugeMetricFamily(family.name, family.documentation, value=start)
            out.append(family)
        return out

    m.families = families  # type: ignore[method-assign]
    return m


def _value(families: list[Metric], name: str, **labels: str) -> float:
    for family in families:
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"no sample {name} {labels}")


def test_each_family_adds_up_by_its_policy() -> None:
    a = _worker(3, 0.002, 0, 100.0, 50.0)
    b = _worker(4, 7.0, 1, 200.0, 40.0)
    c = _worker(10, 0.3, 1, 400.0, 30.0)  # exited
    page = merge(a.families(), [Share(b.snapshot()), Share(c.snapshot(), live=False)])

    def get(name: str, **labels: str) -> float:
        return _value(page, name, **labels)

    assert get("relay_events_received_total", source="browser", event="page_view") == 17
    assert get("relay_delivery_latency_seconds_count", destination="ga4") == 3
    assert get("relay_delivery_latency_seconds_bucket", destination="ga4", le="0.0025") == 1
    assert get("relay_delivery_latency_seconds_bucket", destination="ga4", le="0.5") == 2
    assert get("relay_delivery_latency_seconds_bucket", destination="ga4", le="+Inf") == 3
    assert get("relay_delivery_latency_seconds_sum", destination="ga4") == pytest.approx(7.302)
    assert get("relay_circuit_open", destination="ga4") == 1  # the live b's breaker
    assert get("process_resident_memory_bytes") == 300  # running workers only
    assert get("process_start_time_seconds") == 30  # the first worker's, exited or not
    assert get("relay_spool_depth", destination="ga4") == 5  # shared: read once, not summed
    # The page is still a valid exposition, with every family once.
    text = generate(page)
    names = [f.name for f in text_string_to_metric_families(text)]
    assert len(names) == len(set(names)) and "relay_events_received" in names


def test_an_exited_workers_breaker_and_memory_go_with_it() -> None:
    a = _worker(1, 0.01, 0, 100.0, 50.0)
    gone = _worker(1, 0.01, 1, 900.0, 60.0)
    page = merge(a.families(), [Share(gone.snapshot(), live=False)])
    assert _value(page, "relay_circuit_open", destination="ga4") == 0
    assert _value(page, "process_resident_memory_bytes") == 100
    assert _value(page, "relay_events_received_total") == 2


def test_folding_exited_workers_gives_the_same_page() -> None:
    a = _worker(1, 0.01, 0, 100.0, 50.0)
    gone = [_worker(n, 0.1 * n, 1, 10.0 * n, 20.0 + n).snapshot() for n in (2, 3, 4)]
    own = a.families()  # collected once: its CPU seconds move
    one_by_one = merge(own, [Share(s, live=False) for s in gone])
    folded = fold([fold([Share(gone[0], live=False)]), *(Share(s, live=False) for s in gone[1:])])
    assert not folded.live
    assert "relay_circuit_open" not in folded.families  # a gauge of the moment: not kept
    assert _samples(merge(own, [folded])) == pytest.approx(_samples(one_by_one))


def _samples(families: list[Metric]) -> dict[tuple[str, str], float]:
    """A page's samples; sums folded in another order may differ in the last bit."""
    return {(s.name, repr(sorted(s.labels.items()))): float(s.value)
            for family in families for s in family.samples}


def test_every_gauge_says_how_it_adds_up() -> None:
    m = Metrics()
    m.track_depths(lambda: ({}, {}))  # the runtime always does
    families = m.families()
    gauges = {f.name for f in families if f.type == "gauge"}
    assert gauges == set(GAUGES), "a gauge without a policy, or a policy for no gauge"
    fake = GaugeMetricFamily("relay_new_gauge", "A gauge nobody placed")
    with pytest.raises(ValueError, match="needs its policy in GAUGES"):
        policy(fake)


def generate(families: list[Metric]) -> str:
    return generate_latest(_Page(families)).decode()
