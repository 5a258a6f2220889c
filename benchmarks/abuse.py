"""What the browser endpoint's abuse controls cost per request, in process.

Each check is timed per call over ``--calls`` calls, ``--runs`` times, interleaved; the table
shows medians, and each as a ratio to a baseline timed in the same runs: ``orjson.loads`` of
the ingest benchmark's page view (the least any endpoint does with a request).

- ``bot_kind`` (cached): the same user agent again, as real traffic mostly is;
- ``bot_kind`` (uncached): a new user agent each call (the parse the cache saves);
- ``origin.refused`` (cached) and (uncached: a new origin each call);
- ``MemoryBuckets.take``: ``relay.rate_limit`` with ``state: memory``;
- ``RedisBuckets.take``: with ``state: redis://`` (one Lua script round trip on loopback).

    python benchmarks/abuse.py --redis redis://127.0.0.1:6379/15
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
from ingest import EVENT, UA

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from relay.ingest import bots, origin  # noqa: E402
from relay.state.ratelimit import ClientKeys, MemoryBuckets  # noqa: E402
from relay.state.ratelimit_redis import RedisBuckets  # noqa: E402

ALLOWED = ("https://shop.example", "https://*.shop.example")
BODY = EVENT.replace(b"__ID__", b"e1")
KEYS = ClientKeys(["benchmark-secret"])


def per_call(fn: Callable[[int], object], calls: int) -> float:
    """Seconds per call of ``fn(i)``."""
    start = time.perf_counter()
    for i in range(calls):
        fn(i)
    return (time.perf_counter() - start) / calls


def new_user_agents(tag: str) -> Callable[[int], object]:
    return lambda i: bots.bot_kind(f"{UA} {tag}-{i}")


def new_origins(tag: str) -> Callable[[int], object]:
    return lambda i: origin.refused(ALLOWED, f"https://a{i}-{tag}.shop.example", None,
                                    "shop.example", None)


async def per_await(take: Callable[[str], object], calls: int) -> float:
    start = time.perf_counter()
    for i in range(calls):
        await take(f"203.0.113.{i % 250}")  # type: ignore[misc]
    return (time.perf_counter() - start) / calls


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15",
                        help="a Redis database the benchmark may write to (its keys expire)")
    args = parser.parse_args()
    import redis.asyncio as aioredis

    client = aioredis.from_url(args.redis)
    memory = MemoryBuckets(1e9, 10**9, KEYS)
    shared = RedisBuckets(client, 1e9, 10**9, KEYS, prefix=f"bench-{uuid.uuid4().hex}:")
    results: dict[str, list[float]] = {}
    few = max(args.calls // 100, 50)  # uncached parses are slow: fewer of them
    for run in range(args.runs):
        tag = f"r{run}-{uuid.uuid4().hex}"  # never seen before: uncached
        checks: dict[str, float] = {
            "baseline: orjson.loads(page view)": per_call(lambda i: orjson.loads(BODY),
                                                          args.calls),
            "bot_kind, cached": per_call(lambda i: bots.bot_kind(UA), args.calls),
            "bot_kind, uncached": per_call(new_user_agents(tag), few),
            "origin.refused, cached": per_call(
                lambda i: origin.refused(ALLOWED, "https://www.shop.example", None,
                                         "shop.example", None), args.calls),
            "origin.refused, uncached": per_call(new_origins(tag), args.calls),
            "MemoryBuckets.take": await per_await(memory.take, args.calls),
            "RedisBuckets.take": await per_await(shared.take, max(args.calls // 10, 100)),
        }
        for name, seconds in checks.items():
            results.setdefault(name, []).append(seconds)
    await client.aclose()
    base = statistics.median(next(iter(results.values())))
    print(f"{args.runs} runs; medians; ratio to the baseline of the same runs\n")
    print("| check | µs per call | x baseline |")
    print("|---|---|---|")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"| {name} | {median * 1e6:,.2f} | {median / base:,.1f} |")


if __name__ == "__main__":
    asyncio.run(main())
