"""Two-phase dedup marks: a request's marks and its spool commit are one unit.

A copy's dedup mark (``destination:event_id``) must not outlive a commit that never
happened: the client, who got no 202, retries, and its retry must be accepted, not answered
"duplicate". So a request marks its copies *tentatively* (``State.mark``: only where no mark
is, owned by the request's random token, alive for ``TENTATIVE_SECONDS``), keeps those marks
alive while it routes and commits (``State.keep`` every ``KEEP_EVERY`` seconds), and
confirms them for the whole ``dedup_window`` only once the spool committed
(``State.confirm``); when the commit fails it drops them (``State.unmark``). A process that
dies in between (SIGKILL, OOM, a lost machine) leaves marks that expire by themselves within
``TENTATIVE_SECONDS``.

A request that finds another request's tentative mark (``busy``: the same event being
committed elsewhere right now, on this process or another replica) neither answers
"duplicate" nor sends a second copy: it waits, polling every ``POLL_SECONDS``, until that
mark is confirmed (then its copy is a duplicate) or vanishes (then it marks the key itself
and goes on). Its waits add up to at most ``WAIT_SECONDS`` per request, longer than a dead
process's mark lives; a mark still busy after that (a commit slower than that, or new copies
of the event arriving all the time) makes the whole request a 503 with ``Retry-After``
(``relay.errors.Contended``): nothing of it is accepted, and the retry is safe.

``RELAY_TEST_CRASH_AT`` is for tests only: set to the name of a ``crash_point`` (the only one
is ``after-dedup-mark``: the batch is routed and marked, nothing is committed yet), the
process exits there at once with status 137, as if SIGKILLed. It is read once, from the
environment, when this module is imported: nothing a request carries can set it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
import weakref
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field

from relay.state import Mark, State

TENTATIVE_SECONDS = 3.0  # how long a tentative mark lives unless its request keeps it
KEEP_EVERY = 1.0  # a request renews its tentative marks this often while it routes, commits
WAIT_SECONDS = 4.0  # in all, per request, for other requests' tentative marks to settle
POLL_SECONDS = 0.05  # how often a waiting request looks again

CRASH_ENV = "RELAY_TEST_CRASH_AT"  # test-only (see the module docstring)
AFTER_MARK = "after-dedup-mark"
_CRASH_AT = os.environ.get(CRASH_ENV) or None


def crash_point(name: str) -> None:
    """Test-only: die here, as a SIGKILL would (no cleanup), when ``RELAY_TEST_CRASH_AT``
    names this point."""
    if name == _CRASH_AT:
        os._exit(137)


def new_token() -> str:
    """A request's token: 96 random bits as 24 hex digits. It only has to differ from every
    other request's (on this process and on other replicas), it is never shown to anyone, so
    ``random`` (seeded from ``os.urandom``, reseeded in a forked child) does: no system call
    and no release of the GIL per request, as ``os.urandom`` has."""
    return f"{random.getrandbits(96):024x}"


@dataclass(slots=True)
class Marks:
    """One request's tentative marks: its token, the keys it marked, and its waits."""

    token: str = field(default_factory=new_token)
    keys: list[str] = field(default_factory=list)
    kept_at: float = field(default_factory=time.monotonic)
    wait_until: float | None = None  # set at the first wait: the end of the request's budget
    contended: bool = False  # a mark stayed busy past the budget: the request is refused


async def keep(state: State, marks: Marks) -> None:
    """Renew the request's tentative marks when ``KEEP_EVERY`` has passed since the last
    time."""
    now = time.monotonic()
    if marks.keys and now - marks.kept_at >= KEEP_EVERY:
        await state.keep(marks.keys, marks.token, TENTATIVE_SECONDS)
        marks.kept_at = now


async def claim(state: State, marks: Marks, keys: Sequence[str]) -> list[Mark]:
    """Mark ``keys`` tentatively for the request; what each key had. A key busy with
    another request's mark is waited for (see the module docstring): what it ends as is
    ``new``, ``seen`` or, when the request's budget ran out, ``busy`` (``marks.contended``
    is then set)."""
    await keep(state, marks)
    found = await state.mark(keys, marks.token, TENTATIVE_SECONDS)
    busy = [i for i, mark in enumerate(found) if mark == "busy"]
    while busy and not marks.contended:
        now = time.monotonic()
        if marks.wait_until is None:
            marks.wait_until = now + WAIT_SECONDS
        if now >= marks.wait_until:
            marks.contended = True
            break
        await asyncio.sleep(POLL_SECONDS)
        await keep(state, marks)
        again = await state.mark([keys[i] for i in busy], marks.token, TENTATIVE_SECONDS)
        for i, mark in zip(busy, again, strict=True):
            found[i] = mark
        busy = [i for i in busy if found[i] == "busy"]
    marks.keys.extend(key for key, mark in zip(keys, found, strict=True) if mark == "new")
    return found


class _Keeper:
    """The tentative marks of the commits in progress on one event loop, renewed by one timer
    for all of them (a timer per request cost more than the rest of its bookkeeping). It
    looks every ``KEEP_EVERY / 4`` seconds, so a renewal comes at most that much late: well
    within ``TENTATIVE_SECONDS``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # id(marks) -> the state, the marks and the renewals started for them
        self.live: dict[int, tuple[State, Marks, list[asyncio.Task[None]]]] = {}
        self.armed = False

    def add(self, state: State, marks: Marks) -> list[asyncio.Task[None]]:
        renewals: list[asyncio.Task[None]] = []
        self.live[id(marks)] = (state, marks, renewals)
        if not self.armed:
            self.armed = True
            self.loop.call_later(KEEP_EVERY / 4, self._tick)
        return renewals

    def _tick(self) -> None:
        now = time.monotonic()
        for state, marks, renewals in self.live.values():
            if now - marks.kept_at >= KEEP_EVERY:
                renewals.append(self.loop.create_task(
                    state.keep(marks.keys, marks.token, TENTATIVE_SECONDS)))
                marks.kept_at = now
        if self.live:
            self.loop.call_later(KEEP_EVERY / 4, self._tick)
        else:
            self.armed = False


_keepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Keeper] = (
    weakref.WeakKeyDictionary()
)


async def kept_during(state: State, marks: Marks, work: Awaitable[None]) -> None:
    """Await ``work`` (the spool commit), renewing the request's tentative marks every
    ``KEEP_EVERY`` seconds until it ends, however long it takes (``_Keeper``: a commit that
    ends sooner costs no renewal)."""
    if not marks.keys:
        await work
        return
    loop = asyncio.get_running_loop()
    keeper = _keepers.get(loop)
    if keeper is None:
        keeper = _keepers[loop] = _Keeper(loop)
    renewals = keeper.add(state, marks)
    try:
        await work
    finally:
        del keeper.live[id(marks)]
        for task in renewals:  # let a renewal in flight finish before the marks change
            with contextlib.suppress(Exception):
                await task
