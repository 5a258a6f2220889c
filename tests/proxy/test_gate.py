"""A route's concurrency limit and the queue in front of it (relay.proxy.gate): the gate
alone, then through the relay with a slow stand-in upstream (``httpx.MockTransport``) that
holds every request until the test lets it answer and counts how many it holds at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from relay.proxy.gate import Gate
from tests.proxy.support import Proxied, Upstream, metric, open_proxied

QUEUE_RULES = """
proxy:
  slow:
    path: /slow
    upstream: "https://slow.example/hit"
    concurrency: 2
    timeout: 1h
    queue: {size: 4, wait: 1h}
  brief:
    path: /brief
    upstream: "https://slow.example/brief"
    concurrency: 1
    queue: {size: 4, wait: 10ms}
"""


async def settle(check: Callable[[], bool], what: str) -> None:
    """Lets the other tasks run until ``check`` holds (a bounded number of turns)."""
    for _ in range(5000):
        if check():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never happened: {what}")


class Slow:
    """The upstream's handler: holds each request until ``go`` is set; ``most`` is the most
    it held at once."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.now = self.most = self.seen = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.now += 1
        self.seen += 1
        self.most = max(self.most, self.now)
        try:
            await self.go.wait()
        finally:
            self.now -= 1
        return httpx.Response(200, content=b"ok")


@pytest.fixture
async def slow(rules_dir: Path, env: dict[str, str], tmp_path: Path):  # type: ignore[no-untyped-def]
    handler = Slow()
    async with open_proxied(rules_dir, env, tmp_path, Upstream(handler), QUEUE_RULES) as p:
        yield p, handler


# -- the gate alone --------------------------------------------------------------------


async def test_gate_first_come_first_served() -> None:
    gate = Gate(1, 3)
    assert await gate.enter(1.0) is None
    order: list[int] = []

    async def wait(i: int) -> None:
        assert await gate.enter(3600) is None
        order.append(i)

    tasks = [asyncio.create_task(wait(i)) for i in range(3)]
    await settle(lambda: gate.waiting == 3, "three waiting")
    assert await gate.enter(3600) == "queue_full"
    for _ in range(3):
        gate.leave()
        await settle(lambda: len(order) + gate.waiting == 3 and gate.inflight == 1, "handed on")
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2] and gate.inflight == 1
    gate.leave()
    assert gate.inflight == 0 and gate.free()


async def test_gate_wait_runs_out() -> None:
    gate = Gate(1, 1)
    assert await gate.enter(1.0) is None
    assert await gate.enter(0.01) == "wait_timeout"
    assert (gate.inflight, gate.waiting) == (1, 0)
    gate.leave()
    assert gate.inflight == 0


async def test_gate_cancelled_waiter_frees_nothing_and_the_next_proceeds() -> None:
    gate = Gate(1, 2)
    assert await gate.enter(1.0) is None
    first = asyncio.create_task(gate.enter(3600))
    second = asyncio.create_task(gate.enter(3600))
    await settle(lambda: gate.waiting == 2, "two waiting")
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    assert (gate.inflight, gate.waiting) == (1, 1)  # the holder's slot is still held
    gate.leave()
    assert await second is None and (gate.inflight, gate.waiting) == (1, 0)
    gate.leave()
    assert gate.inflight == 0


async def test_gate_slot_handed_to_a_cancelled_waiter_is_passed_on() -> None:
    gate = Gate(1, 2)
    assert await gate.enter(1.0) is None
    first = asyncio.create_task(gate.enter(3600))
    second = asyncio.create_task(gate.enter(3600))
    await settle(lambda: gate.waiting == 2, "two waiting")
    gate.leave()  # the slot goes to ``first``...
    first.cancel()  # ...which is cancelled before it runs again
    await asyncio.gather(first, return_exceptions=True)
    assert first.cancelled()
    assert await second is None and gate.inflight == 1
    gate.leave()
    assert (gate.inflight, gate.waiting) == (0, 0)


async def test_gate_raised_limit_lets_waiters_in() -> None:
    gate = Gate(1, 2)
    assert await gate.enter(1.0) is None
    waiter = asyncio.create_task(gate.enter(3600))
    await settle(lambda: gate.waiting == 1, "one waiting")
    gate.resize(2, 2)
    assert await waiter is None and gate.inflight == 2


# -- through the relay -----------------------------------------------------------------


async def burst(p: Proxied, n: int, path: str = "/t/slow") -> list[asyncio.Task[httpx.Response]]:
    return [asyncio.create_task(p.client.get(path)) for _ in range(n)]


async def test_a_burst_the_queue_holds_all_succeeds(slow: tuple[Proxied, Slow]) -> None:
    p, up = slow
    tasks = await burst(p, 6)
    gate = p.proxy.gates.get
    await settle(lambda: (g := gate("slow")) is not None and (g.inflight, g.waiting) == (2, 4),
                 "2 in flight, 4 waiting")
    up.go.set()
    answers = await asyncio.gather(*tasks)
    assert [r.status_code for r in answers] == [200] * 6
    assert (up.seen, up.most) == (6, 2) and p.proxy.inflight["slow"] == 0
    assert 'relay_proxy_queued_total{route="slow"} 4.0' in metric(p.runtime, "relay_proxy_queued")
    assert 'relay_proxy_requests_total{route="slow",status="200"} 6.0' in metric(
        p.runtime, "relay_proxy_requests_total")


async def test_a_burst_beyond_the_queue_refuses_exactly_the_excess(
    slow: tuple[Proxied, Slow],
) -> None:
    p, up = slow
    tasks = await burst(p, 9)
    await settle(lambda: sum(t.done() for t in tasks) == 3, "the excess answered")
    refused = [t.result() for t in tasks if t.done()]
    assert [r.status_code for r in refused] == [503] * 3
    assert all(r.headers["retry-after"] == "1" for r in refused)
    assert (p.proxy.gates["slow"].inflight, p.proxy.gates["slow"].waiting) == (2, 4)
    up.go.set()
    answers = await asyncio.gather(*tasks)
    assert sorted(r.status_code for r in answers) == [200] * 6 + [503] * 3
    assert (up.seen, up.most) == (6, 2) and p.proxy.inflight["slow"] == 0
    assert 'relay_proxy_refused_total{reason="queue_full",route="slow"} 3.0' in metric(
        p.runtime, "relay_proxy_refused")
    assert 'relay_proxy_requests_total{route="slow",status="503"} 3.0' in metric(
        p.runtime, "relay_proxy_requests_total")


async def test_a_wait_that_runs_out_is_refused(slow: tuple[Proxied, Slow]) -> None:
    p, up = slow
    holder = asyncio.create_task(p.client.get("/t/brief"))
    await settle(lambda: up.now == 1, "the slot held")
    late = await p.client.get("/t/brief")  # waits 10ms for a slot that stays held
    assert late.status_code == 503 and late.headers["retry-after"] == "1"
    assert p.proxy.gates["brief"].waiting == 0
    up.go.set()
    assert (await holder).status_code == 200
    assert up.seen == 1 and p.proxy.inflight["brief"] == 0
    assert 'relay_proxy_refused_total{reason="wait_timeout",route="brief"} 1.0' in metric(
        p.runtime, "relay_proxy_refused")


async def test_a_client_gone_while_waiting_leaves_the_queue(slow: tuple[Proxied, Slow]) -> None:
    p, up = slow
    holders = await burst(p, 2)
    await settle(lambda: up.now == 2, "both slots held")
    gone = asyncio.create_task(p.client.get("/t/slow"))
    await settle(lambda: p.proxy.gates["slow"].waiting == 1, "one waiting")
    nxt = asyncio.create_task(p.client.get("/t/slow"))
    await settle(lambda: p.proxy.gates["slow"].waiting == 2, "two waiting")
    gone.cancel()  # the in-process client going away cancels the request's task
    await asyncio.gather(gone, return_exceptions=True)
    assert (p.proxy.gates["slow"].inflight, p.proxy.gates["slow"].waiting) == (2, 1)
    up.go.set()
    answers = await asyncio.gather(*holders, nxt)
    assert [r.status_code for r in answers] == [200] * 3
    assert (up.seen, up.most) == (3, 2) and p.proxy.inflight["slow"] == 0


async def test_a_queued_body_is_forwarded_whole(slow: tuple[Proxied, Slow]) -> None:
    p, up = slow
    holders = await burst(p, 2)
    await settle(lambda: up.now == 2, "both slots held")
    queued = asyncio.create_task(p.client.post("/t/slow", content=b"read while it waited"))
    await settle(lambda: p.proxy.gates["slow"].waiting == 1, "one waiting")
    up.go.set()
    answers = await asyncio.gather(*holders, queued)
    assert [r.status_code for r in answers] == [200] * 3
    assert p.upstream.bodies[2] == b"read while it waited"


async def test_a_client_that_disconnects_while_waiting_leaves_the_queue(
    slow: tuple[Proxied, Slow],
) -> None:
    """As uvicorn tells it: the request's task goes on, ``receive`` says ``http.disconnect``."""
    p, up = slow
    holders = await burst(p, 2)
    await settle(lambda: up.now == 2, "both slots held")
    hang_up = asyncio.Event()
    sent: list[dict[str, object]] = []
    messages: list[dict[str, object]] = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, object]:
        if messages:
            return messages.pop()
        await hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": "/t/slow", "raw_path": b"/t/slow", "query_string": b"",
             "root_path": "", "headers": [(b"host", b"shop.example")],
             "client": ("203.0.113.77", 50001), "server": ("shop.example", 80)}
    gone = asyncio.create_task(p.app(scope, receive, send))  # type: ignore[arg-type]
    await settle(lambda: p.proxy.gates["slow"].waiting == 1, "one waiting")
    hang_up.set()
    await settle(gone.done, "the app returned by itself (nothing cancelled it)")
    assert sent[0]["status"] == 400  # to nobody; not refused busy
    assert metric(p.runtime, "relay_proxy_refused") == ""
    assert (p.proxy.gates["slow"].inflight, p.proxy.gates["slow"].waiting) == (2, 0)
    up.go.set()
    assert [r.status_code for r in await asyncio.gather(*holders)] == [200] * 2
    assert up.seen == 2 and p.proxy.inflight["slow"] == 0  # the gone request never went out
