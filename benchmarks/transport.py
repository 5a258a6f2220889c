"""What one outgoing request costs the client process, by HTTP client stack.

Sends ``--requests`` GETs (``--concurrency`` in flight) to a local aiohttp upstream in its own
process on 127.0.0.1 through (a) ``httpx.AsyncClient`` with its default transport (httpcore),
(b) ``httpx.AsyncClient`` over ``httpx_aiohttp.AiohttpTransport`` and (c) a plain
``aiohttp.ClientSession``. Reports the client process's CPU (``time.process_time``) per request
and requests/s, the median of ``--rounds`` rounds (the three clients interleaved in each round),
and ratios against (c) measured in the same run.

    python benchmarks/transport.py                       # 3 rounds x 3000 requests, c=32
    python benchmarks/transport.py --requests 1000 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import free_port

BODY = b'{"ok":true}' * 20


def serve(port: int) -> None:
    async def hit(request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="application/json")

    app = web.Application()
    app.router.add_get("/hit", hit)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def _load(send: Callable[[], Awaitable[int]], requests: int, concurrency: int) -> None:
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            status = await send()
            if status != 200:
                raise RuntimeError(f"upstream answered {status}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _measure(client: str, url: str, requests: int, concurrency: int) -> tuple[float, float]:
    """(CPU µs per request, requests/s) of one client stack."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
    if client == "aiohttp":
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))

        async def send() -> int:
            async with session.get(url) as r:
                await r.read()
                return r.status

        close: Callable[[], Awaitable[None]] = session.close
    else:
        transport: httpx.AsyncBaseTransport | None = None
        if client == "httpx-aiohttp":
            from httpx_aiohttp import AiohttpTransport

            transport = AiohttpTransport(limits=limits)
        http = httpx.AsyncClient(transport=transport, limits=limits)

        async def send() -> int:
            r = await http.get(url)
            return r.status_code

        close = http.aclose
    try:
        await _load(send, 200, concurrency)  # warm-up: connections open, code paths hot
        cpu, wall = time.process_time(), time.perf_counter()
        await _load(send, requests, concurrency)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await close()
    return cpu / requests * 1e6, requests / wall


CLIENTS = ("httpx", "httpx-aiohttp", "aiohttp")
LABELS = {
    "httpx": "(a) httpx, default transport",
    "httpx-aiohttp": "(b) httpx + AiohttpTransport",
    "aiohttp": "(c) aiohttp ClientSession",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    port = free_port()
    upstream = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    url = f"http://127.0.0.1:{port}/hit"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or upstream.poll() is not None:
                    raise SystemExit("the upstream did not start") from None
                time.sleep(0.1)
        runs: dict[str, list[tuple[float, float]]] = {c: [] for c in CLIENTS}
        for _ in range(args.rounds):
            for client in CLIENTS:
                runs[client].append(
                    asyncio.run(_measure(client, url, args.requests, args.concurrency))
                )
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)
    cpu = {c: statistics.median(r[0] for r in runs[c]) for c in CLIENTS}
    rate = {c: statistics.median(r[1] for r in runs[c]) for c in CLIENTS}
    print(f"{args.rounds} rounds x {args.requests} requests, c={args.concurrency}, medians")
    print(f"{'client':32} {'CPU µs/req':>11} {'x (c)':>7} {'req/s':>8} {'x (c)':>7}")
    for c in CLIENTS:
        print(f"{LABELS[c]:32} {cpu[c]:11.0f} {cpu[c] / cpu['aiohttp']:7.2f} "
              f"{rate[c]:8.0f} {rate[c] / rate['aiohttp']:7.2f}")


if __name__ == "__main__":
    main()
