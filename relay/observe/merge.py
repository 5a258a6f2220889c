"""Adding up the metrics of several worker processes (pure): one page for ``relay serve
--workers N``.

Each worker's share is a ``Share``: its ``Metrics.snapshot()`` (per family, the policy and
the samples) and whether it is running now. ``merge`` takes the answering worker's families
as collected and the other shares, and returns the page's families, each added up as its
policy (``relay.observe.metrics.policy``) says:

    >>> from prometheus_client.core import CounterMetricFamily
    >>> own = CounterMetricFamily("relay_spooled", "Copies", labels=["destination"])
    >>> own.add_metric(["ga4"], 3)
    >>> other = Share({"relay_spooled": ("sum", [
    ...     ("relay_spooled_total", {"destination": "ga4"}, 4.0),
    ...     ("relay_spooled_total", {"destination": "crm"}, 1.0)])})
    >>> [(s.labels["destination"], s.value) for s in merge([own], [other])[0].samples]
    [('ga4', 7.0), ('crm', 1.0)]

A histogram is summed sample by sample (each cumulative bucket, ``_count`` and ``_sum``):
that is the histogram of all the workers' observations, since they share the buckets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import Metric

from relay.observe.metrics import Policy, Snapshot, policy

Key = tuple[str, tuple[tuple[str, str], ...]]
Sample = tuple[str, dict[str, str], float]

_COMBINE: dict[Policy, Callable[[float, float], float]] = {
    "sum": lambda a, b: a + b,
    "sum_live": lambda a, b: a + b,
    "max_live": max,
    "min": min,
}
# What outlives a worker: an exited worker's counts stay in the sums (a counter never goes
# back) and its start time in the minimum; its gauges of the moment go with it.
KEPT: frozenset[Policy] = frozenset({"sum", "min"})


@dataclass(frozen=True, slots=True)
class Share:
    """One worker's figures; ``live``: it is running now."""

    families: Snapshot = field(default_factory=dict)
    live: bool = True


def _combine(how: Policy, groups: Iterable[Sequence[Sample]]) -> list[Sample]:
    """The samples of ``groups`` with those of one name and labels combined, in the order
    each first appears."""
    combine = _COMBINE[how]
    out: dict[Key, Sample] = {}
    for samples in groups:
        for name, labels, value in samples:
            key = (name, tuple(labels.items()))
            seen = out.get(key)
            out[key] = (name, labels, float(value) if seen is None else
                        combine(seen[2], float(value)))
    return list(out.values())


def merge(own: Sequence[Metric], others: Iterable[Share]) -> list[Metric]:
    """The families of ``own`` (in its order) with the figures of ``others`` added in."""
    shares = list(others)
    out = []
    for family in own:
        how = policy(family)
        if how == "own":
            out.append(family)
            continue
        mine = [(s.name, s.labels, s.value) for s in family.samples]
        theirs = [
            share.families[family.name][1]
            for share in shares
            if family.name in share.families and (share.live or how in KEPT)
        ]
        merged = Metric(family.name, family.documentation, family.type, family.unit)
        for name, labels, value in _combine(how, [mine, *theirs]):
            merged.add_sample(name, labels, value)
        out.append(merged)
    return out


def fold(shares: Iterable[Share]) -> Share:
    """Exited workers' shares as one (``live`` False), keeping only what outlives them:
    ``merge`` gives the same page with it as with the shares one by one."""
    groups: dict[str, tuple[Policy, list[Sequence[Sample]]]] = {}
    for share in shares:
        for name, (how, samples) in share.families.items():
            if how in KEPT:
                groups.setdefault(name, (how, []))[1].append(samples)
    return Share({name: (how, _combine(how, lists)) for name, (how, lists) in groups.items()},
                 live=False)
