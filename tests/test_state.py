from __future__ import annotations

import os
import uuid

import pytest

from relay.seal import Sealer, SealError
from relay.state import MemoryState, RedisState, State

REDIS_URL = os.environ.get("RELAY_TEST_REDIS", "redis://127.0.0.1:6379/14")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _exercise(state: State, prefix: str) -> None:
    keys = [f"{prefix}a", f"{prefix}b"]
    assert await state.seen(keys, 60) == [False, False]
    assert await state.seen(keys, 60) == [True, True]
    await state.forget([keys[0]])
    assert await state.seen(keys, 60) == [False, True]
    await state.hold(
        [f"{prefix}eid:1", f"{prefix}cid:x:purchase"], {"event": "purchase", "fields": {"a": 1}}, 60
    )
    assert await state.take([f"{prefix}cid:x:purchase"]) == {
        "event": "purchase",
        "fields": {"a": 1},
    }
    assert await state.take([f"{prefix}eid:1"]) is None  # all aliases go with it


async def test_memory_state() -> None:
    clock = Clock()
    state = MemoryState(100, 60, clock)
    await _exercise(state, "")
    await state.hold(["eid:2"], {"event": "purchase", "fields": {}}, 10)
    assert await state.expired() == []
    clock.now += 11
    assert await state.expired() == [{"event": "purchase", "fields": {}}]
    assert await state.expired() == []
    assert await state.take(["eid:2"]) is None


async def test_memory_state_is_bounded() -> None:
    state = MemoryState(10, 60)
    await state.seen([str(i) for i in range(100)], 60)
    assert len(state._seen) <= 10


async def test_redis_state() -> None:
    """Needs Redis on 127.0.0.1:6379 (.ci/run starts it); fails loudly without it."""
    state = RedisState(REDIS_URL, Sealer(["test-secret"]), prefix=f"relay-test-{uuid.uuid4().hex}:")
    try:
        await state.r.ping()
    except Exception as exc:  # pragma: no cover - the failure message is the point
        await state.close()
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
    try:
        await _exercise(state, "")
        await state.hold(["eid:9"], {"event": "purchase", "fields": {}}, 0.01)
        import asyncio

        await asyncio.sleep(0.05)
        assert await state.expired() == [{"event": "purchase", "fields": {}}]
        assert await state.expired() == []
    finally:
        await state.close()


async def _exercise_pending(state: State) -> None:
    assert await state.consent_for("c1") is None
    await state.remember_consent("c1", {"analytics": "granted"}, 60)
    assert await state.consent_for("c1") == {"analytics": "granted"}
    assert await state.pend("c1", {"event": {"event_id": "e1"}, "destinations": {"a": "ads"}}, 60)
    assert await state.pend("c1", {"event": {"event_id": "e2"}, "destinations": {"a": "ads"}}, 60)
    released = await state.release("c1")
    assert [i["event"]["event_id"] for i in released] == ["e1", "e2"]
    assert await state.release("c1") == []


async def test_memory_pending() -> None:
    clock = Clock()
    state = MemoryState(100, 60, clock)
    await _exercise_pending(state)
    await state.pend("c2", {"event": {"event_id": "e3"}, "destinations": {}}, 10)
    await state.pend("c2", {"event": {"event_id": "e4"}, "destinations": {}}, 30)
    clock.now += 11
    assert [i["event"]["event_id"] for i in await state.expired_pending()] == ["e3"]
    assert [i["event"]["event_id"] for i in await state.release("c2")] == ["e4"]


async def test_redis_pending() -> None:
    state = RedisState(REDIS_URL, Sealer(["test-secret"]), prefix=f"relay-test-{uuid.uuid4().hex}:")
    try:
        await state.r.ping()
    except Exception as exc:  # pragma: no cover
        await state.close()
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
    try:
        await _exercise_pending(state)
        import asyncio

        await state.pend("c2", {"event": {"event_id": "e3"}, "destinations": {}}, 0.01)
        await state.pend("c2", {"event": {"event_id": "e4"}, "destinations": {}}, 30)
        await asyncio.sleep(0.05)
        assert [i["event"]["event_id"] for i in await state.expired_pending()] == ["e3"]
        assert [i["event"]["event_id"] for i in await state.release("c2")] == ["e4"]
    finally:
        await state.close()


def test_sealer_round_trip_rotation_and_tampering() -> None:
    old = Sealer(["old"])
    blob = old.seal(b"secret payload")
    assert b"secret payload" not in blob
    assert Sealer(["old", "new"]).open(blob) == b"secret payload"
    with pytest.raises(SealError):
        Sealer(["new"]).open(blob)
    with pytest.raises(SealError):
        old.open(blob[:-1] + bytes([blob[-1] ^ 1]))
