"""``Runtime``: what the handlers share, with a lifetime.

``Runtime`` owns everything with a lifetime: the rules, the engine, the one shared
``httpx.AsyncClient`` (and the proxy's ``Sender`` over the same pool), the spool, the state
store, the dispatcher and the background tasks (rule reloads, held-copy expiry). It starts
in the app's lifespan, or on the first request when the app is mounted inside another app
whose lifespan does not reach it.

Its state lives under ``var_dir``: the generated cookie secret, and the rules' relative
local paths (the SQLite spool, file destinations), resolved by ``relay.registry.place``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import time
from collections.abc import Callable, Mapping
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path

import httpx

from relay.dispatch import Dispatcher
from relay.engine import Engine
from relay.engine.identity import CookieSigner
from relay.engine.results import Batch, debug_entries, debug_entry
from relay.engine.sample import Sampler
from relay.errors import SpoolUnavailable
from relay.ledger import Ledger, open_ledger
from relay.observe.debug import DebugFeed
from relay.observe.log import LOG, listen
from relay.observe.mask import Masker
from relay.observe.metrics import Metrics
from relay.observe.workers import Sharing, WorkerMetrics
from relay.personal import Subjects
from relay.registry import check_rules, load_rules, place
from relay.rules.model import Rules, Source
from relay.spool.base import Spool
from relay.spool.factory import spool_for
from relay.state import RedisState, State, open_state
from relay.state.ratelimit import Buckets, ClientKeys, MemoryBuckets
from relay.state.ratelimit_redis import RedisBuckets
from relay.state.seal import Sealer
from relay.transport import AiohttpSender, HttpxSender, RelayTransport, Sender

RELOAD_POLL_SECONDS = 1.0
EXPIRY_SWEEP_SECONDS = 5.0
RELOAD_DRAIN_SECONDS = 15.0
SHUTDOWN_DRAIN_SECONDS = 3.0
SECRET_FILE = "cookie-secret"
CLIENT_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=32)  # the one client


def cookieless_jar() -> CookieJar:
    """A cookie jar that keeps nothing, for the shared ``httpx.AsyncClient``: it carries
    every user's requests, so a cookie one vendor response sets must never be stored and
    sent along with another user's request (or pile up in memory)."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


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
        refuse_weak_secrets: bool = False,
        sharing: Sharing | None = None,
    ) -> None:
        self.rules_dir = Path(rules_dir)
        self.refuse_weak_secrets = refuse_weak_secrets
        self.var_dir = Path(var_dir)
        self.env = env
        self.transport = transport
        self.metrics = Metrics()
        # relay serve --workers N: one /metrics page adds up every worker's figures.
        self.workers = WorkerMetrics(sharing, self.metrics) if sharing is not None else None
        # Raises RulesError: a bad start fails loudly. Local paths resolve under var_dir.
        rules = place(load_rules(self.rules_dir, env), self.var_dir)
        for d in rules.policy:  # relay serve has said so already; an embedding app has not
            LOG.warning("rules: not fit for production: %s", d.render())
        self.debug = DebugFeed(Masker.from_secrets(self._secrets(rules)))
        self._apply(rules, state=None)
        self.spool: Spool = spool_for(rules.relay)
        self.metrics.track_depths(lambda: self.spool.depths())
        self.metrics.track_ledger(lambda: self.ledger.pending if self.ledger else None)
        self.client: httpx.AsyncClient | None = None
        self.sender: Sender | None = None  # the proxy's, over the client's pool (start())
        self.ledger: Ledger | None = None  # opened by start() unless ``ledger: off``
        self._unlisten: Callable[[], None] = lambda: None
        self.dispatcher: Dispatcher = None  # type: ignore[assignment]  # set by start()
        self._started = False
        self._start_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._mtimes = self._scan()
        self.metrics.rules_reloads.labels("ok")  # make the series visible at 0
        self.metrics.rules_reloads.labels("error")

    # -- rules ------------------------------------------------------------------------

    def _secrets(self, rules: Rules) -> list[str]:
        return list(rules.relay.cookie.secrets) or [load_or_create_secret(self.var_dir)]

    def _apply(self, rules: Rules, state: State | None) -> None:
        relay = rules.relay
        secrets_ = self._secrets(rules)
        self.signer = CookieSigner(relay.cookie, secrets_)
        # What people look at is masked with tags keyed by the cookie secrets (as the
        # sealing of shared state is), so a tag cannot be reversed by hashing guesses.
        self.masker = self.debug.masker = Masker.from_secrets(secrets_)
        if state is None:
            state = open_state(
                relay.state, relay.dedup_max_keys, relay.dedup_window, Sealer(secrets_)
            )
        self.state = state
        self.subjects = Subjects(secrets_)
        sample = relay.sample
        sampler = Sampler(sample.path, sample.rate, sample.max_bytes) if sample else None
        self.engine = Engine(rules, state, self.metrics, self.masker, subjects=self.subjects,
                             sampler=sampler, watched=lambda: self.debug.listening)
        self.limiter = self._buckets(rules, state, secrets_)
        self._browser = next((s for s in rules.sources.values() if s.type == "browser"), None)
        self._write_keys = {
            k: s for s in rules.sources.values() if s.type == "segment" for k in s.write_keys
        }

    def _buckets(self, rules: Rules, state: State, secrets_: list[str]) -> Buckets | None:
        """The rate limit's buckets: None when it is off; in Redis with a Redis state store;
        the running ones when the reload did not change them (memory keeps its counts)."""
        limit = rules.relay.rate_limit
        if limit.per_second <= 0:
            return None
        old: Buckets | None = getattr(self, "limiter", None)
        keys = ClientKeys(secrets_)
        if isinstance(state, RedisState):
            return RedisBuckets(state.r, limit.per_second, limit.burst, keys, state.p)
        if (isinstance(old, MemoryBuckets) and (old.rate, old.burst) == (limit.per_second,
                                                                         float(limit.burst))
                and old.keys.of("") == keys.of("")):
            return old
        return MemoryBuckets(limit.per_second, limit.burst, keys)

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
        if rules is not None and self.refuse_weak_secrets:
            errors += rules.policy  # serving a public address: weak secrets are errors
        if rules is None or errors:
            for d in errors:
                LOG.error("rules reload rejected: %s", d.render())
            self.metrics.rules_reloads.labels("error").inc()
            return False
        rules = place(rules, self.var_dir)
        old = self.rules
        spool_keys = ("spool", "spool_claim_after", "spool_wait")
        if any(getattr(rules.relay, k) != getattr(old.relay, k) for k in spool_keys):
            LOG.warning("relay.spool (or spool_claim_after, spool_wait) changed; the new "
                        "settings are used after a restart")
        keep_state = rules.relay.state == old.relay.state
        self._apply(rules, self.state if keep_state else None)
        if self.dispatcher is not None:
            # The new workers start first; the old ones finish what they are sending.
            previous, self.dispatcher = self.dispatcher, self._new_dispatcher()
            self.dispatcher.start()
            await previous.stop(grace=RELOAD_DRAIN_SECONDS)
        self.metrics.rules_reloads.labels("ok").inc()
        LOG.info("rules reloaded: version %s", rules.version)
        for d in rules.policy:
            LOG.warning("rules: not fit for production: %s", d.render())
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
        ledger = self.rules.relay.ledger
        if ledger.url is not None:
            self.ledger = open_ledger(
                ledger.url, ledger.retention,
                on_error=lambda: self.metrics.ledger_errors.labels().inc(),
                on_write=self.metrics.ledger_write_latency.observe,
            )
            await self.ledger.start()
            self._unlisten = listen(self.ledger.listener)
        transport = self.transport or RelayTransport(CLIENT_LIMITS)
        self.client = httpx.AsyncClient(
            transport=transport,
            limits=CLIENT_LIMITS,
            follow_redirects=False,
            cookies=cookieless_jar(),  # shared by all users: it must keep no cookie
        )
        # The proxy goes straight to aiohttp on the same session; over a transport of the
        # embedding app's (or a test's MockTransport) it goes through the client.
        self.sender = (AiohttpSender(transport) if isinstance(transport, RelayTransport)
                       else HttpxSender(self.client))
        self.dispatcher = self._new_dispatcher()
        self.dispatcher.start()
        self._tasks = [asyncio.create_task(self._watch()), asyncio.create_task(self._sweep())]
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGHUP, lambda: asyncio.ensure_future(self.reload())
            )
        if self.workers is not None:
            await self.workers.start()
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
        self._unlisten()
        if self.ledger is not None:
            await self.ledger.close()
        await self.state.close()
        if self.workers is not None:
            await self.workers.stop()  # last: what it leaves counts the whole run

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
                await self.expire()
            except Exception:
                LOG.exception("expiry sweep failed")

    async def expire(self) -> None:
        """One expiry sweep: what ran out of time is counted, and each event whose wait
        for consent ended is shown in the debug view."""
        expired = await self.engine.expire()
        if expired and self.debug.listening:
            now = int(time.time() * 1000)
            self.debug.publish([debug_entry(r, self.masker, now) for r in expired])

    # -- helpers for the handlers -----------------------------------------------------

    def browser_source(self) -> Source | None:
        return self._browser

    def segment_source(self, write_key: str) -> Source | None:
        return self._write_keys.get(write_key)

    def verify_correlation(self, value: str) -> str | None:
        windows = [c.confirm_window for c in self.rules.events.contracts.values()]
        return self.signer.verify(value, self.rules.relay.cookie.max_age + max(windows, default=0))

    async def scrape(self) -> bytes:
        """The Prometheus page. What the workers and replicas share is read now: the copies
        waiting for consent from the state store (in Redis: every replica's), the spool's
        figures from its file. Under ``--workers N`` every worker's figures are added up."""
        rules = self.rules
        known = [(d.name, d.purpose) for d in rules.destinations.values() if d.purpose]
        try:
            counts = await self.state.pending_counts()
        except Exception as exc:  # a scrape must not fail because Redis is away
            LOG.warning("metrics: cannot read the copies waiting for consent: %s", exc)
            self.metrics.set_pending(None, known)
        else:
            self.metrics.set_pending(counts, known)
        try:
            stats = await self.spool.stats()
        except SpoolUnavailable as exc:
            LOG.warning("metrics: cannot read the spool: %s", exc)
            self.metrics.set_spool(None, None)
        else:
            now = time.time()
            ages = dict.fromkeys([*rules.destinations, *self.spool.depths()[0]], 0.0)
            ages.update({d: max(0.0, now - t) for d, t in stats.oldest.items()})
            self.metrics.set_spool(ages, stats.size)
        if self.workers is not None and self._started:
            return await self.workers.render()
        return self.metrics.render()

    def debug_feed(self, batch: Batch) -> None:
        if self.debug.listening:
            self.debug.publish(debug_entries(batch, self.masker, int(time.time() * 1000)))
