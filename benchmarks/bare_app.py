"""The baseline for ``benchmarks/ingest.py``: a bare Starlette handler that parses the JSON
body and answers 202, served by hypercorn exactly as ``relay serve`` serves the relay (one
worker, the asyncio loop, no access log; see ``_serve_config`` in ``relay/cli.py``).

    python benchmarks/bare_app.py --port 8001
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ANSWER = b'{"accepted":1,"duplicates":0,"rejected":[]}'


async def ingest(request: Request) -> Response:
    await request.json()
    return Response(ANSWER, 202, media_type="application/json")


async def healthz(request: Request) -> Response:
    return Response("ok\n", media_type="text/plain")


app = Starlette(routes=[
    Route("/t/e", ingest, methods=["POST"]),
    Route("/t/healthz", healthz, methods=["GET"]),
])


def config(host: str, port: int) -> Config:
    """The same settings as ``relay.cli._serve_config`` (minus the admin listener)."""
    c = Config()
    c.bind = [f"{host}:{port}"]
    c.workers = 1
    c.accesslog = None
    c.errorlog = "-"
    c.loglevel = "WARNING"
    c.graceful_timeout = 5.0
    return c


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
    args = p.parse_args()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(app, config(args.host, args.port), shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    asyncio.run(run())


if __name__ == "__main__":
    main()
