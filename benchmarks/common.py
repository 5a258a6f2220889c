"""What the benchmark scripts share: free loopback ports, process CPU from /proc, and the
environment their server processes run in."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
BENCH_SECRET = "bench-cookie-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """utime + stime of every live process in process group ``pgid`` (a ``relay serve
    --workers N`` started with ``start_new_session``: its main process and workers)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        if int(fields[2]) == pgid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def healthy(proc: subprocess.Popen[Any], url: str, timeout: float) -> bool:
    """Whether ``GET url`` answered 200 within ``timeout`` seconds while ``proc`` ran."""
    import asyncio
    import time

    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                async with s.get(url) as r:
                    if r.status == 200:
                        return True
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    return False


def child_env(log_level: str | None = None) -> dict[str, str]:
    """This environment without RELAY_* settings or proxies, with the repository importable
    and a fixed cookie secret."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"]
                                     if env.get("PYTHONPATH") else "")
    env["RELAY_SECRET"] = BENCH_SECRET
    if log_level:
        env["RELAY_LOG_LEVEL"] = log_level
    return env


def stop_process(proc: subprocess.Popen[Any], log: IO[Any]) -> None:
    """SIGTERM, then SIGKILL to its process group after 15 s; close its log."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    log.close()
