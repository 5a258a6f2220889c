"""A real ``relay serve`` in front of a slow stand-in upstream (aiohttp on loopback): a
burst of three times a proxy route's ``concurrency`` waits in the route's queue rather than
being refused. Every request is answered 200, none 503, and the upstream never holds more
than ``concurrency`` of them at once (it counts them itself). A client that hangs up while
it waits leaves the queue and is never sent upstream."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import httpx
import pytest
from aiohttp import web

from .conftest import MakeRelay
from .relayproc import RelayProcess
from .wire import metric

CONCURRENCY = 4
BURST = 3 * CONCURRENCY


class SlowUpstream:
    """Holds every request until ``release`` (then answers at once), on its own thread and
    loop; ``now`` / ``most`` / ``seen``: requests held now, the most at once, all."""

    def __init__(self) -> None:
        self.now = self.most = self.seen = 0
        self.loop = asyncio.new_event_loop()
        self._go = asyncio.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the stand-in upstream did not start")

    async def _handle(self, request: web.Request) -> web.Response:
        self.now += 1
        self.seen += 1
        self.most = max(self.most, self.now)
        try:
            await self._go.wait()
            await asyncio.sleep(0.01)  # slow even once released
        finally:
            self.now -= 1
        return web.Response(text="ok")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/hit", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port: int = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self.loop.run_forever()

    def release(self) -> None:
        self.loop.call_soon_threadsafe(self._go.set)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def upstream() -> Iterator[SlowUpstream]:
    up = SlowUpstream()
    yield up
    up.release()  # a failed test must not leave requests held
    up.close()


def slow_relay(relays: MakeRelay, upstream: SlowUpstream) -> RelayProcess:
    """A relay whose route ``slow`` goes to ``upstream``. A generous wait and timeout: a
    loaded machine must not turn the test into a 503 race."""
    return relays(proxy={"slow": {
        "path": "/slow", "upstream": f"http://127.0.0.1:{upstream.port}/hit",
        "concurrency": CONCURRENCY, "timeout": "60s", "queue": {"wait": "60s"},
    }})


async def _burst(relay_url: str, metrics_url: str, up: SlowUpstream) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=BURST + 1, max_keepalive_connections=BURST + 1)
    async with httpx.AsyncClient(timeout=60, limits=limits, trust_env=False) as http:
        tasks = [asyncio.create_task(http.get(relay_url)) for _ in range(BURST)]
        # The route is full and the rest of the burst is waiting before anything is answered.
        # Both are awaited: a request that took its slot may still be on its way upstream.
        for _ in range(600):
            text = (await http.get(metrics_url)).text
            queued = metric(text, "relay_proxy_queued_total", route="slow")
            if queued == BURST - CONCURRENCY and up.now == CONCURRENCY:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"the burst never queued: {up.now} held, {text!r}")
        assert not any(t.done() for t in tasks)
        up.release()
        return await asyncio.gather(*tasks)


def test_a_burst_above_concurrency_waits_and_all_succeed(
    relays: MakeRelay, upstream: SlowUpstream
) -> None:
    relay = slow_relay(relays, upstream)
    answers = asyncio.run(_burst(relay.url("/slow"), relay.admin_url("/metrics"), upstream))
    assert [r.status_code for r in answers] == [200] * BURST
    assert all(r.text == "ok" for r in answers)
    assert (upstream.seen, upstream.most) == (BURST, CONCURRENCY)
    text = httpx.get(relay.admin_url("/metrics"), trust_env=False).text
    assert metric(text, "relay_proxy_requests_total", route="slow", status="200") == BURST
    assert metric(text, "relay_proxy_requests_total", route="slow", status="503") == 0
    assert metric(text, "relay_proxy_refused_total", route="slow") == 0


async def _hang_up_while_queued(relay_url: str, metrics_url: str, up: SlowUpstream,
                                port: int) -> list[httpx.Response]:
    path = httpx.URL(relay_url).raw_path
    async with httpx.AsyncClient(timeout=60, trust_env=False) as http:
        holders = [asyncio.create_task(http.get(relay_url)) for _ in range(CONCURRENCY)]

        async def seen(name: str, want: float, **labels: str) -> None:
            for _ in range(600):
                if metric((await http.get(metrics_url)).text, name, **labels) == want:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"{name}{labels} never reached {want}")

        for _ in range(600):
            if up.now == CONCURRENCY:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"the route never filled: {up.now} held")
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        await seen("relay_proxy_queued_total", 1, route="slow")
        writer.close()  # the client goes away while it waits
        await writer.wait_closed()
        await seen("relay_proxy_requests_total", 1, route="slow", status="400")
        up.release()
        return await asyncio.gather(*holders)


def test_a_client_gone_while_queued_never_reaches_the_upstream(
    relays: MakeRelay, upstream: SlowUpstream
) -> None:
    relay = slow_relay(relays, upstream)
    port = httpx.URL(relay.url("/")).port
    assert port is not None
    answers = asyncio.run(_hang_up_while_queued(
        relay.url("/slow"), relay.admin_url("/metrics"), upstream, port))
    assert [r.status_code for r in answers] == [200] * CONCURRENCY
    assert upstream.seen == CONCURRENCY  # the one that hung up was never sent
    text = httpx.get(relay.admin_url("/metrics"), trust_env=False).text
    assert metric(text, "relay_proxy_refused_total", route="slow") == 0
