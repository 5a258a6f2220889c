"""Token buckets per client address (``relay.rate_limit``): ``MemoryBuckets`` in this process,
``RedisBuckets`` (``relay.state.ratelimit_redis``) shared by every worker and replica when
``relay.state`` is ``redis://``. Both answer ``take`` the same way.

A bucket holds at most ``burst`` tokens and gains ``per_second`` a second; a request takes
one. With none left, ``take`` says how long until there is one (the 429's ``Retry-After``,
rounded up to whole seconds: ``retry_after``). A bucket is keyed by a keyed hash of the
address (``ClientKeys``, under the cookie secret), never the address itself, so neither
Redis nor this process's memory holds one.

    >>> now = [0.0]
    >>> buckets = MemoryBuckets(2, 3, ClientKeys(["s"]), clock=lambda: now[0])
    >>> [buckets.take_now("203.0.113.7") for _ in range(4)]
    [0.0, 0.0, 0.0, 0.5]
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from cachetools import LRUCache

MAX_CLIENTS = 100_000
# A token counts once it is this close to whole: waiting exactly the answer of ``take`` must
# be enough, whatever the floating point (and Redis's 6 decimals) made of it.
EPSILON = 1e-6
_CONTEXT = b"relay.ratelimit.client.v1"


class Buckets(Protocol):
    rate: float
    burst: float

    async def take(self, client: str) -> float:
        """0 when the request may pass, else the seconds until a token is free."""
        ...


class ClientKeys:
    """The bucket key of a client address: keyed BLAKE2b under a key derived from the newest
    cookie secret (the same on every replica that shares ``RELAY_SECRET``)."""

    __slots__ = ("_key",)

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("client keys need a secret")
        self._key = hmac.new(secrets[-1].encode(), _CONTEXT, hashlib.sha256).digest()

    def of(self, client: str) -> str:
        return hashlib.blake2b(client.encode(), key=self._key, digest_size=16).hexdigest()


def retry_after(wait: float) -> str:
    """``Retry-After`` for a wait in seconds: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(wait)))


def refill(tokens: float, last: float, now: float, rate: float, burst: float) -> float:
    return min(burst, tokens + max(0.0, now - last) * rate)


class MemoryBuckets:
    """Buckets in this process, the ``max_clients`` most recently seen (``state: memory``)."""

    def __init__(
        self,
        per_second: float,
        burst: int,
        keys: ClientKeys,
        *,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = per_second
        self.burst = float(max(burst, 1))
        self.keys = keys
        self.clock = clock
        self.buckets: LRUCache[str, tuple[float, float]] = LRUCache(maxsize=max_clients)

    def take_now(self, client: str) -> float:
        key = self.keys.of(client)
        now = self.clock()
        tokens, last = self.buckets.get(key, (self.burst, now))
        tokens = refill(tokens, last, now, self.rate, self.burst)
        if tokens >= 1 - EPSILON:
            self.buckets[key] = (max(0.0, tokens - 1), now)
            return 0.0
        self.buckets[key] = (tokens, now)
        return (1 - tokens) / self.rate

    async def take(self, client: str) -> float:
        return self.take_now(client)
