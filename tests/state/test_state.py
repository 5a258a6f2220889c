from __future__ import annotations

import asyncio
import os
import time
import uuid

import pytest

from relay.state import Pending, State, memory
from relay.state.memory import CONSENT_TTL, MemoryState, TTLMap
from relay.state.redis import RedisState
from relay.state.seal import Sealer, SealError

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
    assert len(state._seen[60]) <= 10


async def test_memory_dedup_evicts_the_oldest_mark_when_full() -> None:
    state = MemoryState(3, 60, Clock())
    assert await state.seen(["a", "b", "c"], 60) == [False, False, False]
    assert await state.seen(["d"], 60) == [False]  # "a" goes to make room
    assert len(state._seen[60]) == 3
    assert [await state.contains(k) for k in "abcd"] == [False, True, True, True]
    # "a" is new again; "b" goes: a hit does not renew a mark
    assert await state.seen(["b", "a"], 60) == [True, False]
    assert [await state.contains(k) for k in "abcd"] == [True, False, True, True]


async def test_memory_dedup_marks_expire_on_the_clock() -> None:
    clock = Clock()
    state = MemoryState(100, 60, clock)
    assert await state.seen(["a"], 60) == [False]
    clock.now += 30
    assert await state.seen(["a", "b"], 60) == [True, False]  # a live mark is not renewed
    clock.now += 30  # "a" expires at its deadline; "b" has 30s left
    assert await state.contains("a") is False
    assert await state.seen(["a", "b"], 60) == [False, True]  # "a" marked anew
    clock.now += 59
    assert await state.seen(["a", "b"], 60) == [True, False]
    assert len(state._seen[60]) == 2  # expired marks are trimmed as new ones arrive


async def test_memory_marks_keep_the_ttl_they_were_given() -> None:
    # The engine marks "auth:<event_id>" for its authority window, longer than dedup's.
    clock = Clock()
    state = MemoryState(100, 60, clock)
    assert await state.seen(["dedup"], 60) == [False]
    assert await state.seen(["auth:1"], 600) == [False]
    clock.now += 61
    assert not await state.contains("dedup")
    assert await state.contains("auth:1")
    await state.forget(["auth:1"])
    assert not await state.contains("auth:1")


async def test_memory_dedup_forget_unmarks() -> None:
    state = MemoryState(100, 60, Clock())
    await state.seen(["a", "b"], 60)
    await state.forget(["a", "never-marked"])
    assert await state.contains("a") is False
    assert await state.seen(["a", "b"], 60) == [False, True]


async def test_memory_consent_memory_expires_and_is_bounded() -> None:
    clock = Clock()
    state = MemoryState(2, 60, clock)
    await state.remember_consent("c1", {"analytics": "granted"}, CONSENT_TTL)
    clock.now += CONSENT_TTL - 1
    await state.remember_consent("c2", {"ads": "denied"}, CONSENT_TTL)
    assert await state.consent_for("c1") == {"analytics": "granted"}
    clock.now += 1
    assert await state.consent_for("c1") is None
    assert await state.consent_for("c2") == {"ads": "denied"}
    await state.remember_consent("c3", {}, CONSENT_TTL)
    await state.remember_consent("c2", {"ads": "granted"}, CONSENT_TTL)  # renewed: to the back
    await state.remember_consent("c4", {}, CONSENT_TTL)  # full: the oldest, "c3", goes
    assert await state.consent_for("c3") is None
    assert await state.consent_for("c2") == {"ads": "granted"}


def test_ttl_map_trims_expired_entries_from_the_front() -> None:
    clock = Clock()
    m: TTLMap[int] = TTLMap(max_keys=1000, ttl=10, clock=clock)
    for i in range(100):
        m.set(str(i), i)
        clock.now += 0.1
    clock.now += 5  # the first 50 or so have expired
    m.set("new", 0)
    assert 49 <= len(m) <= 52
    assert m.get("0") is None and m.get("99") == 99


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


def _item(cid: str, eid: str, waits: dict[str, str] | None = None, size: int = 20) -> Pending:
    body = b'{"event":"page_view","event_id":"' + eid.encode() + b'","p":"' + b"x" * size + b'"}'
    return Pending(cid, eid, "page_view", waits or {"ads_log": "ads"}, body, time.time() + 60)


async def _exercise_pending(state: State) -> None:
    assert await state.consent_for("c1") is None
    await state.remember_consent("c1", {"analytics": "granted"}, 60)
    assert await state.consent_for("c1") == {"analytics": "granted"}
    first = _item("c1", "e1", {"archive": "analytics", "ads_log": "ads"})
    assert await state.pend(first, 60)
    assert await state.pend(_item("c1", "e2"), 60)
    assert await state.pend(_item("c9", "e9"), 60)
    assert await state.pending_counts() == {("archive", "analytics"): 1, ("ads_log", "ads"): 3}
    released = await state.release("c1")
    assert [i.event_id for i in released] == ["e1", "e2"]
    assert released[0] == first  # kept as it was given: the body byte for byte
    assert await state.release("c1") == []
    assert await state.pending_counts() == {("ads_log", "ads"): 1}
    assert [i.event_id for i in await state.release("c9")] == ["e9"]
    assert await state.pending_counts() == {}


async def test_memory_pending() -> None:
    clock = Clock()
    state = MemoryState(100, 60, clock)
    await _exercise_pending(state)
    await state.pend(_item("c2", "e3"), 10)
    await state.pend(_item("c2", "e4"), 30)
    clock.now += 11
    assert [i.event_id for i in await state.expired_pending()] == ["e3"]
    assert await state.pending_counts() == {("ads_log", "ads"): 1}
    assert [i.event_id for i in await state.release("c2")] == ["e4"]
    assert await state.pending_counts() == {}


async def test_memory_pending_is_bounded_in_events_and_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = MemoryState(100, 60, Clock())
    monkeypatch.setattr(memory, "MAX_PENDING", 2)
    assert await state.pend(_item("c1", "e1"), 60)
    assert await state.pend(_item("c2", "e2"), 60)
    assert not await state.pend(_item("c3", "e3"), 60)  # full: nothing kept
    assert await state.pending_counts() == {("ads_log", "ads"): 2}
    await state.release("c1")  # room again
    assert await state.pend(_item("c3", "e3"), 60)

    state = MemoryState(100, 60, Clock())
    monkeypatch.setattr(memory, "MAX_PENDING", 100)
    big = _item("c1", "big", size=900)
    monkeypatch.setattr(memory, "MAX_PENDING_BYTES", 2 * len(big.body) + 100)
    assert await state.pend(big, 60)
    assert await state.pend(_item("c1", "big2", size=900), 60)
    assert not await state.pend(_item("c2", "big3", size=900), 60)  # over the byte bound
    assert await state.pend(_item("c2", "small", size=1), 60)  # what fits still does
    await state.release("c1")
    assert await state.pend(_item("c2", "big3", size=900), 60)


def _redis_state() -> RedisState:
    return RedisState(REDIS_URL, Sealer(["test-secret"]), prefix=f"relay-test-{uuid.uuid4().hex}:")


async def _reachable(state: RedisState) -> None:
    try:
        await state.r.ping()
    except Exception as exc:  # pragma: no cover
        await state.close()
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")


async def test_redis_pending() -> None:
    state = _redis_state()
    await _reachable(state)
    try:
        await _exercise_pending(state)
        await state.pend(_item("c2", "e3"), 0.01)
        await state.pend(_item("c2", "e4"), 30)
        await asyncio.sleep(0.05)
        assert [i.event_id for i in await state.expired_pending()] == ["e3"]
        assert await state.pending_counts() == {("ads_log", "ads"): 1}
        # what stayed is still waiting, found by the next sweep at its own deadline
        score = await state.r.zscore(state.p + "pz", "c2")
        assert score is not None and score > time.time() + 20
        assert await state.expired_pending() == []
        assert [i.event_id for i in await state.release("c2")] == ["e4"]
        assert await state.pending_counts() == {}
    finally:
        await state.close()


async def test_redis_pending_is_sealed_and_counted_across_instances() -> None:
    """Two relays on one Redis: one's waiting copies are counted and released by the other,
    and the waiting event is at rest only sealed."""
    a = _redis_state()
    await _reachable(a)
    b = RedisState(REDIS_URL, Sealer(["test-secret"]), prefix=a.p)
    try:
        item = _item("c1", "secret-event-id", {"archive": "analytics"})
        await a.pend(item, 60)
        assert await b.pending_counts() == {("archive", "analytics"): 1}
        stored = repr(await a.r.lrange(a.p + "p:c1", 0, -1)).encode()
        assert b"secret-event-id" not in stored and b"page_view" not in stored
        assert await b.release("c1") == [item]
        assert await a.pending_counts() == {}
    finally:
        await a.close()
        await b.close()


async def test_redis_pending_that_cannot_be_opened_is_dropped_not_fatal() -> None:
    a = _redis_state()
    await _reachable(a)
    rotated = RedisState(REDIS_URL, Sealer(["another-secret"]), prefix=a.p)
    try:
        await a.pend(_item("c1", "e1"), 60)
        await a.r.rpush(a.p + "p:c1", b"not sealed")
        assert await rotated.release("c1") == []
        assert await a.release("c1") == []  # taken, though unreadable
    finally:
        await a.close()
        await rotated.close()


async def test_redis_gauge_forgets_ids_whose_list_redis_dropped() -> None:
    state = _redis_state()
    await _reachable(state)
    try:
        await state.pend(_item("c1", "e1"), 0.01)
        await state.r.delete(state.p + "p:c1")  # as if Redis expired it, unswept
        await state.r.zadd(state.p + "pn:ads_log|ads", {"stale": time.time() - 3600})
        assert await state.pending_counts() == {("ads_log", "ads"): 2}
        await asyncio.sleep(0.05)
        assert await state.expired_pending() == []
        assert await state.pending_counts() == {("ads_log", "ads"): 1}  # the recent id stays
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


async def _exercise_forget_events(state: State) -> None:
    """Held copies and waiting events of the given event ids go; the others stay."""
    await state.hold(["eid:e1", "cid:c1:purchase"], {"event": "purchase", "event_id": "e1",
                                                       "fields": {}}, 60)
    await state.hold(["eid:e2"], {"event": "purchase", "event_id": "e2", "fields": {}}, 60)
    await state.pend(_item("c1", "e3", {"archive": "analytics"}), 60)
    await state.pend(_item("c1", "e4", {"archive": "analytics"}), 60)
    await state.pend(_item("c2", "e5"), 60)

    assert await state.forget_events(["e1", "e3", "e5", "unknown"]) == (1, 2)

    assert await state.take(["cid:c1:purchase"]) is None  # every alias of e1 went
    assert await state.take(["eid:e2"]) is not None
    assert await state.pending_counts() == {("archive", "analytics"): 1}
    assert [i.event_id for i in await state.release("c1")] == ["e4"]
    assert await state.release("c2") == []
    assert await state.forget_events([]) == (0, 0)


async def test_memory_forget_events() -> None:
    await _exercise_forget_events(MemoryState(100, 60, Clock()))


async def test_redis_forget_events() -> None:
    state = _redis_state()
    await _reachable(state)
    try:
        await _exercise_forget_events(state)
    finally:
        await state.close()


async def test_redis_forget_events_keeps_what_it_cannot_open() -> None:
    """A copy sealed under a secret no longer listed is not dropped by a forget: only the
    copies that are the person's go, and a list with none of them is not rewritten."""
    a = _redis_state()
    await _reachable(a)
    try:
        await a.pend(_item("c1", "e1"), 60)
        await a.r.rpush(a.p + "p:c1", b"not sealed")
        await a.pend(_item("c2", "e2"), 60)
        assert await a.forget_events(["e1"]) == (0, 1)
        assert await a.r.lrange(a.p + "p:c1", 0, -1) == [b"not sealed"]
        before = await a.r.lrange(a.p + "p:c2", 0, -1)
        assert await a.forget_events(["e9"]) == (0, 0)
        assert await a.r.lrange(a.p + "p:c2", 0, -1) == before
    finally:
        await a.close()
