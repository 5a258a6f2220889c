"""A route's concurrency limit with a short queue in front of it, as nginx's upstream
``queue``: a request that finds ``limit`` requests in flight waits, first come first served,
for one of them to end; only when ``size`` requests are already waiting, or the wait passes
its bound, is it refused (503 with ``Retry-After``).

A slot that ends is handed straight to the oldest waiter (the count in flight does not dip,
so a newcomer cannot overtake the queue). A waiter that gives up (its wait timed out, or its
task was cancelled because the client went away) leaves the queue; if a slot was handed to it
at that very moment it takes it (timeout) or passes it on (cancelled): a slot is never lost
and never freed twice.
"""

from __future__ import annotations

import asyncio
from collections import deque
from contextlib import suppress
from typing import Literal

Refusal = Literal["queue_full", "wait_timeout"]


class Gate:
    """Event-loop thread only. ``enter`` returns None with a slot held (``leave`` gives it
    back) or why it was refused."""

    def __init__(self, limit: int, size: int) -> None:
        self.limit, self.size = limit, size
        self.inflight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(1 for f in self._waiters if not f.done())

    def resize(self, limit: int, size: int) -> None:
        """New limits from reloaded rules; a raised limit lets waiters in at once."""
        self.limit, self.size = limit, size
        while self.inflight < self.limit and self._hand_over():
            self.inflight += 1

    def free(self) -> bool:
        """A slot is free now, with nobody waiting for it."""
        return self.inflight < self.limit and not self.waiting

    async def enter(self, wait: float) -> Refusal | None:
        if self.free():
            self.inflight += 1
            return None
        if self.waiting >= self.size:
            return "queue_full"
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(ticket)
        try:
            async with asyncio.timeout(wait):
                await ticket
        except TimeoutError:
            if ticket.done() and not ticket.cancelled():
                return None  # handed a slot as the wait ran out: take it
            self._drop(ticket)
            return "wait_timeout"
        except BaseException:
            if ticket.done() and not ticket.cancelled():
                self.leave()  # handed a slot nobody will use: pass it on
            else:
                self._drop(ticket)
            raise
        return None

    def leave(self) -> None:
        """A slot given back: to the oldest waiter, or free."""
        if self.inflight > self.limit or not self._hand_over():
            self.inflight -= 1

    def _hand_over(self) -> bool:
        while self._waiters:
            ticket = self._waiters.popleft()
            if not ticket.done():
                ticket.set_result(None)
                return True
        return False

    def _drop(self, ticket: asyncio.Future[None]) -> None:
        ticket.cancel()
        with suppress(ValueError):  # already taken off by _hand_over
            self._waiters.remove(ticket)
