"""What only the Redis spool does: claims that pass to another replica after
``claim_after``, released leases, ``WAIT`` for Redis replicas, an unreachable Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from relay.errors import SpoolUnavailable
from relay.rules.model import SpoolWait
from relay.spool.base import Row
from relay.spool.redis import RedisSpool
from tests.e2e.relayproc import free_port
from tests.spool.conftest import Store, redis_client


def rows(n: int, destination: str = "ga4") -> list[Row]:
    return [Row(destination, f"e{i}", b'{"event_id":"e%d"}' % i) for i in range(n)]


async def until(check: Any, what: str, timeout: float = 20.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        got = await check()
        if got:
            return got
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_dead_replicas_claims_go_to_another_after_claim_after(
        redis_store: Store) -> None:
    dying = redis_store.open(claim_after=0.3)
    other = redis_store.open(claim_after=0.3)
    await dying.start()
    await other.start()
    try:
        await dying.put(rows(3))
        held = await dying.claim("ga4", 10, 60)
        assert len(held) == 3
        assert await other.claim("ga4", 10, 60) == []  # held, not idle long enough yet
        # dying stops here without acking (SIGKILL): other takes the copies once idle.
        taken = await until(lambda: other.claim("ga4", 10, 60), "the idle copies")
        assert [c.id for c in taken] == [c.id for c in held]  # the same copies, same ids
        assert [c.attempts for c in taken] == [0, 0, 0]  # a crash is not an attempt
        await other.ack([c.id for c in taken])
        await dying.ack([c.id for c in held])  # late: nothing left to delete
        stats = await other.stats()
        assert other.depths() == ({"ga4": 0}, {}) and stats.oldest == {} and stats.size is None
    finally:
        await dying.close()
        await other.close()


async def test_release_leases_makes_this_process_claims_claimable_at_once(
        redis_store: Store) -> None:
    first = redis_store.open()  # claim_after 30s: only a release lets these go sooner
    await first.start()
    second = redis_store.open()
    await second.start()
    try:
        await first.put(rows(2))
        assert len(await first.claim("ga4", 10, 60)) == 2
        assert await second.release_leases() == 0  # holds nothing
        assert await second.claim("ga4", 10, 60) == []
        assert await first.release_leases() == 2
        assert len(await second.claim("ga4", 10, 60)) == 2
    finally:
        await first.close()
        await second.close()


async def test_closing_leaves_the_group_only_when_holding_nothing(redis_store: Store) -> None:
    idle, busy = redis_store.open(), redis_store.open()
    await idle.start()
    await busy.start()
    await idle.put(rows(1))
    assert await idle.claim("meta", 10, 60) == []  # joins the group, holds nothing
    assert len(await busy.claim("ga4", 10, 60)) == 1
    await idle.close()
    await busy.close()
    client = redis_client()
    try:
        names = {c["name"].decode() for c in client.xinfo_consumers(
            redis_store.prefix + "o:ga4", "relay")}
        assert busy.consumer in names and idle.consumer not in names
    finally:
        client.close()


async def test_wait_for_replicas_that_do_not_exist_refuses_the_put(redis_store: Store) -> None:
    """``relay.spool_wait`` asks for a Redis replica this Redis does not have: nothing is
    accepted (503), the spool says it is not writable."""
    spool = redis_store.open(wait=SpoolWait(1, 0.05))
    await spool.start()
    try:
        with pytest.raises(SpoolUnavailable, match=r"0 of 1 Redis replica"):
            await spool.put(rows(1))
        assert not spool.writable()
    finally:
        await spool.close()
    waiting_for_none = redis_store.open(wait=SpoolWait(0, 0.05))  # WAIT 0: what primary has
    await waiting_for_none.start()
    try:
        await waiting_for_none.put(rows(1))
        assert waiting_for_none.writable()
    finally:
        await waiting_for_none.close()


async def test_an_unreachable_redis_is_spool_unavailable() -> None:
    spool = RedisSpool(f"redis://127.0.0.1:{free_port()}/0?prefix=nowhere:")
    with pytest.raises(SpoolUnavailable, match="ConnectionError"):
        await spool.start()
    assert not spool.writable()
    with pytest.raises(SpoolUnavailable, match="ConnectionError"):
        await spool._insert(rows(1), ())
    await spool.close()
    with pytest.raises(SpoolUnavailable, match="closed"):
        await spool.put(rows(1))


async def test_a_write_redis_refuses_is_spool_unavailable(redis_store: Store) -> None:
    client = redis_client()
    client.set(redis_store.prefix + "o:ga4", "not a stream")  # XADD fails inside EXEC
    client.close()
    spool = redis_store.open()
    await spool.start()
    try:
        with pytest.raises(SpoolUnavailable, match="the write failed"):
            await spool.put(rows(1))
        assert not spool.writable()
        await spool.put(rows(1, "meta"))
        assert spool.writable()
    finally:
        await spool.close()
