"""``relay.web.with_deadline``: one timer per event loop for every receive in progress."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from relay import web
from relay.web import BodyTimeout, with_deadline


async def _stalled() -> dict[str, Any]:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


async def _whole() -> dict[str, Any]:
    return {"type": "http.request", "body": b"{}", "more_body": False}


async def test_a_receive_past_its_deadline_raises_body_timeout() -> None:
    with pytest.raises(BodyTimeout):
        await asyncio.wait_for(with_deadline(_stalled, 0.1)(), 5)


async def test_only_the_receive_past_its_own_deadline_is_cut() -> None:
    async def slow() -> dict[str, Any]:
        await asyncio.sleep(0.4)
        return await _whole()

    short = asyncio.ensure_future(with_deadline(_stalled, 0.1)())
    long = asyncio.ensure_future(with_deadline(slow, 5)())
    with pytest.raises(BodyTimeout):
        await asyncio.wait_for(short, 5)
    assert (await asyncio.wait_for(long, 5))["body"] == b"{}"


async def test_a_task_that_read_its_body_in_time_is_never_cancelled_later() -> None:
    """The receive is done: its deadline is forgotten, so the request's later work (routing,
    the spool commit) runs past it untouched."""
    async def request() -> str:
        await with_deadline(_whole, 0.05)()
        await asyncio.sleep(0.3)  # several ticks past the deadline
        return "answered"

    assert await asyncio.wait_for(request(), 5) == "answered"
    assert not any(d.waiting or d.expired for d in web._deadlines.values())


async def test_a_cancel_from_elsewhere_stays_a_cancel() -> None:
    """The client gone, or the server stopping: CancelledError, not a 408."""
    task = asyncio.ensure_future(with_deadline(_stalled, 60)())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

