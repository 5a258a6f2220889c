"""What the relay's state costs in memory, and that it stays bounded.

The in-memory store (``relay.state: memory``) keeps one dedup mark per ``(destination,
event_id)`` for ``dedup_window``, at most ``relay.dedup_max_keys`` of them (default
1,000,000; then the oldest goes first), and one consent memory per browser, bounded the same
way. This script drives ``MemoryState`` as the engine does (keys ``destination:event_id``,
ids the snippet's length: 36 characters) in a fresh process and reports:

- bytes per dedup entry (``tracemalloc``: what Python allocated for the marks, divided by
  their number) and the process's resident set size after each million;
- that a second million distinct ids, past the bound, leaves the number of marks at the bound
  and the resident set where the first million left it (the bound holds);
- bytes per dedup mark in Redis (``relay.state: redis://``), from ``MEMORY USAGE`` of marks
  the real ``RedisState`` wrote (127.0.0.1:6379, database 0 by default, a unique key prefix,
  deleted afterwards).

Run::

    python benchmarks/memory.py                      # 2 x 1,000,000 ids (~1 min)
    python benchmarks/memory.py --ids 200000 --max-keys 100000 --rounds 3
    python benchmarks/memory.py --redis redis://127.0.0.1:6379/0 --redis-samples 2000

Memory is not noisy the way time is on a shared box: one run is enough, and the figures are
medians only where a sample is taken.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tracemalloc
import uuid
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WINDOW = 24 * 3600.0  # the shipped dedup_window is far longer than the run: nothing expires
TENTATIVE = 3.0  # seconds a mark is tentative before its commit confirms it
BATCH = 1000  # keys per seen() call (the engine marks one event's copies per call)
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def event_id(i: int) -> str:
    """A 36-character id, as ``crypto.randomUUID()`` in the snippet makes them."""
    return str(uuid.UUID(int=i * 0x9E3779B97F4A7C15 % (1 << 128)))


async def measure_memory(ids: int, max_keys: int, rounds: int, trace: bool) -> dict[str, Any]:
    """Mark ``rounds`` x ``ids`` distinct ids; with ``trace``, count Python's allocations
    (``tracemalloc`` costs memory of its own, so the resident set is measured without it)."""
    from relay.state.memory import MemoryState

    gc.collect()
    state = MemoryState(max_keys, WINDOW)
    before_rss = rss()
    if trace:
        tracemalloc.start()
    out: dict[str, Any] = {"ids_per_round": ids, "max_keys": max_keys, "rounds": []}
    n = 0
    for _ in range(rounds):
        for start in range(0, ids, BATCH):
            keys = [f"archive:{event_id(n + i)}" for i in range(min(BATCH, ids - start))]
            n += len(keys)
            given = await state.mark(keys, "benchmark", TENTATIVE)  # as the engine: tentative,
            assert "seen" not in given, "a distinct id was answered as a duplicate"
            await state.confirm(keys, WINDOW)  # then confirmed once the spool committed
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] if trace else 0
        marks = sum(len(m) for m in state._seen.values())
        out["rounds"].append({
            "ids_so_far": n, "marks_held": marks, "traced_bytes": traced,
            "bytes_per_mark": round(traced / max(marks, 1), 1),
            "rss_growth_bytes": rss() - before_rss,
        })
    if trace:
        tracemalloc.stop()
    return out


async def measure_redis(url: str, samples: int) -> dict[str, Any]:
    import redis.asyncio as aioredis

    from relay.state.redis import RedisState
    from relay.state.seal import Sealer

    prefix = f"relay-bench-{uuid.uuid4().hex[:8]}:"
    state = RedisState(url, Sealer(["benchmark-secret"]), prefix=prefix)
    client = aioredis.Redis.from_url(url)
    try:
        keys = [f"archive:{event_id(i)}" for i in range(samples)]
        for start in range(0, samples, BATCH):
            await state.mark(keys[start:start + BATCH], "benchmark", TENTATIVE)
            await state.confirm(keys[start:start + BATCH], WINDOW)
        stored = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        usage = [int(await client.memory_usage(k) or 0) for k in stored]
        return {"marks": len(stored), "bytes_per_mark_median": statistics.median(usage),
                "key_example": stored[0].decode() if stored else None}
    finally:
        async for k in client.scan_iter(match=f"{prefix}*", count=1000):
            await client.delete(k)
        await client.aclose()
        await state.close()


def child(args: argparse.Namespace) -> None:
    result = asyncio.run(measure_memory(args.ids, args.max_keys, args.rounds, args.trace))
    print(json.dumps(result))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ids", type=int, default=1_000_000, help="distinct event ids per round")
    p.add_argument("--max-keys", type=int, default=1_000_000,
                   help="relay.dedup_max_keys (the shipped default)")
    p.add_argument("--rounds", type=int, default=2,
                   help="rounds of --ids distinct ids (2: the second is past the bound)")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0",
                   help="the Redis to measure marks in ('' to skip that part)")
    p.add_argument("--redis-samples", type=int, default=2000)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    # Fresh processes, so the resident set is the marks' and not this script's history: one
    # for the resident set, one (first round only) for the bytes Python allocated per mark.
    def run(*extra: str) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, __file__, "--child", "--ids", str(args.ids), "--max-keys",
             str(args.max_keys), *extra], capture_output=True, text=True, check=True)
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    memory = run("--rounds", str(args.rounds))
    [traced] = run("--rounds", "1", "--trace")["rounds"]
    print(f"memory state, relay.dedup_max_keys = {memory['max_keys']:,}, "
          f"{memory['ids_per_round']:,} distinct ids per round:")
    print(f"  {traced['bytes_per_mark']} bytes per mark allocated by Python (tracemalloc, "
          f"{traced['marks_held']:,} marks)")
    for r in memory["rounds"]:
        print(f"  after {r['ids_so_far']:>10,} ids: {r['marks_held']:>10,} marks held, "
              f"resident set +{r['rss_growth_bytes'] / 2**20:,.0f} MiB "
              f"({r['rss_growth_bytes'] / max(r['marks_held'], 1):,.0f} bytes per mark)")
    if args.redis:
        red = asyncio.run(measure_redis(args.redis, args.redis_samples))
        print(f"redis state: {red['marks']:,} marks, median {red['bytes_per_mark_median']:,} "
              f"bytes per mark (MEMORY USAGE), e.g. {red['key_example']}")


if __name__ == "__main__":
    main()
