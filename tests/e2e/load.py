"""A small concurrent load generator for end-to-end tests (httpx, loopback only).

``send_batches`` posts batches of events to the browser endpoint with ``concurrency``
requests in flight and records, per event, whether the relay answered it accepted (202 and
not in ``rejected``). A worker whose request gets no answer (the relay was killed) stops; the
batches it did not send stay in ``LoadResult.unsent`` for a later run.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from .wire import US, page_view

Batch = list[dict[str, Any]]


@dataclass
class LoadResult:
    accepted: list[str] = field(default_factory=list)  # event ids answered as accepted
    unanswered: list[Batch] = field(default_factory=list)  # sent, no answer (may be spooled)
    unsent: list[Batch] = field(default_factory=list)
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)


def make_batches(total: int, *, seed: int = 7, sizes: tuple[int, int] = (1, 10),
                 prefix: str = "load") -> list[Batch]:
    """``total`` page views with unique ids, cut into batches of random sizes."""
    rng = random.Random(seed)
    batches: list[Batch] = []
    n = 0
    while n < total:
        size = min(rng.randint(*sizes), total - n)
        batches.append([page_view(f"{prefix}-{n + i}") for i in range(size)])
        n += size
    return batches


async def send_batches(url: str, batches: list[Batch], *, concurrency: int = 20,
                       headers: dict[str, str] | None = None, timeout: float = 30.0,
                       on_accepted: Callable[[int], None] | None = None) -> LoadResult:
    result = LoadResult()
    pending = collections.deque(batches)
    hdrs = {**US, **(headers or {})}

    async def worker(client: httpx.AsyncClient) -> None:
        while pending:
            batch = pending.popleft()
            try:
                r = await client.post(url, json=batch, headers=hdrs)
            except httpx.HTTPError as exc:
                result.statuses[type(exc).__name__] += 1
                result.unanswered.append(batch)
                return
            result.statuses[str(r.status_code)] += 1
            if r.status_code != 202:
                result.unanswered.append(batch)
                continue
            rejected = {x["index"] for x in r.json().get("rejected", [])}
            result.accepted.extend(e["event_id"] for i, e in enumerate(batch) if i not in rejected)
            if on_accepted is not None:
                on_accepted(len(result.accepted))

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    result.unsent = list(pending)
    return result
