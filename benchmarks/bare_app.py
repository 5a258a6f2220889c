"""The baseline for ``benchmarks/ingest.py``: a bare Starlette handler that parses the JSON
body and answers 202, served exactly as ``relay serve`` serves the relay (one process, the
same server with the same settings: ``relay.cli.servers``).

    python benchmarks/bare_app.py --port 8001 --server uvicorn [--workers 2]

With ``--workers N``, N processes serve the same socket (as ``relay serve --workers N``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relay.cli.servers import DEFAULT_SERVER, SERVERS, listen, run

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--server", choices=SERVERS, default=DEFAULT_SERVER)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    sockets = listen([(args.host, args.port)])
    if args.workers <= 1:
        run(args.server, app, sockets)
        return
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_worker, args=(args.server, sockets))
               for _ in range(args.workers)]
    for w in workers:
        w.start()
    import signal

    def stop(signum: int, frame: object) -> None:
        for w in workers:
            w.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for w in workers:
        w.join()


def _worker(server: str, sockets: list[socket.socket]) -> None:
    run(server, app, sockets)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
