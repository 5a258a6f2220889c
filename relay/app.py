"""The ASGI applications: ``create_app`` (public, mounted under the prefix),
``create_admin_app`` (metrics, readiness, rules, dead letters, debug; a private port) and
``serving_app``, what ``relay serve`` runs: both, on their own ports, in one process.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from relay import snippet
from relay.admin import routes as admin
from relay.ingest.browser import browser
from relay.ingest.endpoint import Endpoint
from relay.ingest.segment import segment
from relay.ingest.webhook import webhook
from relay.observe.workers import Sharing
from relay.proxy.router import ProxyRouter
from relay.runtime import Runtime
from relay.web import json_response, with_date_and_server

# Young collections every 10,000 allocations instead of CPython's 700 (see ``tune_gc``).
GC_THRESHOLDS = (10_000, 20, 20)


async def healthz(request: Request) -> Response:
    return Response("ok\n", media_type="text/plain")


def _routes(runtime: Runtime) -> list[BaseRoute]:
    return [
        Route("/e", Endpoint(runtime, browser), methods=["POST"]),
        Route("/hook/{source}", Endpoint(runtime, webhook), methods=["POST"]),
        Route("/v1/{call}", Endpoint(runtime, segment), methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/r.js", snippet.script, methods=["GET"]),
        ProxyRouter(runtime),  # last: the rules' proxy routes, longest path first
    ]


async def _not_found(request: Request, exc: Exception) -> Response:
    return json_response({"error": f"no route for {request.url.path}"}, 404)


def create_app(
    rules_dir: str | os.PathLike[str] = "rules",
    *,
    var_dir: str | os.PathLike[str] = "var",
    env: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    refuse_weak_secrets: bool = False,
    sharing: Sharing | None = None,
) -> Starlette:
    """The public relay app, with routes relative to where it is mounted.

    Mount it under the rules' ``relay.prefix`` (``app.mount("/t", create_app("rules"))``);
    ``relay serve`` does exactly that. ``app.state.relay`` is the ``Runtime``. Relative
    paths in the rules (the spool, file destinations) resolve under ``var_dir``. Weak source
    secrets (``relay.rules.policy``) are logged as warnings; with ``refuse_weak_secrets``
    (``relay serve`` on a public address) a reload that brings one is rejected. ``sharing``
    is for ``relay serve --workers N``'s workers: their ``/metrics`` adds up every worker's.
    """
    runtime = Runtime(rules_dir, var_dir=var_dir, env=env, transport=transport,
                      refuse_weak_secrets=refuse_weak_secrets, sharing=sharing)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.ensure_started()
        try:
            yield
        finally:
            await runtime.stop()

    app = Starlette(
        routes=_routes(runtime), lifespan=lifespan, exception_handlers={404: _not_found}
    )
    app.state.relay = runtime
    app.state.proxy = next(r for r in app.routes if isinstance(r, ProxyRouter)).state
    return app


def create_admin_app(relay_app: Starlette) -> Starlette:
    """The admin listener's app for a relay app (``GET /metrics``, ``/readyz``, ...)."""
    runtime: Runtime = relay_app.state.relay
    app = Starlette(routes=admin.routes(), middleware=admin.middleware(runtime))
    app.state.relay = runtime
    return app


def tune_gc() -> None:
    """Collector settings for a long-running server (``relay serve``, not an embedding app,
    whose process is not ours to tune).

    Each event allocates a few hundred short-lived dicts and lists, so CPython's default
    (a young collection every 700 allocations, a full one now and then that walks every
    object of the process) cost about a tenth of the ingest path. What exists once the app is
    built (modules, rules, the app) lives as long as the process: ``gc.freeze`` takes it out
    of every later collection, and young collections run less often. Reference cycles are
    still collected; they just wait a little longer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def serving_app(
    rules_dir: str, var_dir: str = "var", admin_port: int | None = None, *,
    refuse_weak_secrets: bool = False, sharing: Sharing | None = None,
) -> Callable[..., Any]:
    """What ``relay serve`` runs: the relay under its prefix, and the admin app on its own
    port (chosen by the port a connection arrived on, so one process can serve both). Every
    response carries one ``Date`` and one ``Server`` (``relay.web.with_date_and_server``:
    the server must not add its own)."""
    relay_app = create_app(rules_dir, var_dir=var_dir, refuse_weak_secrets=refuse_weak_secrets,
                           sharing=sharing)
    tune_gc()
    runtime: Runtime = relay_app.state.relay
    prefix = runtime.rules.relay.prefix
    admin_app = create_admin_app(relay_app)
    admin_port = admin_port if admin_port is not None else runtime.rules.relay.admin.port
    # The hot path stamps its own Date and Server: no wrapper around its send per request.
    browser_app, browser_path = Endpoint(runtime, browser, stamp=True), prefix + "/e"
    proxy = next(r for r in relay_app.routes if isinstance(r, ProxyRouter))

    def on_admin_port(scope: dict[str, Any]) -> bool:
        server = scope.get("server")
        return server is not None and int(server[1]) == admin_port  # granian: port as a string

    async def rest(scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await relay_app(scope, receive, send)
            return
        if on_admin_port(scope):
            await admin_app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path == prefix or path.startswith(prefix + "/"):
            root = scope.get("root_path", "") + prefix
            method = scope.get("method")  # none in a websocket scope
            if method in ("GET", "HEAD") and await proxy.from_memory(scope, root, send):
                return  # a cached script: no router either
            # What Starlette's Mount does, without a second middleware stack per request.
            await relay_app({**scope, "root_path": root}, receive, send)
            return
        await _outside(scope, receive, send)

    stamped = with_date_and_server(rest)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (scope.get("path") == browser_path and scope["type"] == "http"
                and scope["method"] == "POST" and not on_admin_port(scope)):
            await browser_app(scope, receive, send)  # no router, no middleware
            return
        await stamped(scope, receive, send)

    return app


async def _outside(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A request outside the prefix: 404 (the site's own paths are the CDN's business)."""
    if scope["type"] != "http":
        return
    response = json_response({"error": "not found: the relay serves only its prefix"}, 404)
    await response(scope, receive, send)
