"""The HTTP servers ``relay serve --server`` runs the relay under: uvicorn (uvloop and
httptools), granian and hypercorn, each on listening sockets made beforehand (``listen``),
so that one process or each of the ``--workers N`` serves the same ones.

Every server is set up the same way: no access log (the relay logs each hop itself), no
``Date`` or ``Server`` header of its own (``relay.web.with_date_and_server`` adds one of
each), no reading of ``X-Forwarded-For`` (the relay reads ``relay.client_ip`` itself, so
uvicorn's ``proxy_headers`` is off), idle keep-alive connections closed after
``KEEP_ALIVE`` seconds, and request heads bounded in size (``MAX_HEAD``) and, where the
server has such a timeout, in time (``HEAD_TIMEOUT``: slowloris). ``SIGTERM`` or ``SIGINT``
stops a server gracefully: it stops accepting, requests in flight have up to ``GRACE``
seconds to finish, then the relay's lifespan shutdown closes the spool.

What each server can bound:

| | keep-alive | head size | head read time | any read |
|---|---|---|---|---|
| uvicorn | yes | yes (``relay.cli.uvicorn_http``) | yes (the same) | no |
| granian | no (HTTP/1 keep-alive on) | yes (``max_buffer_size``) | yes | no |
| hypercorn | yes | yes | no | yes (``read_timeout``) |
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

Server = Literal["uvicorn", "granian", "hypercorn"]
SERVERS: tuple[Server, ...] = ("uvicorn", "granian", "hypercorn")
DEFAULT_SERVER: Server = "uvicorn"  # the fastest robust one measured: benchmarks/README.md

KEEP_ALIVE = 5  # seconds an idle keep-alive connection stays open
HEAD_TIMEOUT = 10  # seconds a client has to send a request's head (uvicorn, granian)
READ_TIMEOUT = 30  # seconds any read may wait (hypercorn)
MAX_HEAD = 64 * 1024  # bytes of request line and headers
BACKLOG = 1024  # connections waiting to be accepted, per socket
GRACE = 10.0  # seconds requests in flight have to finish after SIGTERM

App = Callable[[Any, Any, Any], Awaitable[None]]


def listen(binds: Sequence[tuple[str, int]]) -> list[socket.socket]:
    """Listening TCP sockets for ``(host, port)`` pairs; OSError names the one that cannot
    be bound (a port taken, an address not this host's), with the others closed."""
    sockets: list[socket.socket] = []
    try:
        for host, port in binds:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            try:
                sock = socket.create_server((host.strip("[]"), port), family=family,
                                            backlog=BACKLOG)
            except OSError as exc:
                raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
            sock.set_inheritable(True)
            sockets.append(sock)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def run(server: Server, app: App, sockets: Sequence[socket.socket]) -> None:
    """Serve ``app`` on ``sockets`` until ``SIGTERM`` or ``SIGINT``; the relay's lifespan
    runs inside (uvicorn and granian on uvloop, hypercorn on asyncio's own loop)."""
    if server == "hypercorn":
        runner = asyncio.Runner()
    else:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    with runner:
        runner.run(_main(server, app, sockets))


async def _main(server: Server, app: App, sockets: Sequence[socket.socket]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    serve = {"uvicorn": _uvicorn, "granian": _granian, "hypercorn": _hypercorn}[server]
    await serve(app, list(sockets), stop)


async def _until(stop: asyncio.Event, task: asyncio.Future[Any]) -> None:
    """Until ``stop`` is set or ``task`` ends (a server that failed)."""
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((waiter, task), return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


# -- uvicorn ------------------------------------------------------------------------------

async def _uvicorn(app: App, sockets: list[socket.socket], stop: asyncio.Event) -> None:
    import uvicorn

    from relay.cli.uvicorn_http import bounded

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Any:  # the signals are _main's
            yield

    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    config = uvicorn.Config(
        app, http=bounded(MAX_HEAD, HEAD_TIMEOUT), ws="none", lifespan="on", interface="asgi3",
        log_config=None, log_level=logging.WARNING, access_log=False,
        proxy_headers=False, server_header=False, date_header=False,
        timeout_keep_alive=KEEP_ALIVE, h11_max_incomplete_event_size=MAX_HEAD,
        timeout_graceful_shutdown=int(GRACE), backlog=BACKLOG,
    )
    server = _Server(config)
    task = asyncio.ensure_future(server.serve(sockets))
    await _until(stop, task)
    server.should_exit = True
    await task


# -- granian ------------------------------------------------------------------------------

class _Inflight:
    """``app`` counting its HTTP requests in flight, so a stop can wait for them (granian's
    embedded server returns at once when told to stop)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.active += 1
        self._idle.clear()
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
            if not self.active:
                self._idle.set()

    async def drained(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        return not self.active


async def _granian(app: App, sockets: list[socket.socket], stop: asyncio.Event) -> None:
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings

    # Not typed, or not exported: the embedded server and what it is made of.
    lifespan_protocol: Any = importlib.import_module("granian.asgi").LifespanProtocol
    socket_holder: Any = importlib.import_module("granian._granian").SocketHolder
    embedded: Any = importlib.import_module("granian.server.embed").Server

    class _OnSocket(embedded):  # type: ignore[misc]
        """granian's embedded server on a socket bound beforehand (``listen``)."""

        def __init__(self, sock: socket.socket, **options: Any) -> None:
            host, port = sock.getsockname()[:2]
            super().__init__(address=host, port=port, **options)
            self._fd = os.dup(sock.fileno())

        def _init_shared_socket(self) -> None:
            self._ssp = None
            self._shd = socket_holder(self._fd, False, BACKLOG)  # (fd, uds, backlog)

    logging.getLogger("granian").setLevel(logging.ERROR)  # "embedded server is experimental"
    logging.getLogger("_granian").setLevel(logging.ERROR)
    tracked = _Inflight(app)
    lifespan = lifespan_protocol(tracked)
    await lifespan.startup()
    if lifespan.interrupt:
        raise SystemExit(f"relay serve: the relay did not start: {lifespan.exc!r}")
    head = HTTP1Settings(header_read_timeout=HEAD_TIMEOUT * 1000, keep_alive=True,
                         max_buffer_size=MAX_HEAD)
    servers = [
        _OnSocket(sock, target=tracked, interface=Interfaces.ASGINL, http=HTTPModes.http1,
                  http1_settings=head, websockets=False, backlog=BACKLOG, log_access=False,
                  log_enabled=False)
        for sock in sockets
    ]
    tasks = [asyncio.ensure_future(s.serve()) for s in servers]
    try:
        await _until(stop, asyncio.ensure_future(asyncio.wait(
            tasks, return_when=asyncio.FIRST_COMPLETED)))
    finally:
        for s in servers:
            s.signal_handler_interrupt()
        await asyncio.gather(*tasks, return_exceptions=True)
        await tracked.drained(GRACE)
        await lifespan.shutdown()


# -- hypercorn ----------------------------------------------------------------------------

def hypercorn_config() -> Any:
    """The hypercorn ``Config`` of ``relay serve --server hypercorn`` (its binds are the
    sockets given to ``run``)."""
    from hypercorn.config import Config

    config = Config()
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    config.graceful_timeout = GRACE
    config.keep_alive_timeout = KEEP_ALIVE
    config.read_timeout = READ_TIMEOUT
    config.h11_max_incomplete_size = MAX_HEAD
    config.backlog = BACKLOG
    config.include_date_header = False
    config.include_server_header = False
    return config


async def _hypercorn(app: App, sockets: list[socket.socket], stop: asyncio.Event) -> None:
    from hypercorn.asyncio.run import worker_serve
    from hypercorn.config import Sockets
    from hypercorn.utils import wrap_app

    config = hypercorn_config()
    await worker_serve(wrap_app(app, config.wsgi_max_body_size, "asgi"), config,
                       sockets=Sockets([], sockets, []), shutdown_trigger=stop.wait)
