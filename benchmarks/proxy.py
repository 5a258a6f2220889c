"""Proxy benchmark: the real ``relay serve`` proxying a vendor script (cached, and streamed)
and a hit endpoint, in the same run against three baselines:

- ``bare``: a bare Starlette handler that streams the same upstream with httpx
  (``client.send(stream=True)`` + ``StreamingResponse(aiter_raw())``), and (workload
  ``memory``) serves the same gzipped script bytes from memory, under the default server of
  ``relay serve`` with one process;
- ``nginx``: ``/usr/sbin/nginx`` with ``proxy_pass`` to the same upstream (one worker
  process, upstream keep-alive), the ceiling for a proxied answer.

Targets printed with PASS/BELOW: a proxied hit at >= 10% of nginx's rate, and the cached
script at >= 0.8 of the bare handler serving the same bytes from memory. The verdict is the
throughput ratio. Beside it is the CPU ratio (the baseline's server CPU per request / the
relay's): the load generator is one Python process, and a cheap answer (the bare handler's,
a cached script's) can keep it near a full core while the server idles, so req/s then says
what the generator could send; the CPU ratio says what the server costs, run after run.

The upstream is a separate aiohttp process on 127.0.0.1 serving a 100 KiB ``vendor.js``
(pre-gzipped when asked, as a CDN would) and answering ``POST /g/collect`` with 204. Each
round starts every server afresh, then goes through the workloads in groups (``GROUPS``:
each target's two sides together; reversed every other round). Each workload of a group is
warmed up, then the group's workloads take turns in ``--slices`` slices of the measured time
(A B B A A B ...), each loaded by a closed-loop aiohttp generator, so that a busy spell of a
shared box falls on both sides of a ratio rather than on one. It prints the
medians over rounds, the relay/bare ratios, and the snippet's gzip size when
``relay/static/r.js`` exists. Loopback only; every run is bounded by ``--duration``.

    python benchmarks/proxy.py                          # 3 rounds x 5 s per workload, c=32,64
    python benchmarks/proxy.py --rounds 1 --duration 2  # a quick look
    python benchmarks/proxy.py --concurrency 32         # one concurrency only
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
from common import child_env, cpu_seconds, free_port, group_cpu_seconds, stop_process

REPO = Path(__file__).resolve().parents[1]
NGINX = Path("/usr/sbin/nginx")
SNIPPET = REPO / "relay" / "static" / "r.js"
START_TIMEOUT = 20.0
SCRIPT_BYTES = 100 * 1024
UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
      "Chrome/126.0.0.0 Safari/537.36")
HIT_QUERY = ("v=2&tid=G-BENCH123&gtm=45je4&_p=1732795200000&cid=1042.1732795200&ul=en-us"
             "&sr=1920x1080&en=page_view&dl=https%3A%2F%2Fshop.example%2Fp%3Fgclid%3Dabc"
             "&dt=Blue%20shoes&gclid=abc")
HIT_BODY = b"en=scroll&epn.percent_scrolled=90\nen=user_engagement&_et=5123"
HIT_HEADERS = {"Content-Type": "text/plain;charset=UTF-8", "User-Agent": UA,
               "CF-IPCountry": "US", "Cookie": "_ga=GA1.1.1042.1732795200; other=1"}
SCRIPT_HEADERS = {"Accept-Encoding": "gzip, deflate, br", "User-Agent": UA}

# (config, workload): what each server is asked. "script" on the relay is a cached route,
# "stream" the same script through a route without cache; the bare handler's "script"
# streams, its "memory" serves the same bytes from memory; nginx always proxies.
PLAN = {
    "bare": ("script", "memory", "hit"),
    "nginx": ("script", "hit"),
    "relay": ("script", "stream", "hit"),
}
PATHS = {"script": "/t/lib/vendor.js", "stream": "/t/lib/vendor-stream.js", "hit": "/t/g/collect",
         "memory": "/t/mem/vendor.js"}
# The workloads of a round, in groups measured in alternating slices: each target's two sides
# together, and each relay workload with the bare one it is compared with.
GROUPS = [(("bare", "memory"), ("relay", "script")), (("nginx", "script"),),
          (("bare", "script"), ("relay", "stream")), (("nginx", "hit"), ("relay", "hit")),
          (("bare", "hit"),)]
# relay workload -> the bare workload it is compared with
COMPARE = {"script": "script", "stream": "script", "hit": "hit"}
# (name, relay workload, (baseline config, workload), target ratio)
TARGETS = [
    ("proxied hit / nginx proxy_pass hit", "hit", ("nginx", "hit"), 0.10),
    ("cached script / bare from memory", "script", ("bare", "memory"), 0.8),
]


def vendor_script() -> bytes:
    """100 KiB of minified-looking JavaScript that gzips about 3:1, like a real tag."""
    rng = random.Random(7)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$"
    out = bytearray()
    while len(out) < SCRIPT_BYTES:
        a, b, c = ("".join(rng.choices(alphabet, k=rng.randint(2, 8))) for _ in range(3))
        n = rng.randint(0, 99999)
        out += f"var {a}=function({b}){{return {b}.{c}||{n}}};{a}.p={n % 97};".encode()
    return bytes(out[:SCRIPT_BYTES])


# -- the upstream and the bare handler (run as child processes) ----------------------------


def run_upstream(port: int) -> None:
    from aiohttp import web

    plain = vendor_script()
    packed = gzip.compress(plain, 6)

    async def script(request: web.Request) -> web.Response:
        gz = "gzip" in request.headers.get("Accept-Encoding", "")
        headers = {"Content-Type": "application/javascript", "Cache-Control": "public, max-age=900"}
        if gz:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=packed if gz else plain, headers=headers)

    async def collect(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/vendor.js", script)
    app.router.add_post("/g/collect", collect)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def run_bare(port: int, upstream: str) -> None:
    import httpx
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    # The same pool as relay.app.Runtime's shared client.
    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=64,
                                                   max_keepalive_connections=32),
                               follow_redirects=False, trust_env=False)
    passed = ("content-type", "content-encoding", "content-length", "cache-control")

    async def relay_to(request: Request, url: str) -> Response:
        headers = {k: v for k, v in request.headers.items()
                   if k in ("content-type", "content-length", "accept-encoding", "user-agent")}
        body = request.stream() if request.method == "POST" else None
        req = client.build_request(request.method, url, headers=headers, content=body)
        resp = await client.send(req, stream=True)
        out = {k: v for k, v in resp.headers.items() if k in passed}
        return StreamingResponse(resp.aiter_raw(), resp.status_code, headers=out,
                                 background=BackgroundTask(resp.aclose))

    async def script(request: Request) -> Response:
        return await relay_to(request, f"{upstream}/vendor.js")

    plain = vendor_script()
    packed = gzip.compress(plain, 6)

    async def memory(request: Request) -> Response:
        """The same script from memory: what a cache at its cheapest costs on this server."""
        headers = {"Cache-Control": "public, max-age=900"}
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return Response(packed, headers=headers, media_type="application/javascript")
        return Response(plain, headers=headers, media_type="application/javascript")

    async def collect(request: Request) -> Response:
        return await relay_to(request, f"{upstream}/g/collect?{request.url.query}")

    async def healthz(request: Request) -> Response:
        return Response("ok\n", media_type="text/plain")

    app = Starlette(routes=[
        Route(PATHS["script"], script, methods=["GET"]),
        Route(PATHS["memory"], memory, methods=["GET"]),
        Route(PATHS["hit"], collect, methods=["POST"]),
        Route("/t/healthz", healthz, methods=["GET"]),
    ])
    from relay.cli.servers import DEFAULT_SERVER, listen, run

    # The same server with the same settings as relay serve (one process, no access log).
    run(DEFAULT_SERVER, app, listen([("127.0.0.1", port)]))


# -- the harness -----------------------------------------------------------------------


class Process:
    def __init__(self, name: str, cmd: list[str], cwd: Path, port: int) -> None:
        self.name, self.port, self.cwd = name, port, cwd
        self.log = (cwd / f"{name}.log").open("wb")
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=child_env("WARNING"), stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    async def ready(self, path: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline and self.proc.poll() is None:
                with contextlib.suppress(aiohttp.ClientError):
                    async with s.get(f"http://127.0.0.1:{self.port}{path}") as r:
                        if r.status < 500:
                            return
                await asyncio.sleep(0.1)
        self.stop()
        text = (self.cwd / f"{self.name}.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"{self.name} did not start:\n{text}")

    def stop(self) -> None:
        stop_process(self.proc, self.log)


def nginx_conf(work: Path, port: int, upstream_port: int) -> str:
    """One worker process (comparable to one relay process), upstream keep-alive as the
    relay's pool keeps connections, no access log, everything under ``work``."""
    user = "user root root;\n" if os.geteuid() == 0 else ""
    proxied = ("proxy_http_version 1.1; proxy_set_header Connection \"\"; "
               "proxy_buffers 16 16k; proxy_buffer_size 16k;")
    return f"""{user}worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    upstream up {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location = {PATHS["script"]} {{ proxy_pass http://up/vendor.js; {proxied} }}
        location = {PATHS["hit"]} {{ proxy_pass http://up/g/collect; {proxied} }}
        location = /t/healthz {{ return 200 "ok\n"; }}
    }}
}}
"""


def start_server(config: str, scratch: Path, upstream_port: int) -> Process:
    work = scratch / config
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    port = free_port()
    if config == "nginx":
        conf = work / "nginx.conf"
        conf.write_text(nginx_conf(work, port, upstream_port))
        return Process(config, [str(NGINX), "-p", str(work), "-c", str(conf)], work, port)
    if config == "bare":
        cmd = [sys.executable, str(Path(__file__).resolve()), "bare", "--port", str(port),
               "--upstream", f"http://127.0.0.1:{upstream_port}"]
        return Process(config, cmd, work, port)
    shutil.copytree(REPO / "rules", work / "rules")
    up = f"http://127.0.0.1:{upstream_port}"
    (work / "rules" / "proxy.yaml").write_text(
        "proxy:\n"
        f"  vendor: {{path: /lib/vendor.js, upstream: '{up}/vendor.js', cache: 1h}}\n"
        f"  vendor_stream: {{path: /lib/vendor-stream.js, upstream: '{up}/vendor.js'}}\n"
        f"  collect: {{path: /g/collect, upstream: '{up}/g/collect', purpose: analytics,\n"
        "            forward_ip: truncate, cookies: [_ga, '_ga_*'], methods: [POST]}\n")
    cmd = [sys.executable, "-m", "relay", "serve", "--rules", "rules", "--host", "127.0.0.1",
           "--port", str(port), "--admin-port", str(free_port()), "--workers", "1",
           "--var", "var"]
    return Process(config, cmd, work, port)


@dataclass
class Run:
    config: str
    workload: str
    concurrency: int
    round: int
    seconds: float
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    server_cores: float
    server_us_per_req: float
    upstream_cores: float
    bytes_per_req: float
    loadgen_cores: float


async def load(url: str, workload: str, seconds: float, concurrency: int,
               ) -> tuple[list[float], int, int]:
    """Closed loop for ``seconds``: (latencies of good answers, errors, bytes received)."""
    latencies: list[float] = []
    errors = received = 0
    deadline = time.perf_counter() + seconds
    want = 204 if workload == "hit" else 200

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors, received
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                if workload == "hit":
                    ctx = session.post(f"{url}?{HIT_QUERY}", data=HIT_BODY, headers=HIT_HEADERS)
                else:
                    ctx = session.get(url, headers=SCRIPT_HEADERS)
                async with ctx as r:
                    body = await r.content.read()  # raw: no decompression on our side
                    ok = r.status == want
            except aiohttp.ClientError:
                ok, body = False, b""
            if ok:
                latencies.append(time.perf_counter() - started)
                received += len(body)
            else:
                errors += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return latencies, errors, received


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


@dataclass
class _Totals:
    seconds: float = 0.0
    errors: int = 0
    received: int = 0
    server_cpu: float = 0.0
    upstream_cpu: float = 0.0
    own_cpu: float = 0.0


async def measure(servers: dict[str, Process], upstream: Process,
                  group: tuple[tuple[str, str], ...], concurrency: int, rnd: int,
                  args: argparse.Namespace) -> list[Run]:
    """One group's runs: each workload warmed up, then loaded in turns (A B B A ...) for
    ``args.duration`` seconds each in all, over ``args.slices`` slices."""

    def url(config: str, workload: str) -> str:
        return f"http://127.0.0.1:{servers[config].port}{PATHS[workload]}"

    for config, workload in group:
        await load(url(config, workload), workload, args.warmup, concurrency)
    totals = {member: _Totals() for member in group}
    latencies: dict[tuple[str, str], list[float]] = {member: [] for member in group}
    for i in range(args.slices):
        for member in group if i % 2 == 0 else group[::-1]:
            config, workload = member
            pid, t = servers[config].proc.pid, totals[member]
            # The server's whole process group: nginx's worker, and any worker of relay serve.
            cpu0, up0, own0, t0 = (group_cpu_seconds(pid), cpu_seconds(upstream.proc.pid),
                                   time.process_time(), time.monotonic())
            lat, errors, received = await load(url(config, workload), workload,
                                               args.duration / args.slices, concurrency)
            t.seconds += time.monotonic() - t0
            t.own_cpu += time.process_time() - own0
            t.server_cpu += group_cpu_seconds(pid) - cpu0
            t.upstream_cpu += cpu_seconds(upstream.proc.pid) - up0
            t.errors += errors
            t.received += received
            latencies[member] += lat
    runs = []
    for (config, workload), t in totals.items():
        lat = sorted(latencies[config, workload])
        ok, elapsed = len(lat), t.seconds
        runs.append(Run(
            config, workload, concurrency, rnd, round(elapsed, 2), ok, t.errors,
            round(ok / elapsed, 1),
            round(percentile(lat, 0.5) * 1000, 2), round(percentile(lat, 0.99) * 1000, 2),
            round(t.server_cpu / elapsed, 2), round(t.server_cpu / max(ok, 1) * 1e6, 1),
            round(t.upstream_cpu / elapsed, 2), round(t.received / max(ok, 1)),
            round(t.own_cpu / elapsed, 2)))
    return runs


async def snippet_size(relay_port: int) -> str:
    if not SNIPPET.exists():
        return "relay/static/r.js does not exist yet"
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        with contextlib.suppress(aiohttp.ClientError):
            async with s.get(f"http://127.0.0.1:{relay_port}/t/r.js",
                             headers={"Accept-Encoding": "gzip"}) as r:
                body = await r.read()
                if r.status == 200 and r.headers.get("Content-Encoding") == "gzip":
                    return f"{len(body)} bytes gzip as served by GET /t/r.js"
    size = len(gzip.compress(SNIPPET.read_bytes(), 9))
    return f"{size} bytes (gzip -9 of relay/static/r.js, not served by this build)"


def summary(runs: list[Run], concurrency: int) -> str:
    runs = [r for r in runs if r.concurrency == concurrency]
    lines = [f"c={concurrency}:", "",
             "| config | workload | req/s median (min-max) | p50 ms | p99 ms | server cores | "
             "server CPU us/req | upstream cores | load-gen cores | bytes/resp | errors |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    medians: dict[tuple[str, str], float] = {}
    cpu: dict[tuple[str, str], float] = {}
    loadgen: dict[tuple[str, str], float] = {}
    for config, workloads in PLAN.items():
        for workload in workloads:
            mine = [r for r in runs if (r.config, r.workload) == (config, workload)]
            if not mine:
                continue
            rps = [r.rps for r in mine]
            medians[config, workload] = statistics.median(rps)
            cpu[config, workload] = statistics.median(r.server_us_per_req for r in mine)
            loadgen[config, workload] = statistics.median(r.loadgen_cores for r in mine)
            lines.append(
                f"| {config} | {workload} | {medians[config, workload]:,.0f} "
                f"({min(rps):,.0f}-{max(rps):,.0f}) | "
                f"{statistics.median(r.p50_ms for r in mine):.1f} | "
                f"{statistics.median(r.p99_ms for r in mine):.1f} | "
                f"{statistics.median(r.server_cores for r in mine):.2f} | "
                f"{cpu[config, workload]:,.0f} | "
                f"{statistics.median(r.upstream_cores for r in mine):.2f} | "
                f"{loadgen[config, workload]:.2f} | "
                f"{statistics.median(r.bytes_per_req for r in mine):,.0f} | "
                f"{sum(r.errors for r in mine)} |")
    lines.append("")
    names = {"script": "cached script", "stream": "streamed script (no cache)", "hit": "hit"}
    for workload, base in COMPARE.items():
        if ("relay", workload) in medians and ("bare", base) in medians:
            ratio = medians["relay", workload] / medians["bare", base]
            lines.append(f"relay/bare throughput, {names[workload]}: {ratio:.2f}")
        if ("relay", workload) in medians and ("nginx", base) in medians:
            ratio = medians["relay", workload] / medians["nginx", base]
            lines.append(f"relay/nginx throughput, {names[workload]}: {ratio:.2f}")
    for name, workload, baseline, target in TARGETS:
        if ("relay", workload) in medians and baseline in medians:
            ratio = medians["relay", workload] / medians[baseline]
            verdict = "PASS" if ratio >= target else "BELOW"
            relay_cpu = cpu["relay", workload]
            cpu_ratio = cpu[baseline] / relay_cpu if relay_cpu else float("nan")
            lines.append(f"target {name}: {ratio:.3f} (>= {target:g}) {verdict}; CPU ratio "
                         f"{cpu_ratio:.2f} ({baseline[0]} {baseline[1]}'s server CPU per "
                         "request / the relay's)")
            if loadgen[baseline] > 0.9:
                lines.append(f"  {baseline[0]} {baseline[1]}: the load generator was near a "
                             "full core, so its req/s is what the generator could send, not "
                             "what the server could answer")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> None:
    plan = {c: w for c, w in PLAN.items() if c != "nginx" or NGINX.exists()}
    if "nginx" not in plan:
        print(f"{NGINX} is not installed: no nginx ceiling in this run (apt-get install nginx)")
    runs: list[Run] = []
    snippet = ""
    with tempfile.TemporaryDirectory(prefix="relay-proxy-bench-") as tmp:
        scratch = Path(tmp)
        up_port = free_port()
        upstream = Process("upstream", [sys.executable, str(Path(__file__).resolve()),
                                        "upstream", "--port", str(up_port)], scratch, up_port)
        try:
            await upstream.ready("/vendor.js")
            for rnd in range(1, args.rounds + 1):
                servers: dict[str, Process] = {}
                try:
                    for config in plan:
                        servers[config] = start_server(config, scratch, up_port)
                    for server in servers.values():
                        await server.ready("/t/healthz")
                    if not snippet:
                        snippet = await snippet_size(servers["relay"].port)
                    groups = [tuple(m for m in g if m[1] in plan.get(m[0], ())) for g in GROUPS]
                    groups = [g for g in groups if g]
                    for concurrency in args.concurrency:
                        for group in groups if rnd % 2 else groups[::-1]:
                            for run in await measure(servers, upstream, group, concurrency, rnd,
                                                     args):
                                runs.append(run)
                                print(json.dumps(asdict(run)), flush=True)
                                if args.json:
                                    with open(args.json, "a") as fh:
                                        fh.write(json.dumps(asdict(run)) + "\n")
                finally:
                    for server in servers.values():
                        server.stop()
        finally:
            upstream.stop()
    print()
    print(f"{SCRIPT_BYTES // 1024} KiB script (gzip from upstream and relay), {len(HIT_BODY)}-byte "
          f"hit, {args.rounds} rounds x {args.duration:g} s per workload "
          f"(after {args.warmup:g} s warm-up), medians over rounds")
    for concurrency in args.concurrency:
        print()
        print(summary(runs, concurrency))
    print()
    print(f"snippet: {snippet}")


def concurrencies(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected positive integers separated by commas, e.g. 32,64")
    return values


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("role", nargs="?", default="run", choices=["run", "upstream", "bare"],
                   help="run the benchmark (default); upstream and bare are its children")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per workload")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--slices", type=int, default=3,
                   help="turns the workloads of a group take in the measured time (default 3)")
    p.add_argument("--concurrency", type=concurrencies, default=[32, 64],
                   help="clients in flight, one or more comma-separated (default 32,64)")
    p.add_argument("--json", help="append each run as a JSON line to this file")
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--upstream", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.slices < 1:
        p.error("--slices: expected a positive integer")
    if args.role == "upstream":
        run_upstream(args.port)
    elif args.role == "bare":
        run_bare(args.port, args.upstream)
    else:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
