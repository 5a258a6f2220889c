"""``relay demo``: the shop, the relay, its admin pages and stand-in vendors on one port.

    /                       the shop (consent banner, products, cart, checkout)
    /demo/checkout          the shop's backend: posts the signed purchase to the relay
    /demo/vendors           what each stand-in vendor received, and what was stripped
    /demo/vendors/{name}/…  the stand-in vendors (each vendor destination's endpoint)
    /t/...                  the relay (create_app), with the shipped demo rules
    /admin/...              the relay's admin app: /admin/debug is the live view

The rules are ``relay/demo/rules``; ``DEMO_HOST``, ``DEMO_PORT`` and ``DEMO_VAR`` point its
destinations at this process and its spool and archive at a temp directory, and the cookie,
backend and vendor secrets are fresh random values, passed to ``create_app`` as its ``env``.
While it runs, the demo reads the relay's debug feed (``feed``): what it decided for each
event, and which events each delivery attempt carried.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from relay.app import create_admin_app, create_app
from relay.demo import shop, vendors
from relay.demo.context import (
    ADMIN_MOUNT,
    DEFAULT_HOST,
    DEFAULT_PORT,
    RULES_DIR,
    WILDCARD_HOSTS,
    Demo,
    DemoConfig,
    demo_env,
)
from relay.demo.feed import follow
from relay.demo.lineup import VENDOR_PATH
from relay.demo.record import Tap
from relay.runtime import CLIENT_LIMITS, Runtime
from relay.transport import RelayTransport


async def _no_icon(request: Request) -> Response:
    return Response(status_code=204)


def _routes(relay_app: Starlette, admin_app: Starlette, prefix: str) -> list[BaseRoute]:
    return [
        Route("/", shop.page, methods=["GET"]),
        Route("/favicon.ico", _no_icon, methods=["GET"]),
        Route("/demo/checkout", shop.checkout, methods=["POST"]),
        Route("/demo/reset", shop.reset, methods=["GET"]),
        Route("/demo/vendors", vendors.page, methods=["GET"]),
        Route("/demo/vendors.json", vendors.data, methods=["GET"]),
        Route(VENDOR_PATH + "{vendor}/{path:path}", vendors.receive,
              methods=["GET", "POST", "PUT", "DELETE"]),
        Mount(prefix, app=relay_app),
        Mount(ADMIN_MOUNT, app=admin_app),
    ]


def create_demo_app(
    config: DemoConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> Starlette:
    """The whole demo as one ASGI app. ``transport`` replaces the network for the relay's
    deliveries and the backend's posts (tests); by default both go over loopback to
    ``config.base_url``, so the app must be served there."""
    env = demo_env(config)
    # The relay's own transport, explicit: the relay's deliveries stay off any proxy from the
    # environment (they go to this process).
    relay_app = create_app(
        RULES_DIR,
        var_dir=config.workdir / "var",
        env=env,
        transport=transport or RelayTransport(CLIENT_LIMITS),
    )
    runtime: Runtime = relay_app.state.relay
    demo = Demo(config, runtime, env, transport)
    rules = runtime.rules
    browser = next((s.name for s in rules.sources.values() if s.type == "browser"), "browser")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with relay_app.router.lifespan_context(relay_app):
            reader = asyncio.create_task(follow(runtime.debug, demo.decisions, demo.inbox))
            try:
                yield
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                await demo.close()

    app = Starlette(
        routes=_routes(relay_app, create_admin_app(relay_app), rules.relay.prefix),
        middleware=[
            Middleware(Tap, recorder=demo.recorder, prefix=rules.relay.prefix, browser=browser)
        ],
        lifespan=lifespan,
    )
    app.state.demo = demo
    return app


def _banner(config: DemoConfig) -> str:
    base = f"http://{'127.0.0.1' if config.host in WILDCARD_HOSTS else config.loopback}"
    base += f":{config.port}"
    return "\n".join(
        [
            "relay demo: a shop, the relay, stand-in vendors and the debug view on one port",
            f"  shop          {base}/",
            f"  vendors       {base}/demo/vendors   (what each vendor got, what was stripped)",
            f"  debug view    {base}{ADMIN_MOUNT}/debug   (the relay's live event view)",
            f"  rules         {RULES_DIR}",
            f"  spool, var    {config.workdir}   (removed on exit)",
            "Ctrl-C stops it.",
        ]
    )


def _listen(host: str, port: int) -> int:
    """Bind the port before anything starts (a busy port is then one clear error) and hand
    hypercorn the descriptor."""
    bare = host.strip("[]") or "0.0.0.0"
    sock = socket.socket(socket.AF_INET6 if ":" in bare else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((bare, port))
    except OSError:
        sock.close()
        raise
    return sock.detach()


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> int:
    """Run the demo under hypercorn until Ctrl-C; its temp directory is removed after."""
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    from relay.observe.log import configure

    try:
        fd = _listen(host, port)
    except OSError as exc:
        print(f"relay demo: cannot listen on {host}:{port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    configure(os.environ.get("RELAY_LOG_LEVEL", "").strip().upper() or "WARNING")
    workdir = Path(tempfile.mkdtemp(prefix="relay-demo-"))
    config = DemoConfig(workdir=workdir, port=port, host=host)
    hc = Config()
    hc.bind = [f"fd://{fd}"]
    hc.accesslog = None
    hc.errorlog = "-"
    hc.loglevel = "WARNING"
    hc.graceful_timeout = 2.0

    async def main() -> None:
        app: Any = create_demo_app(config)  # hypercorn's ASGI types are stricter than Starlette's
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(_banner(config), file=sys.stderr, flush=True)
        await hypercorn_serve(app, hc, shutdown_trigger=stop.wait)

    try:
        asyncio.run(main())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
