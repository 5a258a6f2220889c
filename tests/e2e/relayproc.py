"""A real ``relay serve`` process (and the ``relay`` CLI) for end-to-end tests.

``RelayProcess`` runs ``python -m relay serve`` with its working directory in a temporary
folder, so the shipped rules' relative paths (``var/spool.db``, ``var/events.jsonl``) land
there. Every run's stderr goes to its own file; ``log_text()`` reads them all. The process
can be SIGKILLed and started again on the same spool, and is always cleaned up.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_RULES = REPO_ROOT / "rules"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
CLI_TIMEOUT = 60.0

# Fixed secrets: tests search logs and admin pages for them (they must never appear).
RELAY_SECRET = "e2e-cookie-secret-9c1f0a7d3b"
BACKEND_SECRET = "e2e-backend-signing-secret-51be"
FIXED_ENV: dict[str, str] = {
    "RELAY_SECRET": RELAY_SECRET,
    "BACKEND_SIGNING_SECRET": BACKEND_SECRET,
    "RELAY_LOG_LEVEL": "INFO",
}
# Variables of the caller's environment that would change what the relay does.
_DROPPED_ENV = ("RELAY_STATE", "RELAY_SPOOL", "RELAY_RULES", "RELAY_RULES_DIR", "RELAY_VAR",
                "RELAY_VAR_DIR", "RELAY_ADMIN_PORT", "RELAY_PUBLIC", "SEGMENT_WRITE_KEY")
_PROXY_ENV = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


_HANDED_OUT: set[int] = set()


# Under pytest-xdist each worker takes only the ports of its own residue class, so two
# workers never hand out the same port before its server has bound it. Ports are drawn at
# random below the kernel's ephemeral range: there no outgoing connection takes one between
# this check and the server's bind (and bind(0) may give the same port again and again).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
_WORKERS = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), 1)
_MINE = int(_WORKER) % _WORKERS if _WORKER.isdigit() else 0
_DRAW = random.SystemRandom()  # not the tests' seeded random


def _below_ephemeral() -> tuple[int, int]:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return max(10000, low - 12000), low - 1


_LOW, _HIGH = _below_ephemeral()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing holds right now, of this worker's class, and
    not one this process handed out before: a relay's ``--port`` and ``--admin-port``
    picked one after the other were once the same."""
    while True:
        port = _DRAW.randrange(_LOW - _LOW % _WORKERS + _MINE, _HIGH + 1, _WORKERS)
        if port < _LOW or port in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # taken
                continue
        _HANDED_OUT.add(port)
        return port


def relay_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for relay processes: the caller's, minus proxies and RELAY_* knobs,
    plus the fixed secrets, with the repository importable."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV and k not in _PROXY_ENV}
    env.update(FIXED_ENV)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    env.update(extra or {})
    return env


def run_cli(args: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None,
            timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """``python -m relay ARGS`` in ``cwd``; output captured as text, no terminal on stdin."""
    return subprocess.run(
        [sys.executable, "-m", "relay", *args], cwd=cwd, env=relay_env(env),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False,
    )


class RelayFailed(AssertionError):
    pass


class RelayProcess:
    """One relay, started and stopped as often as a test wants, always on the same ports,
    working directory and spool."""

    def __init__(self, workdir: Path, rules_dir: Path, *, env: Mapping[str, str] | None = None,
                 name: str = "relay", args: Sequence[str] = ()) -> None:
        self.workdir = workdir
        self.args = list(args)  # more ``relay serve`` arguments (``--workers 2``)
        self.rules_dir = rules_dir
        self.name = name
        self.env = relay_env(env)
        self.port = free_port()
        self.admin_port = free_port()
        self.var_dir = workdir / "var"
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.log_files: list[Path] = []
        self.out_files: list[Path] = []

    # -- addresses ------------------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def url(self, path: str) -> str:
        """A public URL under the default prefix: ``url("/e")`` -> ``.../t/e``."""
        return f"{self.base}/t{path}"

    def admin_url(self, path: str) -> str:
        return self.admin + path

    @property
    def spool_path(self) -> Path:
        return self.var_dir / "spool.db"

    @property
    def archive_path(self) -> Path:
        return self.var_dir / "events.jsonl"

    # -- lifecycle ------------------------------------------------------------------------

    def command(self) -> list[str]:
        return [sys.executable, "-m", "relay", "serve", "--rules", str(self.rules_dir),
                "--host", "127.0.0.1", "--port", str(self.port),
                "--admin-port", str(self.admin_port), "--var", str(self.var_dir), *self.args]

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> RelayProcess:
        """Start and wait until ``GET /t/healthz`` answers 200; fail with the stderr if not."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.runs += 1
        self.workdir.mkdir(parents=True, exist_ok=True)
        err = self.workdir / f"{self.name}.stderr.{self.runs}.log"
        out = self.workdir / f"{self.name}.stdout.{self.runs}.log"
        self.log_files.append(err)
        self.out_files.append(out)
        with err.open("wb") as err_fh, out.open("wb") as out_fh:
            self.proc = subprocess.Popen(
                self.command(), cwd=self.workdir, env=self.env, stdin=subprocess.DEVNULL,
                stdout=out_fh, stderr=err_fh, start_new_session=True,
            )
        self._wait_healthy(timeout)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                code = self.proc.poll()
                if code is not None:
                    self._fail(f"exited with code {code} before answering /t/healthz")
                try:
                    r = client.get(self.url("/healthz"))
                    if r.status_code == 200:
                        return
                    last = f"HTTP {r.status_code}: {r.text[:200]}"
                except httpx.HTTPError as exc:
                    last = repr(exc)
                time.sleep(0.1)
        self.kill()
        self._fail(f"GET /t/healthz did not answer 200 within {timeout:g}s (last: {last})")

    def _fail(self, why: str) -> None:
        tail = self.log_text()[-6000:]
        raise RelayFailed(f"{self.name} ({' '.join(self.command())}): {why}\n"
                          f"--- stderr ---\n{tail}")

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown code runs."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: it and its children
        self.proc.wait(timeout=STOP_TIMEOUT)
        self.proc = None

    def stop(self) -> int | None:
        """SIGTERM and wait (a graceful stop); SIGKILL if it takes too long. The exit code."""
        if self.proc is None:
            return None
        proc = self.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        self.proc = None
        return proc.returncode

    def restart(self) -> RelayProcess:
        self.stop()
        return self.start()

    def signal(self, sig: int) -> None:
        assert self.proc is not None and self.proc.poll() is None, f"{self.name} is not running"
        self.proc.send_signal(sig)

    def close(self) -> None:
        """Teardown: whatever state it is in, nothing is left running."""
        if self.proc is not None:
            self.kill()

    # -- what it left behind --------------------------------------------------------------

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.log_files if p.exists())

    def stdout_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.out_files if p.exists())

    def cli(self, *args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """The ``relay`` CLI in this relay's working directory, on its rules (so on its spool).
        ``dlq`` and ``forget`` look for this relay's admin listener (``--admin-port``), as
        for a relay started with ``--admin-port``: never another relay on the default port."""
        argv = [args[0], "--rules", str(self.rules_dir), *args[1:]] if args else []
        if args and args[0] in ("dlq", "forget") and "--admin-port" not in args:
            argv += ["--admin-port", str(self.admin_port)]
        extra = {k: v for k, v in self.env.items() if k.startswith("RELAY_")}
        return run_cli(argv, cwd=self.workdir, env=extra, timeout=timeout)
