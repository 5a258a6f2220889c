"""A route's concurrency limit with a short queue in front of it, as nginx's upstream
``queue``: a request that finds ``limit`` requests in flight waits, first come first served,
for one of them to end; only when ``size`` requests are already waiting, or the wait passes
its bound, is it refused (503 with ``Retry-After``).

A slot that ends is handed straight to the oldest waiter (the count in flight does not dip,
so a newcomer cannot overtake the queue). A waiter that gives up (its wait timed out, or its
task was cancelled because the client went away) leaves the queue; if a slot was handed to it
at that very moment it takes it (timeout) or passes it on (cancelled): a slot is never lost
and never freed twice.

Most servers do not cancel a request's task when its client goes away (uvicorn does not): they
say so through ASGI ``receive``. ``wait_for_slot`` reads the request's messages while it
waits, to leave the queue as soon as the client is gone, and keeps what it read for the
request to read again.
"""

from __future__ import annotations

import asyncio
from collections import deque
from contextlib import suppress
from typing import Literal

from starlette.types import Message, Receive

Refusal = Literal["queue_full", "wait_timeout"]
Gone = Literal["gone"]


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


class Watch:
    """Reads ASGI messages from ``receive`` until the body is complete (or over ``limit``
    bytes: the rest is read, and refused, later), then only a disconnect can come. ``gone``
    is set when it does. ``receive`` gives every message read again, then reads on."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self._source, self._limit = receive, limit
        self._kept: deque[Message] = deque()
        self._error: Exception | None = None
        self.gone = asyncio.Event()

    async def run(self) -> None:
        size, complete = 0, False
        try:
            while True:
                message = await self._source()
                self._kept.append(message)
                if message["type"] == "http.disconnect":
                    self.gone.set()
                    return
                size += len(message.get("body", b""))
                if not message.get("more_body", False):
                    complete = True
                elif size > self._limit:
                    return
        except Exception as exc:  # a body deadline once the body is in is not the request's
            if not complete:
                self._error = exc

    async def receive(self) -> Message:
        if self._kept:
            return self._kept.popleft()
        if self._error is not None:
            raise self._error
        return await self._source()


async def wait_for_slot(
    gate: Gate, wait: float, receive: Receive, limit: int
) -> tuple[Refusal | Gone | None, Receive]:
    """``gate.enter(wait)``, given up when the client goes away first (``"gone"``); and the
    ``receive`` the request reads its body from from now on."""
    if gate.free():  # nothing to wait for, nothing to watch
        return await gate.enter(wait), receive
    watch = Watch(receive, limit)
    watching = asyncio.create_task(watch.run())
    gone = asyncio.create_task(watch.gone.wait())
    entering = asyncio.create_task(gate.enter(wait))
    try:
        try:
            await asyncio.wait((entering, gone), return_when=asyncio.FIRST_COMPLETED)
            if not entering.done():
                entering.cancel()  # leaves the queue, or passes on a slot just handed to it
                await asyncio.gather(entering, return_exceptions=True)
                return "gone", watch.receive
            refused = entering.result()
        finally:
            gone.cancel()
            watching.cancel()
            await asyncio.gather(gone, watching, return_exceptions=True)
    except BaseException:
        _abandon(gate, entering)
        raise
    return refused, watch.receive


def _abandon(gate: Gate, entering: asyncio.Task[Refusal | None]) -> None:
    """The waiting request itself was cancelled: a slot it got goes back, a wait still
    going is cancelled (and so leaves the queue)."""
    if not entering.done():
        entering.cancel()
    elif not entering.cancelled() and entering.exception() is None and entering.result() is None:
        gate.leave()
