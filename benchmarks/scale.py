"""Scale-out benchmark: ``relay serve --workers 1`` and ``--workers 2`` on each spool backend
of ``--spools`` (SQLite, Redis Streams), in one run.

Ingest: ``POST /t/e`` (the event of ``ingest.py``, one per request, closed loop) on the
relay against ``bare_app.py`` with the same number of processes under the same server, each
configuration started afresh for every round, interleaved; throughput as a ratio to the
bare handler of the same worker count, and the CPU of the whole process group per request.

Drain: the relay with one webhook destination (``batch: true``, 100 events a request) whose
stand-in (an aiohttp server in this process, answering 200) holds every request until the
spool is filled with ``--drain-events`` events; then it lets them go, and the drain rate is
the events it received divided by the time from the release to the last one.

Every relay runs with ``relay.state`` on Redis (``--redis``: the database is FLUSHED before
each run; more than one worker needs shared state), the shipped rules otherwise, hop logs at
INFO. A backend the relay cannot open fails the run with the relay's own error, before
anything is measured. Loopback only; every run is bounded in time.

    python benchmarks/scale.py                                    # sqlite, 3 rounds x 10 s
    python benchmarks/scale.py --spools sqlite,redis --redis redis://127.0.0.1:6379/15
    python benchmarks/scale.py --rounds 1 --duration 3 --drain-events 5000   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import redis
import yaml
from aiohttp import web
from common import child_env, free_port, group_cpu_seconds, healthy, stop_process
from ingest import EVENT, HEADERS, load, percentile

from relay.cli.servers import DEFAULT_SERVER, SERVERS

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT = 30.0
DRAIN_TIMEOUT = 300.0  # seconds the drain may take at most
FILL_BATCH = 10  # events per request while filling the spool
HOOK_TIMEOUT = "300s"  # the held requests must outlast the fill


@dataclass
class Run:
    kind: str  # ingest | drain
    config: str  # bare-w1, sqlite-w2, ...
    round: int
    seconds: float
    events: int
    errors: int
    rate: float  # requests/s (ingest) or events/s (drain)
    p50_ms: float | None
    p99_ms: float | None
    cores: float  # the process group's CPU over the window
    cpu_us: float  # per request or per event


class Process:
    """One ``relay serve`` (``spool`` set) or ``bare_app.py`` (``spool`` None)."""

    def __init__(self, scratch: Path, name: str, spool: str | None, workers: int,
                 args: argparse.Namespace, hook: str | None = None) -> None:
        self.dir = scratch / name
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.port = free_port()
        env = child_env()
        if spool is None:
            cmd = [sys.executable, str(REPO / "benchmarks" / "bare_app.py"), "--port",
                   str(self.port), "--server", args.server, "--workers", str(workers)]
        else:
            rules = self.dir / "rules"
            shutil.copytree(REPO / "rules", rules)
            if hook is not None:  # the stand-in as the only destination (and no tests of
                (rules / "tests.yaml").unlink()  # the shipped rules, which name the archive)
                (rules / "destinations.yaml").write_text(yaml.safe_dump({"destinations": {
                    "hook": {"type": "webhook", "purpose": "analytics",
                             "events": ["page_view"], "pipeline": "minimize",
                             "settings": {"url": hook, "batch": True},
                             "timeout": HOOK_TIMEOUT, "legal_basis": "consent",
                             "retention": "1 day"}}}))
            redis.Redis.from_url(args.redis).flushdb()
            env["RELAY_STATE"] = args.redis
            env["RELAY_SPOOL"] = args.redis if spool == "redis" else "sqlite:///var/spool.db"
            cmd = [sys.executable, "-m", "relay", "serve", "--rules", "rules", "--host",
                   "127.0.0.1", "--port", str(self.port), "--admin-port", str(free_port()),
                   "--workers", str(workers), "--var", "var", "--server", args.server]
        self.log = (self.dir / "stderr.log").open("wb")
        self.proc = subprocess.Popen(cmd, cwd=self.dir, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/t{path}"

    def cpu(self) -> float:
        return group_cpu_seconds(self.proc.pid)

    async def ready(self) -> None:
        if await healthy(self.proc, self.url("/healthz"), START_TIMEOUT):
            return
        self.stop()
        log = (self.dir / "stderr.log").read_text(errors="replace").strip()
        lines = [line for line in log.splitlines() if line.startswith("relay serve: ")
                 and not line.startswith("relay serve: WARNING")]
        raise SystemExit(f"{self.dir.name} did not start: "
                         + ("\n".join(lines) if lines else log[-3000:]))

    def stop(self) -> None:
        stop_process(self.proc, self.log)


def _config(spool: str | None, workers: int) -> str:
    return f"{spool or 'bare'}-w{workers}"


async def ingest(scratch: Path, spool: str | None, workers: int, rnd: int,
                 args: argparse.Namespace) -> Run:
    server = Process(scratch, _config(spool, workers), spool, workers, args)
    try:
        await server.ready()
        await load(server.url("/e"), args.warmup, args.concurrency, f"w{rnd}")
        cpu0 = server.cpu()
        ok, errors, lat, elapsed = await load(server.url("/e"), args.duration,
                                              args.concurrency, f"r{rnd}")
        cpu = server.cpu() - cpu0
    finally:
        server.stop()
    lat.sort()
    return Run("ingest", _config(spool, workers), rnd, round(elapsed, 2), ok, errors,
               round(ok / elapsed, 1), round(percentile(lat, 0.5) * 1000, 2),
               round(percentile(lat, 0.99) * 1000, 2), round(cpu / elapsed, 2),
               round(cpu / max(ok, 1) * 1e6, 1))


class Hook:
    """The stand-in webhook: holds every request until ``release``, then counts events."""

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.events = 0
        self.last = 0.0
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        await self.released.wait()
        self.events += len(json.loads(body)["batch"])
        self.last = time.perf_counter()
        return web.json_response({"ok": True})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def close(self) -> None:
        self.released.set()
        if self.runner is not None:
            await self.runner.cleanup()


async def _fill(url: str, total: int) -> int:
    """Post ``total`` page views, ``FILL_BATCH`` a request, 32 in flight; how many accepted."""
    accepted = 0
    sent = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal accepted, sent
        while sent < total:
            first, sent = sent, sent + FILL_BATCH
            body = b"[" + b",".join(EVENT.replace(b"__ID__", f"d-{i}".encode())
                                   for i in range(first, min(first + FILL_BATCH, total))) + b"]"
            async with session.post(url, data=body, headers=HEADERS) as r:
                answer: dict[str, Any] = await r.json(content_type=None)
                if r.status == 202:
                    accepted += int(answer["accepted"])

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        await asyncio.gather(*(worker(session) for _ in range(32)))
    return accepted


async def drain(scratch: Path, spool: str, workers: int, rnd: int,
                args: argparse.Namespace) -> Run:
    hook = Hook()
    await hook.start()
    server = Process(scratch, f"drain-{_config(spool, workers)}", spool, workers, args,
                     hook=f"http://127.0.0.1:{hook.port}/hook")
    try:
        await server.ready()
        accepted = await _fill(server.url("/e"), args.drain_events)
        cpu0, t0 = server.cpu(), time.perf_counter()
        hook.released.set()
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while hook.events < accepted and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        elapsed = (hook.last if hook.events else time.perf_counter()) - t0
        cpu = server.cpu() - cpu0
    finally:
        server.stop()
        await hook.close()
    if hook.events < accepted:
        raise SystemExit(f"drain {_config(spool, workers)}: {hook.events} of {accepted} events "
                         f"delivered within {DRAIN_TIMEOUT:g}s")
    return Run("drain", _config(spool, workers), rnd, round(elapsed, 2), hook.events, 0,
               round(hook.events / elapsed, 1), None, None, round(cpu / elapsed, 2),
               round(cpu / max(hook.events, 1) * 1e6, 1))


def summary(runs: list[Run], spools: list[str], workers: list[int]) -> str:
    def med(kind: str, config: str, field: str) -> float:
        return float(statistics.median(getattr(r, field) for r in runs
                                       if r.kind == kind and r.config == config))

    lines = ["Ingest (POST /t/e, one event a request):", "",
             "| config | req/s | relay/bare (same workers) | p50 ms | p99 ms | cores | "
             "CPU us/req |", "|---|---|---|---|---|---|---|"]
    for n in workers:
        for spool in [None, *spools]:
            config = _config(spool, n)
            rate = med("ingest", config, "rate")
            bare = med("ingest", _config(None, n), "rate")
            ratio = "-" if spool is None else f"{rate / bare:.2f}"
            lines.append(f"| {config} | {rate:,.0f} | {ratio} | "
                         f"{med('ingest', config, 'p50_ms'):.1f} | "
                         f"{med('ingest', config, 'p99_ms'):.1f} | "
                         f"{med('ingest', config, 'cores'):.2f} | "
                         f"{med('ingest', config, 'cpu_us'):,.0f} |")
    lines += ["", "Drain (spool -> stand-in webhook, 100 events a request):", "",
              "| config | events/s | cores | CPU us/event |", "|---|---|---|---|"]
    for n in workers:
        for spool in spools:
            config = _config(spool, n)
            lines.append(f"| {config} | {med('drain', config, 'rate'):,.0f} | "
                         f"{med('drain', config, 'cores'):.2f} | "
                         f"{med('drain', config, 'cpu_us'):,.0f} |")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> None:
    spools = [s.strip() for s in args.spools.split(",") if s.strip()]
    if set(spools) - {"sqlite", "redis"}:
        raise SystemExit(f"unknown spools: {', '.join(sorted(set(spools) - {'sqlite', 'redis'}))}"
                         " (expected sqlite, redis)")
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="relay-scale-") as tmp:
        scratch = Path(tmp)
        for spool in spools:  # each backend must start before anything is measured
            probe = Process(scratch, f"probe-{spool}", spool, 1, args)
            await probe.ready()
            probe.stop()
        for rnd in range(1, args.rounds + 1):
            for n in workers:
                for spool in [None, *spools]:
                    runs.append(await ingest(scratch, spool, n, rnd, args))
                    _emit(runs[-1], args)
                for spool in spools:
                    runs.append(await drain(scratch, spool, n, rnd, args))
                    _emit(runs[-1], args)
    print()
    print(f"server {args.server}, c={args.concurrency}, {args.rounds} rounds x "
          f"{args.duration:g} s ingest, {args.drain_events} events drained; medians")
    print(summary(runs, spools, workers))


def _emit(run: Run, args: argparse.Namespace) -> None:
    line = json.dumps(asdict(run))
    print(line, flush=True)
    if args.json:
        with open(args.json, "a") as fh:
            fh.write(line + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spools", default="sqlite", help="comma-separated: sqlite, redis")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--server", choices=SERVERS, default=DEFAULT_SERVER)
    p.add_argument("--redis", default="redis://127.0.0.1:6379/15",
                   help="state (and the redis spool); FLUSHED before every run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=10.0, help="measured ingest seconds")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--drain-events", type=int, default=20000)
    p.add_argument("--json", help="append each run as a JSON line to this file")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
