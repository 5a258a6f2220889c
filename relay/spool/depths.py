"""Spool and dead-letter depth per destination, kept in memory so ``depths()`` does no I/O:
counted when the spool opens, moved by every committed operation, and recounted now and
then (and for each scrape) to take in what other processes did."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class Delta:
    """Changes to the depth counters, applied only once the operation is committed."""

    spool: Counter[str] = field(default_factory=Counter)
    dlq: Counter[str] = field(default_factory=Counter)


class Depths:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spool: dict[str, int] = {}
        self._dlq: dict[str, int] = {}
        self._oldest: dict[str, float] = {}  # created_at of the oldest copy, at the recount

    def replace(self, spool: dict[str, int], dlq: dict[str, int],
                oldest: dict[str, float]) -> None:
        """The counts of a recount."""
        with self._lock:
            self._oldest = oldest
            # Keep destinations seen before at 0, so their gauges read 0 rather than vanish.
            self._spool = {**dict.fromkeys(self._spool, 0), **spool}
            self._dlq = {**dict.fromkeys(self._dlq, 0), **dlq}

    def apply(self, deltas: list[Delta]) -> None:
        with self._lock:
            for delta in deltas:
                for counts, changes in ((self._spool, delta.spool), (self._dlq, delta.dlq)):
                    for dest, n in changes.items():
                        counts[dest] = max(0, counts.get(dest, 0) + n)

    def read(self) -> tuple[dict[str, int], dict[str, int]]:
        with self._lock:
            return dict(self._spool), dict(self._dlq)

    def oldest(self) -> dict[str, float]:
        """When each destination's oldest waiting copy was spooled (unix seconds), as of the
        last recount; only destinations with copies waiting now."""
        with self._lock:
            return {d: t for d, t in self._oldest.items() if self._spool.get(d, 0) > 0}
