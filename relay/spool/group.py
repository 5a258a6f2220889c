"""Group commit: every ``put`` awaiting in the same turn of the event loop goes to the
storage as ONE write, and shares its fate. When the group fails and held more than one put,
each put goes again on its own, so one bad put does not undo the others."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from relay.errors import SpoolUnavailable
from relay.spool.base import Quarantined, Row

Insert = Callable[[Sequence[Row], Sequence[Quarantined]], Coroutine[Any, Any, None]]


def _settle(future: asyncio.Future[None], exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(None)


def _chain(source: asyncio.Future[None], target: asyncio.Future[None]) -> None:
    def done(f: asyncio.Future[None]) -> None:
        _settle(target, f.exception() if not f.cancelled() else SpoolUnavailable("cancelled"))

    source.add_done_callback(done)


class GroupCommit:
    """``put`` for a spool whose ``insert`` writes rows and quarantined events all or none."""

    def __init__(self, insert: Insert) -> None:
        self._insert = insert
        self._inflight: set[asyncio.Future[None]] = set()
        # puts of the current event-loop turn: (rows, quarantined, future)
        self._buffer: list[tuple[Sequence[Row], Sequence[Quarantined], asyncio.Future[None]]] = []

    async def put(self, rows: Sequence[Row], quarantined: Sequence[Quarantined] = ()) -> None:
        if not rows and not quarantined:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self._buffer:
            loop.call_soon(self._flush)
        self._buffer.append((rows, quarantined, future))
        await future

    def _keep(self, coro: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
        """Run ``coro`` as a task that is referenced until it ends (the loop keeps only
        weak references to tasks)."""
        task = asyncio.ensure_future(coro)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return task

    def _flush(self) -> None:
        pending, self._buffer = self._buffer, []
        if not pending:
            return
        group = self._keep(
            self._insert(
                [r for rows, _, _ in pending for r in rows],
                [q for _, quarantined, _ in pending for q in quarantined],
            )
        )

        def done(group: asyncio.Future[None]) -> None:
            exc = group.exception() if not group.cancelled() else SpoolUnavailable("cancelled")
            if exc is not None and len(pending) > 1:
                # One put may have broken the group: each goes again on its own.
                for rows, quarantined, future in pending:
                    _chain(self._keep(self._insert(rows, quarantined)), future)
                return
            for _, _, future in pending:
                _settle(future, exc)

        group.add_done_callback(done)
