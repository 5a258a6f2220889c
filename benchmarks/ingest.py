"""Ingest benchmark: ``POST /t/e`` on the real ``relay serve`` (shipped rules, SQLite spool,
one process) against a bare Starlette handler (parse JSON, answer 202) under the same server
with the same settings, in the same run, for each server of ``--servers``.

Each round starts every configuration afresh, one after the other (interleaved), warms it
up, then loads it for a fixed time with a closed-loop aiohttp generator (``--concurrency``
requests in flight, one event per request, a unique ``event_id`` each). It reports the median
over rounds of throughput, p50/p99 latency and the server's CPU, and the relay/bare ratio.
Loopback only; every run is bounded by ``--duration``.

    python benchmarks/ingest.py                       # 3 rounds x 10 s, bare and relay
    python benchmarks/ingest.py --servers uvicorn,granian,hypercorn   # which server is fastest
    python benchmarks/ingest.py --servers uvicorn,granian --workers 2 --redis redis://127.0.0.1:6379/15
    python benchmarks/ingest.py --rounds 1 --duration 3 --configs relay,relay-quiet
    python benchmarks/ingest.py --configs bare,relay,relay-noledger   # the ledger's cost
    python benchmarks/ingest.py --batch 20            # 20 events per POST: events/s

The targets (issue 11): relay/bare throughput >= 0.40 with single events, and >= 30,000
events/s per worker with 20-event batches. A bare handler on one process is usually bound by
this load generator (its "load-gen cores" near 1.0, its server's well below), so its req/s
understates what the server could do; the CPU ratio (bare server CPU per request / relay
server CPU per request) is what the box can really do, and is printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
from common import child_env, free_port, group_cpu_seconds, healthy, stop_process

from relay.cli.servers import DEFAULT_SERVER, SERVERS

REPO = Path(__file__).resolve().parents[1]
TARGET_RATIO = 0.40  # single events: relay/bare
TARGET_EVENTS = 30_000  # batches: events/s per worker
START_TIMEOUT = 20.0
UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
      "Chrome/126.0.0.0 Safari/537.36")
# About 520 bytes, like the anchors in docs: a page view with a page, UTM/click ids, consent,
# a user with an email (hashed by the pipeline) and a few properties.
EVENT = json.dumps({
    "event": "page_view", "event_id": "__ID__",
    "consent": {"analytics_storage": "granted", "ad_storage": "denied"},
    "user": {"id": "u_1042", "email": "ann.example@example.com"},
    "context": {"page": {
        "url": "https://shop.example/products/blue-shoes?utm_source=news&utm_medium=email"
               "&utm_campaign=spring&gclid=Cj0KCQjw&session=42",
        "referrer": "https://www.google.com/", "title": "Blue shoes - Shop"}},
    "properties": {"section": "shoes", "items": 3, "price": 89.9, "currency": "EUR",
                   "logged_in": True, "ab": "variant-b"},
}, separators=(",", ":")).encode()


def body(tag: str, n: int, batch: int) -> bytes:
    """One request's body: the page view with a unique ``event_id`` or, with ``batch`` > 1,
    an array of ``batch`` of them, each with its own."""
    if batch <= 1:
        return EVENT.replace(b"__ID__", f"{tag}-{n}".encode())
    return b"[" + b",".join(EVENT.replace(b"__ID__", f"{tag}-{n}-{i}".encode())
                            for i in range(batch)) + b"]"


HEADERS = {"Content-Type": "application/json", "User-Agent": UA, "CF-IPCountry": "US"}


@dataclass
class Run:
    config: str  # CONFIG@SERVER
    round: int
    seconds: float
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    server_cores: float
    cpu_us_per_req: float
    loadgen_cores: float  # this process (the load generator) in the measured window
    archived: int | None  # relay only: events the archive destination wrote in the window
    batch: int = 1  # events per request
    workers: int = 1


class Server:
    """One server process of a configuration, in its own scratch directory."""

    def __init__(self, config: str, scratch: Path, workers: int = 1,
                 redis_url: str = "") -> None:
        self.config = config
        kind, _, server = config.partition("@")
        self.dir = scratch / config
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.port = free_port()
        self.redis_url = redis_url
        self.redis_prefix: str | None = None
        env = child_env()
        if workers > 1 and redis_url and not config.startswith("bare@"):
            import redis

            redis.Redis.from_url(redis_url).flushdb()
            env["RELAY_STATE"] = redis_url  # --workers N needs shared state
        if kind == "bare":
            cmd = [sys.executable, str(REPO / "benchmarks" / "bare_app.py"), "--port",
                   str(self.port), "--server", server, "--workers", str(workers)]
        else:
            shutil.copytree(REPO / "rules", self.dir / "rules")
            if kind == "relay-noledger":  # the delivery ledger off: what it costs
                relay_yaml = self.dir / "rules" / "relay.yaml"
                relay_yaml.write_text(relay_yaml.read_text().replace(
                    "\nrelay:\n", "\nrelay:\n  ledger: off\n", 1))
            cmd = [sys.executable, "-m", "relay", "serve", "--rules", "rules", "--host",
                   "127.0.0.1", "--port", str(self.port), "--admin-port", str(free_port()),
                   "--workers", str(workers), "--var", "var", "--server", server]
            if kind == "relay-quiet":
                env["RELAY_LOG_LEVEL"] = "WARNING"
            if kind == "relay-redis":  # the Redis Streams spool, keys of its own
                self.redis_prefix = f"relay-bench:{os.getpid()}:{time.monotonic_ns()}:"
                env["RELAY_SPOOL"] = f"{redis_url}?prefix={self.redis_prefix}"
        self.log = (self.dir / "stderr.log").open("wb")
        self.proc = subprocess.Popen(cmd, cwd=self.dir, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/t/e"

    async def ready(self) -> None:
        if await healthy(self.proc, f"http://127.0.0.1:{self.port}/t/healthz", START_TIMEOUT):
            return
        self.stop()
        log = (self.dir / "stderr.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"{self.config} did not start:\n{log}")

    def archived(self) -> int | None:
        if self.config.startswith("bare@"):
            return None
        path = self.dir / "var" / "events.jsonl"
        if not path.exists():
            return 0
        with path.open("rb") as fh:
            return sum(1 for _ in fh)

    def stop(self) -> None:
        stop_process(self.proc, self.log)
        prefix = self.redis_prefix
        if prefix is not None:  # what the run spooled goes with it
            import redis

            r = redis.Redis.from_url(self.redis_url)
            for key in r.scan_iter(match=prefix + "*", count=1000):
                r.delete(key)
            r.close()


async def load(url: str, seconds: float, concurrency: int, tag: str, batch: int = 1,
               ) -> tuple[int, int, list[float], float]:
    """Closed loop for ``seconds``: (ok answers, errors, latencies in s, elapsed s)."""
    ids = itertools.count()
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    jar = aiohttp.CookieJar(unsafe=True)  # keep the relay's cookie, as a browser would

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            data = body(tag, next(ids), batch)
            started = time.perf_counter()
            try:
                async with session.post(url, data=data, headers=HEADERS) as r:
                    await r.read()
                    ok = r.status == 202
            except aiohttp.ClientError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

    t0 = time.perf_counter()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=jar,
                                     timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return len(latencies), errors, latencies, time.perf_counter() - t0


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def one_run(config: str, rnd: int, scratch: Path, args: argparse.Namespace) -> Run:
    server = Server(config, scratch, args.workers, args.redis)
    try:
        await server.ready()
        await load(server.url, args.warmup, args.concurrency, f"w{rnd}", args.batch)
        archived0 = server.archived()
        cpu0, own0 = group_cpu_seconds(server.proc.pid), time.process_time()
        ok, errors, lat, elapsed = await load(server.url, args.duration, args.concurrency,
                                              f"r{rnd}", args.batch)
        cpu, own = group_cpu_seconds(server.proc.pid) - cpu0, time.process_time() - own0
        archived1 = server.archived()
        archived = None if archived0 is None or archived1 is None else archived1 - archived0
    finally:
        server.stop()
    lat.sort()
    return Run(config, rnd, round(elapsed, 2), ok, errors, round(ok / elapsed, 1),
               round(percentile(lat, 0.50) * 1000, 2), round(percentile(lat, 0.99) * 1000, 2),
               round(cpu / elapsed, 2), round(cpu / max(ok, 1) * 1e6, 1), round(own / elapsed, 2),
               archived, args.batch, args.workers)


def summary(runs: list[Run], configs: list[str]) -> str:
    batch = runs[0].batch if runs else 1
    lines = ["| config | req/s median (min-max) | events/s | p50 ms | p99 ms | server cores | "
             "server CPU us/req | us/event | load-gen cores | archived in window | errors |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    medians: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for config in configs:
        mine = [r for r in runs if r.config == config]
        rps = [r.rps for r in mine]
        medians[config] = statistics.median(rps)
        cpu[config] = statistics.median(r.cpu_us_per_req for r in mine)
        lines.append(
            f"| {config} | {medians[config]:,.0f} ({min(rps):,.0f}-{max(rps):,.0f}) | "
            f"{medians[config] * batch:,.0f} | "
            f"{statistics.median(r.p50_ms for r in mine):.1f} | "
            f"{statistics.median(r.p99_ms for r in mine):.1f} | "
            f"{statistics.median(r.server_cores for r in mine):.2f} | "
            f"{cpu[config]:,.0f} | {cpu[config] / batch:,.1f} | "
            f"{statistics.median(r.loadgen_cores for r in mine):.2f} | "
            f"{_archived(mine)} | {sum(r.errors for r in mine)} |")
    lines.append("")
    workers = max(1, runs[0].workers) if runs else 1
    for config in configs:
        kind, _, server = config.partition("@")
        bare = medians.get(f"bare@{server}")
        if kind == "bare" or not bare:
            continue
        ratio = medians[config] / bare
        cpu_ratio = cpu[f"bare@{server}"] / cpu[config] if cpu[config] else float("nan")
        line = (f"{config} / bare@{server}: throughput ratio {ratio:.2f}, CPU ratio "
                f"{cpu_ratio:.2f} (bare's server CPU per request / the relay's)")
        if batch <= 1:
            verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
            line += f"; {verdict} the single-event target (>= {TARGET_RATIO:.2f})"
            if ratio < TARGET_RATIO <= cpu_ratio:
                line += ", which the CPU ratio meets"
        else:
            per_worker = medians[config] * batch / workers
            verdict = "meets" if per_worker >= TARGET_EVENTS else "BELOW"
            line += (f"; {per_worker:,.0f} events/s per worker: {verdict} the {batch}-event "
                     f"batch target (>= {TARGET_EVENTS:,} events/s per worker)")
        lines.append(line)
    bound = [c for c in configs if c.startswith("bare@") and statistics.median(
        r.loadgen_cores for r in runs if r.config == c) > 0.9]
    if bound:
        lines.append(f"{', '.join(bound)}: the load generator was near a full core, so bare's "
                     "req/s is what it could send, not what the server could answer; the CPU "
                     "ratio is the box's real relay/bare figure")
    return "\n".join(lines)


def _archived(runs: list[Run]) -> str:
    """Events written by the archive destination during the window, as a share of the
    events the 202s accepted (below 100%: delivery lags ingest and the spool grows)."""
    shares = [r.archived / (r.requests * r.batch) for r in runs
              if r.archived is not None and r.requests]
    return f"{statistics.median(shares):.0%}" if shares else "-"


async def main_async(args: argparse.Namespace) -> None:
    kinds = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = set(kinds) - {"bare", "relay", "relay-quiet", "relay-noledger", "relay-redis"}
    if unknown:
        raise SystemExit(f"unknown configs: {', '.join(sorted(unknown))}")
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if set(servers) - set(SERVERS):
        raise SystemExit(f"unknown servers: {', '.join(sorted(set(servers) - set(SERVERS)))} "
                         f"(expected {', '.join(SERVERS)})")
    configs = [f"{kind}@{server}" for server in servers for kind in kinds]
    if args.batch < 1:
        raise SystemExit("--batch: at least 1 event per request")
    if args.workers > 1 and not args.redis:
        raise SystemExit("--workers N > 1 needs --redis redis://127.0.0.1:6379/15 (shared state)")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        for rnd in range(1, args.rounds + 1):
            for config in configs:
                run = await one_run(config, rnd, Path(tmp), args)
                runs.append(run)
                print(json.dumps(asdict(run)), flush=True)
                if args.json:
                    with open(args.json, "a") as fh:
                        fh.write(json.dumps(asdict(run)) + "\n")
    print()
    print(f"POST /t/e, {len(EVENT)}-byte event x {args.batch} per request, "
          f"{args.workers} process(es), "
          f"c={args.concurrency}, {args.rounds} rounds x "
          f"{args.duration:g} s (after {args.warmup:g} s warm-up), medians over rounds")
    print(summary(runs, configs))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--configs", default="bare,relay",
                   help="comma-separated: bare, relay, relay-quiet (RELAY_LOG_LEVEL=WARNING),"
                   " relay-noledger (relay.ledger: off), relay-redis (relay.spool on Redis)")
    p.add_argument("--servers", default=DEFAULT_SERVER,
                   help=f"comma-separated: {', '.join(SERVERS)} (each config runs under each)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes of the relay and of the bare handler alike")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/12",
                   help="the Redis of relay-redis's spool (its keys are deleted) and, with"
                   " --workers N > 1, relay.state (the database is FLUSHED before each run)")
    p.add_argument("--batch", type=int, default=1,
                   help="events per request (an array of that many, each its own event_id)")
    p.add_argument("--json", help="append each run as a JSON line to this file")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
