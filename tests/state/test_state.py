"""The state stores: one behavioural suite run against both ``MemoryState`` and
``RedisState`` (dedup marks, tentative and confirmed; held copies; pending consent; consent
memory; ``forget_events``), then what only one of them does (bounds, sealing, Redis's own
bookkeeping). Redis is required: the Redis half fails loudly without it."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator

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


class Store:
    """A state under test, and how to let time pass for it: the memory state's clock is
    moved; Redis's time is real, so ``elapse`` sleeps (every ttl in the suite is short)."""

    def __init__(self, state: State, clock: Clock | None = None) -> None:
        self.state = state
        self.clock = clock

    async def elapse(self, seconds: float) -> None:
        if self.clock is not None:
            self.clock.now += seconds
        else:
            await asyncio.sleep(seconds)


def _redis_state() -> RedisState:
    return RedisState(REDIS_URL, Sealer(["test-secret"]), prefix=f"relay-test-{uuid.uuid4().hex}:")


async def _reachable(state: RedisState) -> None:
    try:
        await state.r.ping()
    except Exception as exc:  # pragma: no cover - the failure message is the point
        await state.close()
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        clock = Clock()
        yield Store(MemoryState(100, 60, clock), clock)
        return
    state = _redis_state()
    await _reachable(state)
    try:
        yield Store(state)
    finally:
        await state.close()


@pytest.fixture
async def redis_state() -> AsyncIterator[RedisState]:
    """A Redis state under a prefix of its own; fails loudly without Redis."""
    state = _redis_state()
    await _reachable(state)
    try:
        yield state
    finally:
        await state.close()


# -- dedup marks: tentative, then confirmed ---------------------------------------------


async def test_a_tentative_mark_is_its_tokens_until_confirmed(store: Store) -> None:
    state = store.state
    assert await state.mark(["a", "b"], "t1", 5) == ["new", "new"]
    assert await state.mark(["a", "b", "c"], "t1", 5) == ["ours", "ours", "new"]
    assert await state.mark(["a", "c"], "t2", 5) == ["busy", "busy"]
    assert not await state.contains("a")  # tentative: not a mark anyone is a duplicate of
    await state.confirm(["a"], 60)
    assert await state.contains("a")
    assert await state.mark(["a"], "t1", 5) == ["seen"]
    assert await state.mark(["a", "b"], "t2", 5) == ["seen", "busy"]


async def test_unmark_drops_only_the_tokens_own_tentative_marks(store: Store) -> None:
    state = store.state
    assert await state.mark(["a", "b"], "t1", 5) == ["new", "new"]
    await state.confirm(["b"], 60)
    await state.unmark(["a", "b"], "t2")  # another token's: nothing happens
    assert await state.mark(["a"], "t2", 5) == ["busy"]
    await state.unmark(["a", "b", "never-marked"], "t1")
    assert await state.mark(["a", "b"], "t2", 5) == ["new", "seen"]  # confirmed stays


async def test_a_tentative_mark_nobody_confirms_expires_by_itself(store: Store) -> None:
    """What a process killed between marking and committing leaves behind."""
    state = store.state
    assert await state.mark(["a"], "dead", 0.05) == ["new"]
    await store.elapse(0.15)
    assert await state.mark(["a"], "retry", 5) == ["new"]


async def test_keep_extends_only_the_tokens_own_tentative_marks(store: Store) -> None:
    state = store.state
    assert await state.mark(["a", "b"], "t1", 0.3) == ["new", "new"]
    await state.keep(["a"], "t1", 60)
    await state.keep(["b"], "t2", 60)  # not t2's: not extended
    await store.elapse(0.5)
    assert await state.mark(["a", "b"], "t2", 5) == ["busy", "new"]
    await state.keep(["a"], "t1", 60)
    await state.confirm(["a"], 60)
    await state.keep(["a"], "t1", 0.05)  # confirmed: keep no longer touches it
    await store.elapse(0.15)
    assert await state.mark(["a"], "t3", 5) == ["seen"]


async def test_a_confirmed_mark_lasts_its_ttl(store: Store) -> None:
    """The engine confirms ``auth:<event_id>`` for its authority window, longer than
    dedup's; each mark keeps the ttl it was confirmed for."""
    state = store.state
    assert await state.mark(["dedup"], "t1", 5) == ["new"]
    await state.confirm(["dedup"], 0.1)
    await state.confirm(["auth:1"], 60)  # never marked tentatively: confirmed all the same
    assert await state.contains("dedup") and await state.contains("auth:1")
    await store.elapse(0.3)
    assert not await state.contains("dedup")
    assert await state.contains("auth:1")
    assert await state.mark(["dedup", "auth:1"], "t2", 5) == ["new", "seen"]


async def test_confirming_over_another_tokens_tentative_mark(store: Store) -> None:
    """A commit that outlived its tentative mark still confirms: its copy is spooled."""
    state = store.state
    assert await state.mark(["a"], "slow", 0.05) == ["new"]
    await store.elapse(0.15)
    assert await state.mark(["a"], "fast", 5) == ["new"]
    await state.confirm(["a"], 60)
    await state.unmark(["a"], "fast")
    assert await state.mark(["a"], "third", 5) == ["seen"]


async def test_nothing_to_mark(store: Store) -> None:
    state = store.state
    assert await state.mark([], "t1", 5) == []
    await state.keep([], "t1", 5)
    await state.confirm([], 5)
    await state.unmark([], "t1")


# -- held copies (authority) -------------------------------------------------------------


async def test_a_held_copy_is_taken_once_by_any_alias(store: Store) -> None:
    state = store.state
    await state.hold(["eid:1", "cid:x:purchase"], {"event": "purchase", "fields": {"a": 1}}, 60)
    assert await state.take(["cid:x:purchase"]) == {"event": "purchase", "fields": {"a": 1}}
    assert await state.take(["eid:1"]) is None  # all aliases go with it
    assert await state.expired() == []


async def test_peek_leaves_the_held_copy_to_take(store: Store) -> None:
    state = store.state
    await state.hold(["eid:p1", "cid:x:purchase"], {"event": "purchase", "fields": {"a": 1}}, 60)
    assert await state.peek(["eid:nope", "cid:x:purchase"]) == {"event": "purchase",
                                                                "fields": {"a": 1}}
    assert await state.peek(["eid:nope"]) is None
    assert await state.take(["eid:p1"]) == {"event": "purchase", "fields": {"a": 1}}
    assert await state.peek(["eid:p1", "cid:x:purchase"]) is None


async def test_a_held_copy_nobody_takes_expires_once(store: Store) -> None:
    state = store.state
    await state.hold(["eid:2"], {"event": "purchase", "fields": {}}, 0.05)
    await state.hold(["eid:3"], {"event": "purchase", "fields": {"x": 1}}, 60)
    await store.elapse(0.15)
    assert await state.expired() == [{"event": "purchase", "fields": {}}]
    assert await state.expired() == []
    assert await state.take(["eid:2"]) is None
    assert await state.take(["eid:3"]) == {"event": "purchase", "fields": {"x": 1}}


async def test_holding_again_under_the_same_aliases_keeps_one_copy(store: Store) -> None:
    """A browser's retry of an event held for its authority is held once: the second copy
    replaces the first, and nothing is left over to expire."""
    state = store.state
    aliases = ["eid:r1", "cid:c1:purchase"]
    await state.hold(aliases, {"event": "purchase", "fields": {"try": 1}}, 0.05)
    await state.hold(aliases, {"event": "purchase", "fields": {"try": 2}}, 0.05)
    await store.elapse(0.15)
    assert await state.expired() == [{"event": "purchase", "fields": {"try": 2}}]
    assert await state.expired() == []


# -- events waiting for consent, consent memory ----------------------------------------


def _item(cid: str, eid: str, waits: dict[str, str] | None = None, size: int = 20) -> Pending:
    body = b'{"event":"page_view","event_id":"' + eid.encode() + b'","p":"' + b"x" * size + b'"}'
    return Pending(cid, eid, "page_view", waits or {"ads_log": "ads"}, body, time.time() + 60)


async def test_events_wait_for_their_browsers_choice(store: Store) -> None:
    state = store.state
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


async def test_a_waiting_event_whose_window_ends_is_swept_once(store: Store) -> None:
    state = store.state
    await state.pend(_item("c2", "e3"), 0.05)
    await state.pend(_item("c2", "e4"), 30)
    await store.elapse(0.15)
    assert [i.event_id for i in await state.expired_pending()] == ["e3"]
    assert await state.expired_pending() == []
    assert await state.pending_counts() == {("ads_log", "ads"): 1}
    assert [i.event_id for i in await state.release("c2")] == ["e4"]
    assert await state.pending_counts() == {}


async def test_released_events_are_settled_in_their_place(store: Store) -> None:
    """Read without taking, then settled once the copies are committed: a released event
    goes, or is replaced by what of it still waits; settling again changes nothing."""
    state = store.state
    both = _item("c1", "e1", {"archive": "analytics", "ads_log": "ads"})
    await state.pend(both, 60)
    await state.pend(_item("c1", "e2"), 60)
    await state.pend(_item("c1", "e3"), 60)
    assert [i.event_id for i in await state.waiting("c1")] == ["e1", "e2", "e3"]
    assert (await state.waiting("c1"))[0] == both  # as it was given, and not taken
    assert len(await state.waiting("c1")) == 3
    rest = Pending("c1", "e1", "page_view", {"ads_log": "ads"}, both.body, both.until)
    await state.settle("c1", {"e1": rest, "e2": None})
    assert await state.pending_counts() == {("ads_log", "ads"): 2}
    assert [(i.event_id, dict(i.waits)) for i in await state.waiting("c1")] == [
        ("e1", {"ads_log": "ads"}), ("e3", {"ads_log": "ads"})]
    await state.settle("c1", {"e1": rest, "e2": None})  # another request's copy of it
    assert await state.pending_counts() == {("ads_log", "ads"): 2}
    assert [i.event_id for i in await state.waiting("c1")] == ["e1", "e3"]
    await state.settle("c1", {"e1": None, "e3": None})
    assert await state.waiting("c1") == [] and await state.pending_counts() == {}
    await state.settle("c9", {"e9": None})  # nobody waiting: nothing to do
    assert await state.release("c9") == []


async def test_a_browsers_choice_is_remembered(store: Store) -> None:
    state = store.state
    assert await state.consent_for("c1") is None
    await state.remember_consent("c1", {"analytics": "granted"}, 60)
    assert await state.consent_for("c1") == {"analytics": "granted"}
    await state.remember_consent("c1", {"analytics": "denied", "ads": "granted"}, 60)
    assert await state.consent_for("c1") == {"analytics": "denied", "ads": "granted"}
    assert await state.consent_for("c2") is None


async def test_forget_events_drops_the_held_and_waiting_copies_of_those_events(
    store: Store,
) -> None:
    """Held copies and waiting events of the given event ids go; the others stay."""
    state = store.state
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


# -- memory only -------------------------------------------------------------------------


async def test_memory_confirmed_marks_are_bounded() -> None:
    state = MemoryState(10, 60)
    await state.confirm([str(i) for i in range(100)], 60)
    assert len(state._seen[60]) <= 10


async def test_memory_tentative_marks_are_trimmed_when_they_outgrow_the_bound() -> None:
    clock = Clock()
    state = MemoryState(10, 60, clock)
    await state.mark([str(i) for i in range(20)], "dead", 1)
    clock.now += 2
    await state.mark(["new"], "t1", 1)
    assert list(state._tentative) == ["new"]


async def test_memory_dedup_evicts_the_oldest_confirmed_mark_when_full() -> None:
    state = MemoryState(3, 60, Clock())
    await state.confirm(["a", "b", "c"], 60)
    await state.confirm(["d"], 60)  # "a" goes to make room
    assert len(state._seen[60]) == 3
    assert [await state.contains(k) for k in "abcd"] == [False, True, True, True]
    # a hit does not renew a mark: "b" is the next to go
    assert await state.mark(["b", "a"], "t1", 5) == ["seen", "new"]
    await state.confirm(["a"], 60)
    assert [await state.contains(k) for k in "abcd"] == [True, False, True, True]


async def test_memory_confirmed_marks_expire_on_the_clock_and_are_trimmed() -> None:
    clock = Clock()
    state = MemoryState(100, 60, clock)
    await state.confirm(["a"], 60)
    clock.now += 30
    await state.confirm(["b"], 60)
    clock.now += 30  # "a" expires at its deadline; "b" has 30s left
    assert await state.mark(["a", "b"], "t1", 5) == ["new", "seen"]
    await state.confirm(["a"], 60)
    assert len(state._seen[60]) == 2  # expired marks are trimmed as new ones arrive


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


# -- Redis only --------------------------------------------------------------------------


async def test_redis_marks_are_shared_by_two_instances() -> None:
    a = _redis_state()
    await _reachable(a)
    b = RedisState(REDIS_URL, Sealer(["test-secret"]), prefix=a.p)
    try:
        assert await a.mark(["k"], "ta", 5) == ["new"]
        assert await b.mark(["k"], "tb", 5) == ["busy"]
        await a.confirm(["k"], 60)
        assert await b.mark(["k"], "tb", 5) == ["seen"]
        assert await a.r.get(a.p + "d:k") == b"1"
    finally:
        await a.close()
        await b.close()


async def test_redis_mark_of_an_older_release_counts_as_confirmed(redis_state: RedisState) -> None:
    """Marks an earlier release wrote (``1``, set once) are confirmed ones."""
    await redis_state.r.set(redis_state.p + "d:old", b"1", px=60_000)
    assert await redis_state.contains("old")
    assert await redis_state.mark(["old"], "t1", 5) == ["seen"]


async def test_redis_waiting_event_deadline_is_the_sweeps_score(redis_state: RedisState) -> None:
    await redis_state.pend(_item("c2", "e3"), 0.01)
    await redis_state.pend(_item("c2", "e4"), 30)
    await asyncio.sleep(0.05)
    assert [i.event_id for i in await redis_state.expired_pending()] == ["e3"]
    # what stayed is still waiting, found by the next sweep at its own deadline
    score = await redis_state.r.zscore(redis_state.p + "pz", "c2")
    assert score is not None and score > time.time() + 20


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


async def test_redis_gauge_forgets_ids_whose_list_redis_dropped(redis_state: RedisState) -> None:
    await redis_state.pend(_item("c1", "e1"), 0.01)
    await redis_state.r.delete(redis_state.p + "p:c1")  # as if Redis expired it, unswept
    await redis_state.r.zadd(redis_state.p + "pn:ads_log|ads", {"stale": time.time() - 3600})
    assert await redis_state.pending_counts() == {("ads_log", "ads"): 2}
    await asyncio.sleep(0.05)
    assert await redis_state.expired_pending() == []
    assert await redis_state.pending_counts() == {("ads_log", "ads"): 1}  # the recent id stays


def test_sealer_round_trip_rotation_and_tampering() -> None:
    old = Sealer(["old"])
    blob = old.seal(b"secret payload")
    assert b"secret payload" not in blob
    assert Sealer(["old", "new"]).open(blob) == b"secret payload"
    with pytest.raises(SealError):
        Sealer(["new"]).open(blob)
    with pytest.raises(SealError):
        old.open(blob[:-1] + bytes([blob[-1] ^ 1]))


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
