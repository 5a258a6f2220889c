"""A token bucket per client address, bounded in memory (per process)."""

from __future__ import annotations

import time
from collections.abc import Callable

from cachetools import LRUCache


class RateLimiter:
    def __init__(
        self,
        per_second: float,
        burst: int,
        *,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = per_second
        self.burst = float(max(burst, 1))
        self.clock = clock
        self.buckets: LRUCache[str, tuple[float, float]] = LRUCache(maxsize=max_clients)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str) -> float:
        """0 when the request may pass, else the seconds until a token is free."""
        now = self.clock()
        tokens, last = self.buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self.buckets[key] = (tokens - 1, now)
            return 0.0
        self.buckets[key] = (tokens, now)
        return (1 - tokens) / self.rate
