"""Debian's nginx, run by a test as an unprivileged process on a free loopback port, with
the recipe in deploy/cdn/nginx rendered for the test's replicas.

``render`` changes only what differs between a deployment and a test: the upstream's
``server`` lines (the replicas' addresses) and the ``listen`` port; relay-locations.conf is
copied as it is. The main context around it (pid, logs, temporary folders, one worker) is
the test's own, as it is each system's ``nginx.conf`` around a ``conf.d/`` file.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from .relayproc import REPO_ROOT, free_port

RECIPE = REPO_ROOT / "deploy" / "cdn" / "nginx"
SITE = RECIPE / "relay.conf"
LOCATIONS = RECIPE / "relay-locations.conf"
NOBODY = 65534
START_TIMEOUT = 20.0
_SERVER = re.compile(r"^(?P<indent>[ \t]*)server [^\s;]+:8000(?P<options>[^;]*);\n", re.MULTILINE)
_LISTEN = re.compile(r"^(?P<indent>[ \t]*)listen 8080;$", re.MULTILINE)


class NginxFailed(AssertionError):
    pass


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if found is None:
        raise NginxFailed("nginx is required for this test and is not installed: "
                          "apt-get install nginx (bash .ci/run installs it)")
    return found


def render_site(text: str, port: int, replicas: Sequence[int]) -> str:
    """The recipe's relay.conf with its upstream servers replaced by ``127.0.0.1:P`` for each
    replica port (each keeps the recipe's options) and ``listen 8080`` by the test's port."""
    servers = list(_SERVER.finditer(text))
    if not servers:
        raise NginxFailed(f"{SITE}: no 'server NAME:8000 ...;' line in the upstream")
    indent, options = servers[0]["indent"], servers[0]["options"]
    ours = "".join(f"{indent}server 127.0.0.1:{p}{options};\n" for p in replicas)
    first, last = servers[0].start(), servers[-1].end()
    if text[first:last] != "".join(m[0] for m in servers):
        raise NginxFailed(f"{SITE}: the upstream's server lines are not together")
    text = text[:first] + ours + text[last:]
    text, n = _LISTEN.subn(lambda m: f"{m['indent']}listen 127.0.0.1:{port};", text)
    if n != 1:
        raise NginxFailed(f"{SITE}: expected one 'listen 8080;' line, found {n}")
    return text


def main_conf(directory: Path) -> str:
    d = directory
    temp = "\n".join(f"    {kind}_temp_path {d}/{kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\n"
            f"error_log {d}/error.log info;\n"
            "events { worker_connections 128; }\n"
            f"http {{\n    access_log {d}/access.log;\n{temp}\n    include relay.conf;\n}}\n")


class Nginx:
    """nginx in front of ``replicas`` (ports on 127.0.0.1), rendered from the recipe."""

    def __init__(self, replicas: Sequence[int]) -> None:
        self.binary = nginx_binary()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="relay-nginx-"))  # not under root's 0700 tmp
        (self.dir / "relay.conf").write_text(render_site(SITE.read_text(), self.port, replicas))
        shutil.copyfile(LOCATIONS, self.dir / LOCATIONS.name)
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(main_conf(self.dir))
        self.as_root = os.geteuid() == 0
        if self.as_root:  # nginx's workers would drop to nobody anyway: the whole of it does
            for path in (self.dir, *self.dir.iterdir()):
                os.chown(path, NOBODY, NOBODY)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base}/t{path}"

    def _run(self, *args: str) -> list[str]:
        return [self.binary, "-p", str(self.dir), "-c", str(self.conf),
                "-e", str(self.dir / "error.log"), *args]

    def _user(self) -> dict[str, object]:
        return {"user": NOBODY, "group": NOBODY, "extra_groups": []} if self.as_root else {}

    def check(self) -> None:
        """``nginx -t`` on the rendered configuration."""
        done = subprocess.run(self._run("-t"), capture_output=True, text=True, timeout=30,
                              check=False, **self._user())  # type: ignore[call-overload]
        if done.returncode != 0:
            raise NginxFailed(f"nginx -t failed:\n{done.stderr}")

    def start(self) -> Nginx:
        self.check()
        with (self.dir / "stderr.log").open("wb") as err:
            self.proc = subprocess.Popen(  # type: ignore[call-overload]
                self._run(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                start_new_session=True, **self._user())
        deadline = time.monotonic() + START_TIMEOUT
        last = "no answer yet"
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise NginxFailed(f"nginx exited with {self.proc.returncode}:\n"
                                      f"{self.log_text()}")
                try:
                    r = client.get(self.url("/healthz"))
                    if r.status_code == 200:
                        return self
                    last = f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    last = repr(exc)
                time.sleep(0.1)
        self.close()
        raise NginxFailed(f"nginx did not answer /t/healthz within {START_TIMEOUT:g}s "
                          f"(last: {last}):\n{self.log_text()}")

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace")
                       for p in (self.dir / "stderr.log", self.dir / "error.log") if p.exists())

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGQUIT)  # graceful: workers finish, then exit
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
