"""Two-phase dedup marks through the engine, on memory and Redis state: concurrent copies
of one event give one spooled copy; a copy whose commit failed, or whose process died, is
never the reason for a "duplicate"; a mark that does not settle makes the request refused."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from relay.engine import Engine, marks
from relay.engine.results import Batch, Meta
from relay.errors import Contended, SpoolUnavailable, StateUnavailable
from relay.observe.mask import Masker
from relay.observe.metrics import Metrics
from relay.registry import load_rules
from relay.rules.model import Rules
from relay.state import State
from relay.state.memory import MemoryState
from relay.state.redis import RedisState
from relay.state.seal import Sealer
from tests.conftest import ROOT, SHIPPED_RULES
from tests.state.test_state import REDIS_URL

MASKER = Masker(b"test-masking-key-0123456789")
RULES: Rules = load_rules(SHIPPED_RULES, {})


@pytest.fixture(params=["memory", "redis"])
async def state(request: pytest.FixtureRequest) -> AsyncIterator[State]:
    """One state store; with Redis, every engine of a test shares it as replicas would."""
    if request.param == "memory":
        yield MemoryState(1000, 3600)
        return
    store = RedisState(REDIS_URL, Sealer(["test-secret"]), prefix=f"relay-test-{uuid.uuid4().hex}:")
    try:
        await store.r.ping()
    except Exception as exc:  # pragma: no cover - the failure message is the point
        await store.close()
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
    try:
        yield store
    finally:
        await store.close()


def _engine(state: State) -> Engine:
    return Engine(RULES, state, Metrics(), MASKER)


def _meta(engine: Engine) -> Meta:
    # US: the shipped purposes grant analytics by default, so page_view is routed at once.
    return Meta(engine.rules.sources["browser"], 1_795_000_000_000, ip="198.51.100.7",
                user_agent="UA", country="US", correlation_id="cid-marks")


def _event(eid: str) -> dict[str, Any]:
    return {"event": "page_view", "event_id": eid}


class Spool:
    """A stand-in ``put``: keeps what was committed; ``gate`` holds commits until it is set,
    ``fail`` makes them raise."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()
        self.fail = False

    async def put(self, batch: Batch) -> None:
        self.entered.set()
        await self.gate.wait()
        if self.fail:
            raise SpoolUnavailable("disk full")
        self.rows.extend((row.destination, row.event_id) for row in batch.rows)


async def test_concurrent_copies_of_one_event_are_spooled_once(state: State) -> None:
    """The second copy finds the first's tentative mark: it waits for the commit, then is
    the duplicate (never a second row, never a duplicate before the first is in)."""
    first_engine, second_engine = _engine(state), _engine(state)  # two replicas (or one)
    spool = Spool()
    spool.gate.clear()
    first = asyncio.create_task(
        first_engine.process([_event("c1")], _meta(first_engine), spool.put))
    await spool.entered.wait()  # the first is committing
    second = asyncio.create_task(
        second_engine.process([_event("c1")], _meta(second_engine), spool.put))
    await asyncio.sleep(0.2)
    assert not second.done(), "the second copy did not wait for the first's commit"
    spool.gate.set()
    a, b = await first, await second
    assert a.accepted == 1 and a.duplicates == 0
    assert b.accepted == 0 and b.duplicates == 1
    assert len(spool.rows) == len(a.rows) > 0 and b.rows == []


async def test_a_copy_whose_commit_failed_leaves_the_waiting_copy_to_be_accepted(
    state: State,
) -> None:
    engine = _engine(state)
    failing, spool = Spool(), Spool()
    failing.gate.clear()
    failing.fail = True
    first = asyncio.create_task(engine.process([_event("c2")], _meta(engine), failing.put))
    await failing.entered.wait()
    second = asyncio.create_task(engine.process([_event("c2")], _meta(engine), spool.put))
    await asyncio.sleep(0.2)
    failing.gate.set()
    with pytest.raises(SpoolUnavailable):
        await first
    accepted = await second
    assert accepted.accepted == 1 and accepted.duplicates == 0
    assert spool.rows and failing.rows == []
    again = await engine.process([_event("c2")], _meta(engine), spool.put)
    assert again.duplicates == 1  # confirmed once committed


async def test_a_mark_left_by_a_dead_process_expires_and_the_retry_is_accepted(
    state: State,
) -> None:
    """What a SIGKILL between marking and committing leaves: a tentative mark of a token
    nobody will confirm. The client's retry waits it out and is accepted."""
    engine = _engine(state)
    dests = [row.destination for row in (await _engine(MemoryState(10, 60)).process(
        [_event("probe")], _meta(engine))).rows]
    assert dests
    await state.mark([f"{d}:c3" for d in dests], "dead-process", 0.3)
    spool = Spool()
    retry = await engine.process([_event("c3")], _meta(engine), spool.put)
    assert retry.accepted == 1 and retry.duplicates == 0
    assert sorted(d for d, _ in spool.rows) == sorted(dests)


async def test_a_mark_that_does_not_settle_refuses_the_whole_request(
    state: State, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the request's wait budget: Contended (ingest answers 503), nothing committed,
    and the marks it made itself are dropped so its retry is not a duplicate."""
    monkeypatch.setattr(marks, "WAIT_SECONDS", 0.2)
    engine = _engine(state)
    dests = [row.destination for row in (await _engine(MemoryState(10, 60)).process(
        [_event("probe")], _meta(engine))).rows]
    await state.mark([f"{d}:stuck" for d in dests], "slow-replica", 60)
    spool = Spool()
    with pytest.raises(Contended):
        await engine.process([_event("free"), _event("stuck")], _meta(engine), spool.put)
    assert spool.rows == []
    retry = await engine.process([_event("free")], _meta(engine), spool.put)
    assert retry.accepted == 1 and retry.duplicates == 0


async def test_a_slow_commit_keeps_its_marks_alive(
    state: State, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit that takes longer than a tentative mark lives: the marks are renewed, so a
    concurrent copy is still waiting, not sent again."""
    monkeypatch.setattr(marks, "TENTATIVE_SECONDS", 0.3)
    monkeypatch.setattr(marks, "KEEP_EVERY", 0.1)
    engine = _engine(state)
    spool = Spool()
    spool.gate.clear()
    first = asyncio.create_task(engine.process([_event("c4")], _meta(engine), spool.put))
    await spool.entered.wait()
    await asyncio.sleep(1.0)  # several lifetimes of a tentative mark
    dests = [row.destination for row in (await _engine(MemoryState(10, 60)).process(
        [_event("probe")], _meta(engine))).rows]
    keys = [f"{d}:c4" for d in dests]
    assert await state.mark(keys, "another-request", 5) == ["busy"] * len(keys)
    spool.gate.set()
    await first
    assert await state.mark(keys, "another-request", 5) == ["seen"] * len(keys)


async def test_one_event_twice_in_one_request_is_one_copy(state: State) -> None:
    engine = _engine(state)
    spool = Spool()
    batch = await engine.process([_event("c5"), _event("c5")], _meta(engine), spool.put)
    assert [r.status for r in batch.results] == ["accepted", "duplicate"]
    assert len(spool.rows) == len(batch.rows) == len({d for d, _ in spool.rows})


async def test_without_a_commit_the_marks_are_confirmed_at_once(state: State) -> None:
    """``relay test`` and ``relay diff`` spool nothing: duplicates behave as live."""
    engine = _engine(state)
    first = await engine.process([_event("c6")], _meta(engine))
    second = await engine.process([_event("c6")], _meta(engine))
    assert first.accepted == 1 and second.duplicates == 1


@pytest.mark.parametrize(("crash_at", "code"), [("after-dedup-mark", 137), ("elsewhere", 0),
                                                ("", 0)])
def test_the_crash_point_is_set_by_the_environment_only(crash_at: str, code: int) -> None:
    env = {**os.environ, marks.CRASH_ENV: crash_at}
    program = "from relay.engine.marks import crash_point; crash_point('after-dedup-mark')"
    done = subprocess.run([sys.executable, "-c", program], env=env, cwd=ROOT, timeout=60,
                          check=False, capture_output=True)
    assert done.returncode == code, done.stderr


async def test_a_held_browser_copy_is_merged_by_the_authoritative_copy_that_is_committed(
    state: State,
) -> None:
    """The browser copy held for the backend is dropped only once the backend's copy is
    committed: a 503 (or a death before the commit) leaves it for the retry to merge."""
    engine = _engine(state)
    order = {"event": "purchase", "event_id": "o-1",
             "properties": {"order_id": "O1", "value": 10, "currency": "USD"},
             "context": {"page": {"url": "https://shop.example/thanks?gclid=g2"}}}
    held = await engine.process([order], _meta(engine))
    assert held.results[0].status == "held"
    backend = Meta(engine.rules.sources["backend"], 1_795_000_001_000)
    confirmation = {**order, "context": {"country": "US"}}
    failing = Spool()
    failing.fail = True
    with pytest.raises(SpoolUnavailable):
        await engine.process([confirmation], backend, failing.put)
    assert not await state.contains("auth:o-1")  # not received: a browser copy still waits
    spool = Spool()
    retry = await engine.process([confirmation], backend, spool.put)
    assert retry.results[0].confirms == "o-1" and "context.page.url" in retry.results[0].merged
    assert await state.contains("auth:o-1")
    assert await state.peek(["eid:o-1"]) is None and await state.expired() == []
    late = await engine.process([order], _meta(engine))  # the browser's copy, sent again
    assert late.results[0].status == "duplicate"


async def test_a_failed_commit_is_answered_as_such_when_the_state_fails_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The spool's failure is what the client hears (503, retry), even when the tentative
    marks cannot be dropped: they expire by themselves."""
    state = MemoryState(1000, 3600)
    engine = _engine(state)

    async def unreachable(keys: Any, token: str) -> None:
        raise ConnectionError("state store unreachable")

    monkeypatch.setattr(state, "unmark", unreachable)
    failing = Spool()
    failing.fail = True
    with pytest.raises(SpoolUnavailable):
        await engine.process([_event("c7")], _meta(engine), failing.put)


async def test_a_state_failure_after_the_commit_asks_for_a_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The copies are spooled, their marks not recorded: the client must retry (at least
    once), and the retry is accepted again rather than lost."""
    monkeypatch.setattr(marks, "TENTATIVE_SECONDS", 0.2)  # the retry waits these out
    state = MemoryState(1000, 3600)
    engine = _engine(state)
    confirm = state.confirm

    async def unreachable(keys: Any, ttl: float) -> None:
        raise ConnectionError("state store unreachable")

    monkeypatch.setattr(state, "confirm", unreachable)
    spool = Spool()
    with pytest.raises(StateUnavailable):
        await engine.process([_event("c8")], _meta(engine), spool.put)
    assert spool.rows  # committed
    monkeypatch.setattr(state, "confirm", confirm)
    retry = await engine.process([_event("c8")], _meta(engine), spool.put)
    assert retry.accepted == 1  # its marks never counted: sent again, at least once


class _Keeps:
    """A state that only counts the renewals of each token."""

    def __init__(self) -> None:
        self.kept: list[str] = []

    async def keep(self, keys: Any, token: str, ttl: float) -> None:
        self.kept.append(token)


async def test_one_timer_renews_every_slow_commit_and_forgets_each_when_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Commits in progress share one timer: each is renewed while it lasts, none after it
    ended (a commit that is over must not keep renewing, nor be renewed for another)."""
    monkeypatch.setattr(marks, "KEEP_EVERY", 0.1)
    state = _Keeps()
    short, long = marks.Marks(keys=["a:1"]), marks.Marks(keys=["a:2"])
    await asyncio.gather(
        marks.kept_during(state, short, asyncio.sleep(0.25)),  # type: ignore[arg-type]
        marks.kept_during(state, long, asyncio.sleep(0.8)),  # type: ignore[arg-type]
    )
    renewed = {t: state.kept.count(t) for t in (short.token, long.token)}
    assert 1 <= renewed[short.token] <= 3 and renewed[long.token] >= 5, renewed
    after = len(state.kept)
    await asyncio.sleep(0.4)
    assert len(state.kept) == after
    assert not any(keeper.live for keeper in marks._keepers.values())


async def test_a_fast_commit_is_not_renewed() -> None:
    state = _Keeps()
    done = marks.Marks(keys=["a:3"])
    await marks.kept_during(state, done, asyncio.sleep(0))  # type: ignore[arg-type]
    assert state.kept == []
