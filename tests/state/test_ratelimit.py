"""The token buckets, one suite for both stores: ``memory`` with a clock the test moves,
Redis in real time (the waits are a fraction of a second, so the suite stays short)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from relay.state.ratelimit import Buckets, ClientKeys, MemoryBuckets, retry_after
from relay.state.ratelimit_redis import RedisBuckets

REDIS_URL = os.environ.get("RELAY_TEST_REDIS", "redis://127.0.0.1:6379/14")
KEYS = ClientKeys(["test-cookie-secret"])
RATE, BURST = 20.0, 3  # a token every 50 ms


@dataclass
class Store:
    make: Callable[[float, int], Buckets]
    # Let ``seconds`` pass: the memory clock moves, Redis's own clock is waited for.
    advance: Callable[[float], Awaitable[None]]
    client: aioredis.Redis | None = None
    prefix: str = ""


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        now = [1000.0]

        async def move(seconds: float) -> None:
            now[0] += seconds

        yield Store(lambda rate, burst: MemoryBuckets(rate, burst, KEYS, clock=lambda: now[0]),
                    move)
        return
    client = aioredis.from_url(REDIS_URL)
    prefix = f"test-rl-{uuid.uuid4().hex}:"

    async def wait(seconds: float) -> None:
        await asyncio.sleep(seconds)

    try:
        yield Store(lambda rate, burst: RedisBuckets(client, rate, burst, KEYS, prefix),
                    wait, client, prefix)
    finally:
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_a_burst_passes_then_the_next_request_waits_for_a_token(store: Store) -> None:
    buckets = store.make(RATE, BURST)
    assert [await buckets.take("203.0.113.7") for _ in range(BURST)] == [0.0] * BURST
    wait = await buckets.take("203.0.113.7")
    assert 0 < wait <= 1 / RATE
    await store.advance(wait)
    assert await buckets.take("203.0.113.7") == 0.0


async def test_each_address_has_its_own_bucket(store: Store) -> None:
    buckets = store.make(RATE, 1)
    assert await buckets.take("203.0.113.7") == 0.0
    assert await buckets.take("203.0.113.7") > 0
    assert await buckets.take("198.51.100.1") == 0.0


async def test_a_refused_request_takes_no_token(store: Store) -> None:
    """Refusals do not dig the hole deeper: waiting the first answer is enough, however
    many requests were refused meanwhile."""
    buckets = store.make(RATE, 1)
    assert await buckets.take("a") == 0.0
    waits = [await buckets.take("a") for _ in range(5)]
    assert all(0 < w <= 1 / RATE for w in waits)
    await store.advance(waits[0])
    assert await buckets.take("a") == 0.0


async def test_an_idle_bucket_refills_only_up_to_the_burst(store: Store) -> None:
    buckets = store.make(RATE, 2)
    for _ in range(2):
        assert await buckets.take("a") == 0.0
    await store.advance(5 * 1 / RATE)  # five tokens' worth of time, room for two
    assert [await buckets.take("a") for _ in range(2)] == [0.0, 0.0]
    assert await buckets.take("a") > 0


async def test_the_wait_is_how_long_until_the_next_token(store: Store) -> None:
    buckets = store.make(0.5, 1)  # a token every two seconds
    assert await buckets.take("a") == 0.0
    wait = await buckets.take("a")
    assert 1.5 < wait <= 2.0
    assert retry_after(wait) == "2"


async def test_redis_holds_no_address_and_its_buckets_expire(store: Store) -> None:
    if store.client is None:  # memory: the keys of its table are hashes too
        buckets = store.make(RATE, BURST)
        assert isinstance(buckets, MemoryBuckets)
        await buckets.take("203.0.113.7")
        assert list(buckets.buckets) == [KEYS.of("203.0.113.7")]
        return
    buckets = store.make(RATE, BURST)
    await buckets.take("203.0.113.7")
    keys = [k.decode() async for k in store.client.scan_iter(match=store.prefix + "*")]
    assert keys == [store.prefix + "rl:" + KEYS.of("203.0.113.7")]
    assert "203.0.113.7" not in keys[0]
    ttl = await store.client.pttl(keys[0])
    assert 0 < ttl <= 1000 + 1000 / RATE  # full again after one token's time, plus slack


async def test_two_replicas_share_one_bucket_in_redis() -> None:
    client = aioredis.from_url(REDIS_URL)
    prefix = f"test-rl-{uuid.uuid4().hex}:"
    try:
        one = RedisBuckets(client, 0.1, 4, KEYS, prefix)
        two = RedisBuckets(client, 0.1, 4, ClientKeys(["test-cookie-secret"]), prefix)
        answers = await asyncio.gather(*(b.take("203.0.113.7") for b in (one, two) * 3))
        assert sorted(a == 0.0 for a in answers) == [False, False, True, True, True, True]
    finally:
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert [retry_after(w) for w in (0.01, 0.5, 1.0, 1.01, 7.2)] == ["1", "1", "1", "2", "8"]


def test_client_keys_depend_on_the_secret() -> None:
    assert KEYS.of("203.0.113.7") == ClientKeys(["x", "test-cookie-secret"]).of("203.0.113.7")
    assert KEYS.of("203.0.113.7") != ClientKeys(["another"]).of("203.0.113.7")
    assert len(KEYS.of("203.0.113.7")) == 32
