"""The main process of ``relay serve --workers N``: N worker processes on the listening
sockets it made, each running the relay under the chosen server (``relay.cli.worker``).

The servers' own process managers (uvicorn's, granian's, hypercorn's) are not used: on
``SIGHUP`` they stop every worker and start new ones (no worker serves meanwhile, and rules
that fail to load stop the relay); here it is passed to each worker, which reloads its rules
in place like a single ``relay serve`` (a failing reload keeps the running rules, and each
worker counts it in ``relay_rules_reloads_total``).

``SIGTERM`` or ``SIGINT`` is passed to each worker, which stops gracefully (its server
stops accepting, requests in flight finish, the spool is closed). A worker that exits on its own
(killed, out of memory, crashed) is started again, and the relay goes on; its counters
keep counting up (``relay.observe.workers``). One that fails within ``MIN_UPTIME`` of its
start cannot start: that stops the relay with its exit code, for the service manager.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Sequence
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

from relay.cli.servers import Server
from relay.observe.log import LOG

STOP_TIMEOUT = 30.0  # seconds the workers have to stop before they are killed
MIN_UPTIME = 5.0  # seconds: a worker that fails sooner is not started again


def run_workers(server: Server, sockets: Sequence[socket.socket], workers: int) -> int:
    """Serve on ``sockets`` with ``workers`` processes until told to stop; the exit code."""
    from relay.cli.worker import main

    ctx = multiprocessing.get_context("spawn")
    processes: list[BaseProcess] = []
    started: dict[int, float] = {}  # pid -> when
    stopping = False

    def start() -> None:
        process = ctx.Process(target=main, args=(server, list(sockets)))
        process.start()
        processes.append(process)
        started[process.pid or 0] = time.monotonic()

    def tell(sig: int) -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, sig)

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        tell(signal.SIGTERM)

    def reload(signum: int, frame: Any) -> None:
        tell(signal.SIGHUP)

    # Inherited by the workers until their own handlers are set (SIGHUP: once the relay has
    # started, by ``Runtime.start``): a signal while a worker starts does not kill it.
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    exitcode = 0
    try:
        for _ in range(workers):
            start()
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGHUP, reload)
        deadline: float | None = None
        while processes:
            finished = wait([p.sentinel for p in processes], timeout=1.0)
            if stopping and deadline is None:
                deadline = time.monotonic() + STOP_TIMEOUT
            if deadline is not None and time.monotonic() > deadline:
                for process in processes:  # did not stop in time
                    process.kill()
            for process in [p for p in processes if p.sentinel in finished]:
                process.join()
                processes.remove(process)
                code = process.exitcode or 0
                uptime = time.monotonic() - started.pop(process.pid or 0, 0.0)
                if stopping:
                    continue
                if uptime >= MIN_UPTIME:
                    LOG.error("relay serve: worker %s exited (code %s) after %.0fs; starting "
                              "another", process.pid, code, uptime)
                    start()
                else:
                    LOG.error("relay serve: worker %s exited (code %s) %.1fs after it "
                              "started; stopping", process.pid, code, uptime)
                    exitcode = code if code > 0 else 1
                    stopping = True
                    tell(signal.SIGTERM)
    finally:
        for process in processes:
            process.kill()
            process.join()
        for sock in sockets:
            sock.close()
    return exitcode
