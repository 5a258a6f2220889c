"""The ASGI applications: ``create_app`` (public, mounted under the prefix) and
``create_admin_app`` (metrics, readiness, rules, dead letters, debug; a private port).

``Runtime`` owns everything with a lifetime: the rules, the engine, the one shared
``httpx.AsyncClient``, the spool, the state store, the dispatcher and the background tasks
(rule reloads, held-copy expiry). It starts in the app's lifespan, or on the first request
when the app is mounted inside another app whose lifespan does not reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from relay import collect, proxy, snippet
from relay.browser import BrowserEndpoint
from relay.dispatch import Dispatcher
from relay.engine import Engine
from relay.identity import CookieSigner
from relay.observe import admin
from relay.observe.debug import DebugFeed
from relay.observe.log import LOG
from relay.observe.metrics import Metrics
from relay.ratelimit import RateLimiter
from relay.results import Batch
from relay.rules import check_rules, load_rules
from relay.rules.model import Rules, Source
from relay.seal import Sealer
from relay.spool.base import Spool
from relay.spool.factory import open_spool
from relay.state import State, open_state

RELOAD_POLL_SECONDS = 1.0
EXPIRY_SWEEP_SECONDS = 5.0
RELOAD_DRAIN_SECONDS = 15.0
SHUTDOWN_DRAIN_SECONDS = 3.0
SECRET_FILE = "cookie-secret"
# Young collections every 10,000 allocations instead of CPython's 700 (see ``tune_gc``).
GC_THRESHOLDS = (10_000, 20, 20)


def load_or_create_secret(var_dir: Path) -> str:
    """The cookie secret kept in ``var/``; generated (and said so, once) on first use."""
    path = var_dir / SECRET_FILE
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another worker made it first: use theirs
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(value + "\n")
            LOG.warning(
                "relay.cookie.secret is not set: generated one in %s; set RELAY_SECRET "
                "(relay.cookie.secret) to share it between hosts",
                path,
            )
            return value
    for _ in range(50):  # a file just created by another worker may not be written yet
        value = path.read_text().strip()
        if value:
            return value
        time.sleep(0.01)
    raise RuntimeError(f"{path} is empty: delete it, or set RELAY_SECRET")


class Runtime:
    def __init__(
        self,
        rules_dir: str | os.PathLike[str],
        *,
        var_dir: str | os.PathLike[str] = "var",
        env: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.rules_dir = Path(rules_dir)
        self.var_dir = Path(var_dir)
        self.env = env
        self.transport = transport
        self.metrics = Metrics()
        self.proxy = proxy.Proxy(self.metrics)  # script cache, in-flight counts, consent hook
        self.debug = DebugFeed()
        rules = load_rules(self.rules_dir, env)  # raises RulesError: a bad start fails loudly
        self._apply(rules, state=None)
        self.spool: Spool = open_spool(rules.relay.spool)
        self.metrics.track_depths(lambda: self.spool.depths())
        self.client: httpx.AsyncClient | None = None
        self.dispatcher: Dispatcher = None  # type: ignore[assignment]  # set by start()
        self._started = False
        self._start_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._mtimes = self._scan()
        self.metrics.rules_reloads.labels("ok")  # make the series visible at 0
        self.metrics.rules_reloads.labels("error")

    # -- rules ------------------------------------------------------------------------

    def _apply(self, rules: Rules, state: State | None) -> None:
        relay = rules.relay
        secrets_ = list(relay.cookie.secrets) or [load_or_create_secret(self.var_dir)]
        self.signer = CookieSigner(relay.cookie, secrets_)
        if state is None:
            state = open_state(
                relay.state, relay.dedup_max_keys, relay.dedup_window, Sealer(secrets_)
            )
        self.state = state
        self.engine = Engine(rules, state, self.metrics)
        self.limiter = RateLimiter(relay.rate_limit.per_second, relay.rate_limit.burst)
        self._browser = next((s for s in rules.sources.values() if s.type == "browser"), None)
        self._write_keys = {
            k: s for s in rules.sources.values() if s.type == "segment" for k in s.write_keys
        }

    @property
    def rules(self) -> Rules:
        return self.engine.rules

    def _scan(self) -> dict[str, float]:
        out = {}
        with contextlib.suppress(OSError):
            for p in self.rules_dir.iterdir():
                if p.suffix in (".yaml", ".yml"):
                    out[str(p)] = p.stat().st_mtime
        return out

    async def reload(self) -> bool:
        """Load the rules again; a failing set is logged, counted and not applied."""
        self._mtimes = self._scan()
        rules, diagnostics = await asyncio.to_thread(check_rules, self.rules_dir, self.env)
        errors = [d for d in diagnostics if d.severity == "error"]
        if rules is None or errors:
            for d in errors:
                LOG.error("rules reload rejected: %s", d.render())
            self.metrics.rules_reloads.labels("error").inc()
            return False
        old = self.rules
        if rules.relay.spool != old.relay.spool:
            LOG.warning("relay.spool changed; the new spool is used after a restart")
        keep_state = rules.relay.state == old.relay.state
        self._apply(rules, self.state if keep_state else None)
        if self.dispatcher is not None:
            # The new workers start first; the old ones finish what they are sending.
            previous, self.dispatcher = self.dispatcher, self._new_dispatcher()
            self.dispatcher.start()
            await previous.stop(grace=RELOAD_DRAIN_SECONDS)
        self.metrics.rules_reloads.labels("ok").inc()
        LOG.info("rules reloaded: version %s", rules.version)
        return True

    # -- lifecycle --------------------------------------------------------------------

    def _new_dispatcher(self) -> Dispatcher:
        assert self.client is not None
        return Dispatcher(
            self.spool,
            self.rules.destinations,
            self.client,
            self.metrics,
            on_attempt=self.debug.attempt,
        )

    @property
    def started(self) -> bool:
        return self._started

    async def ensure_started(self) -> None:
        if not self._started:
            async with self._start_lock:
                if not self._started:
                    await self.start()

    async def start(self) -> None:
        await self.spool.start()
        self.client = httpx.AsyncClient(
            transport=self.transport,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            follow_redirects=False,
            cookies=proxy.cookieless_jar(),  # shared by all users: it must keep no cookie
        )
        self.dispatcher = self._new_dispatcher()
        self.dispatcher.start()
        self._tasks = [asyncio.create_task(self._watch()), asyncio.create_task(self._sweep())]
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGHUP, lambda: asyncio.ensure_future(self.reload())
            )
        self._started = True
        LOG.info(
            "relay started: rules %s, %d destinations",
            self.rules.version,
            len(self.rules.destinations),
        )

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        await self.dispatcher.stop(grace=SHUTDOWN_DRAIN_SECONDS)
        if self.client is not None:
            await self.client.aclose()
        await self.spool.close()
        await self.state.close()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(RELOAD_POLL_SECONDS)
            if self._scan() != self._mtimes:
                try:
                    await self.reload()
                except Exception:  # a reload must never kill the watcher
                    LOG.exception("rules reload failed")
                    self.metrics.rules_reloads.labels("error").inc()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_SWEEP_SECONDS)
            try:
                await self.engine.expire()
            except Exception:
                LOG.exception("expiry sweep failed")

    # -- helpers for the handlers -----------------------------------------------------

    def browser_source(self) -> Source | None:
        return self._browser

    def segment_source(self, write_key: str) -> Source | None:
        return self._write_keys.get(write_key)

    def verify_correlation(self, value: str) -> str | None:
        windows = [c.confirm_window for c in self.rules.events.contracts.values()]
        return self.signer.verify(value, self.rules.relay.cookie.max_age + max(windows, default=0))

    def debug_feed(self, batch: Batch) -> None:
        if self.debug.listening:
            self.debug.publish(batch)


def _routes(runtime: Runtime) -> list[BaseRoute]:
    return [
        Route("/e", BrowserEndpoint(runtime), methods=["POST"]),
        Route("/hook/{source}", collect.webhook, methods=["POST"]),
        Route("/v1/{call}", collect.segment, methods=["POST"]),
        Route("/healthz", collect.healthz, methods=["GET"]),
        Route("/r.js", snippet.script, methods=["GET"]),
        proxy.ProxyRouter(),  # last: the rules' proxy routes, longest path first
    ]


async def _not_found(request: Request, exc: Exception) -> Response:
    return collect.json_response({"error": f"no route for {request.url.path}"}, 404)


def create_app(
    rules_dir: str | os.PathLike[str] = "rules",
    *,
    var_dir: str | os.PathLike[str] = "var",
    env: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """The public relay app, with routes relative to where it is mounted.

    Mount it under the rules' ``relay.prefix`` (``app.mount("/t", create_app("rules"))``);
    ``relay serve`` does exactly that. ``app.state.relay`` is the ``Runtime``.
    """
    runtime = Runtime(rules_dir, var_dir=var_dir, env=env, transport=transport)

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
    rules_dir: str, var_dir: str = "var", admin_port: int | None = None
) -> Callable[..., Any]:
    """What ``relay serve`` runs: the relay under its prefix, and the admin app on its own
    port (chosen by the port a connection arrived on, so one process can serve both)."""
    relay_app = create_app(rules_dir, var_dir=var_dir)
    tune_gc()
    runtime: Runtime = relay_app.state.relay
    prefix = runtime.rules.relay.prefix
    admin_app = create_admin_app(relay_app)
    admin_port = admin_port if admin_port is not None else runtime.rules.relay.admin.port
    browser, browser_path = BrowserEndpoint(runtime), prefix + "/e"

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await relay_app(scope, receive, send)
            return
        server = scope.get("server")
        if server and server[1] == admin_port:
            await admin_app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path == browser_path and scope["method"] == "POST":
            await browser(scope, receive, send)  # the hot path: no router, no middleware
            return
        if path == prefix or path.startswith(prefix + "/"):
            # What Starlette's Mount does, without a second middleware stack per request.
            await relay_app(
                {**scope, "root_path": scope.get("root_path", "") + prefix}, receive, send
            )
            return
        await _outside(scope, receive, send)

    return app


async def _outside(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A request outside the prefix: 404 (the site's own paths are the CDN's business)."""
    if scope["type"] != "http":
        return
    response = collect.json_response({"error": "not found: the relay serves only its prefix"}, 404)
    await response(scope, receive, send)
