"""CPU per event of ``POST /t/e`` of the relay's ASGI app called in process: no server, no sockets.

What ``relay serve`` runs (``serving_app``, the shipped rules, the SQLite spool, the
``archive`` file destination, hop lines at INFO to a file) is driven with the benchmark's
page view, ``--concurrency`` requests in flight, each with a unique ``event_id`` and the
cookie the first answer set. The clock stops when the archive has every event, so delivery
is included. It prints the CPU per request of the event-loop thread (what limits
throughput: the SQLite spool's thread works mostly outside the GIL, on the other core) and
of all threads: the relay's own cost, without hypercorn's, which ``ingest.py`` includes.

``--without`` takes a part out, to see what it costs (attribution by removal):
``pipeline`` (steps return the event as is), ``hops`` (no hop lines), ``delivery`` (the
dispatcher does not run; the archive count is faked). ``--profile`` prints cProfile's top
functions and the time per module. ``--ledger URL`` writes the delivery ledger there
instead of ``var/ledger.db`` (``postgresql://postgres@127.0.0.1:5432/test``: the shared one).

    python benchmarks/inprocess.py                       # 3 runs x 5,000 requests
    python benchmarks/inprocess.py --without pipeline
    python benchmarks/inprocess.py --profile --runs 1
    python benchmarks/inprocess.py --batch 20            # 20 events per request: us per event
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ingest import UA, body

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from relay.app import serving_app  # noqa: E402
from relay.observe.log import configure  # noqa: E402

ARCHIVE = Path("var/events.jsonl")


class Archive:
    """Counts the lines the archive destination wrote, reading only what is new."""

    def __init__(self) -> None:
        self.offset = 0
        self.lines = 0

    def count(self) -> int:
        if ARCHIVE.exists():
            with ARCHIVE.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
            self.offset += len(data)
            self.lines += data.count(b"\n")
        return self.lines + faked[0]


def remove(part: str) -> None:
    """Take ``part`` out of the relay, in this process only (monkeypatching, hence setattr)."""
    if part == "pipeline":
        import relay.pipeline

        setattr(relay.pipeline, "run", lambda steps, event, ctx: event)  # noqa: B010
    elif part == "hops":
        import relay.observe.log

        setattr(relay.observe.log._writer, "write", lambda line: None)  # noqa: B010
    elif part == "delivery":
        from relay.dispatch import Dispatcher

        async def stop(self: Any, grace: float = 0) -> None:
            return None

        def notify(self: Any, destination: str) -> None:
            faked[0] += 1

        setattr(Dispatcher, "start", lambda self: None)  # noqa: B010
        setattr(Dispatcher, "stop", stop)  # noqa: B010
        setattr(Dispatcher, "notify", notify)  # noqa: B010
    elif part == "ledger":
        from relay.ledger.base import Buffered

        setattr(Buffered, "listener", lambda self, name, fields, at: None)  # noqa: B010
    else:
        raise SystemExit(f"--without: unknown part '{part}' (pipeline, hops, delivery, ledger)")


faked = [0]


class Client:
    """Calls the ASGI app as a server would, keeping the relay's cookie."""

    def __init__(self, app: Any, batch: int = 1) -> None:
        self.app = app
        self.batch = batch
        self.cookie = b""
        self.ids = itertools.count()

    async def post(self) -> None:
        data = body("e", next(self.ids), self.batch)
        headers = [(b"host", b"shop.example"), (b"content-type", b"application/json"),
                   (b"user-agent", UA.encode()), (b"cf-ipcountry", b"US"),
                   (b"content-length", str(len(data)).encode())]
        if self.cookie:
            headers.append((b"cookie", self.cookie))
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": "/t/e", "raw_path": b"/t/e",
                 "query_string": b"", "root_path": "", "headers": headers,
                 "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
        sent = False
        status = 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": data, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message["headers"]:
                    if name == b"set-cookie" and not self.cookie:
                        self.cookie = value.split(b";", 1)[0]

        await self.app(scope, receive, send)
        if status != 202:
            raise SystemExit(f"answer {status}, expected 202")

    async def load(self, n: int, concurrency: int) -> None:
        sem = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with sem:
                await self.post()

        await asyncio.gather(*(one() for _ in range(n)))


async def main_async(args: argparse.Namespace) -> None:
    app = serving_app("rules", "var", admin_port=1)
    for part in args.without:
        remove(part)
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def send(message: dict[str, Any]) -> None:
        return None

    await queue.put({"type": "lifespan.startup"})
    life = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}},
                                   queue.get, send))
    client = Client(app, args.batch)
    await client.load(max(1, 1000 // args.batch), args.concurrency)  # warm-up
    results = []
    archive = Archive()
    for run in range(args.runs):
        await asyncio.sleep(0.5)
        before = archive.count()
        profile = cProfile.Profile() if args.profile else None
        cpu, loop_cpu, wall = time.process_time(), time.thread_time(), time.perf_counter()
        if profile:
            profile.enable()
        await client.load(args.requests, args.concurrency)
        deadline = time.monotonic() + 30
        events = args.requests * args.batch
        while archive.count() < before + events and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if profile:
            profile.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        loop_cpu = time.thread_time() - loop_cpu
        done = archive.count() - before
        results.append((loop_cpu / events * 1e6, cpu / events * 1e6))
        print(f"run {run + 1}: {results[-1][0]:.1f} us CPU per event on the event-loop "
              f"thread, {results[-1][1]:.1f} us in all threads, "
              f"{wall / events * 1e6:.1f} us wall ({args.batch} per request), {done} archived",
              flush=True)
        if profile:
            report(profile, events)
            if args.pstats:
                profile.dump_stats(args.pstats)
    loop = statistics.median(r[0] for r in results)
    every = statistics.median(r[1] for r in results)
    print(f"median: {loop:.1f} us CPU per event on the event-loop thread, {every:.1f} us "
          f"in all threads ({args.batch} per request; without: "
          f"{', '.join(args.without) or 'nothing'})")
    await queue.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(life, 10)


def report(profile: cProfile.Profile, n: int) -> None:
    import pstats

    stats = pstats.Stats(profile)
    by_module: Counter[str] = Counter()
    for (filename, _, name), row in stats.stats.items():  # type: ignore[attr-defined]
        key = filename.split("site-packages/")[-1].split(str(REPO) + "/")[-1]
        by_module["builtin " + name if filename == "~" else key] += row[2]
    total = sum(by_module.values())
    print("time per module (own time, profiled):")
    for key, seconds in by_module.most_common(25):
        print(f"  {seconds / n * 1e6:7.1f} us {seconds / total:6.1%}  {key}")
    stats.sort_stats("tottime").print_stats(30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int,
                   help="requests per run (default: 5,000 single events, 500 batches)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--batch", type=int, default=1,
                   help="events per request (an array, each its own event_id)")
    p.add_argument("--without", action="append", default=[],
                   help="pipeline | hops | delivery (repeatable)")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--pstats", help="with --profile: also write the profile to this file")
    p.add_argument("--ledger", help="relay.ledger.url (default: sqlite:///var/ledger.db)")
    args = p.parse_args()
    if args.batch < 1:
        raise SystemExit("--batch: at least 1 event per request")
    if args.requests is None:
        args.requests = 5000 if args.batch == 1 else 500
    scratch = Path(tempfile.mkdtemp(prefix="relay-inprocess-"))
    try:
        shutil.copytree(REPO / "rules", scratch / "rules")
        if args.ledger:
            (scratch / "rules" / "zz-ledger.yaml").write_text(
                f"relay:\n  ledger: {{url: '{args.ledger}'}}\n")
        os.chdir(scratch)
        os.environ["RELAY_SECRET"] = "bench-secret"
        with open(scratch / "hops.log", "wb") as hops:
            configure("INFO", hops)
            asyncio.run(main_async(args))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
