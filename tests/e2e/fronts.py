"""Debian's nginx and Caddy, each run by a test as an unprivileged process on a free
loopback port, on the recipes in deploy/cdn rendered for the test's replicas.

Rendering changes only what differs between a deployment and a test: the replicas'
addresses and the listening port. nginx's relay-locations.conf is copied as it is; the main
context around relay.conf (pid, logs, temporary folders, one worker) is the test's own, as
each system's ``nginx.conf`` is around a ``conf.d/`` file.
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
CADDYFILE = REPO_ROOT / "deploy" / "cdn" / "Caddyfile"
NOBODY = 65534
START_TIMEOUT = 20.0
_SERVER = re.compile(r"^(?P<indent>[ \t]*)server [^\s;]+:8000(?P<options>[^;]*);\n", re.MULTILINE)
_LISTEN = re.compile(r"^(?P<indent>[ \t]*)listen 8080;$", re.MULTILINE)


_CADDY_UPSTREAMS = re.compile(r"^(?P<indent>[ \t]*)reverse_proxy (?P<names>(?:[\w-]+:8000 ?)+) \{$",
                              re.MULTILINE)
_CADDY_SITE = re.compile(r"^:8080 \{$", re.MULTILINE)


class FrontFailed(AssertionError):
    pass


def binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")
    if found is None:
        raise FrontFailed(f"{name} is required for this test and is not installed: "
                          f"apt-get install {name} (bash .ci/run installs it)")
    return found


def render_site(text: str, port: int, replicas: Sequence[int]) -> str:
    """The recipe's relay.conf with its upstream servers replaced by ``127.0.0.1:P`` for each
    replica port (each keeps the recipe's options) and ``listen 8080`` by the test's port."""
    servers = list(_SERVER.finditer(text))
    if not servers:
        raise FrontFailed(f"{SITE}: no 'server NAME:8000 ...;' line in the upstream")
    indent, options = servers[0]["indent"], servers[0]["options"]
    ours = "".join(f"{indent}server 127.0.0.1:{p}{options};\n" for p in replicas)
    first, last = servers[0].start(), servers[-1].end()
    if text[first:last] != "".join(m[0] for m in servers):
        raise FrontFailed(f"{SITE}: the upstream's server lines are not together")
    text = text[:first] + ours + text[last:]
    text, n = _LISTEN.subn(lambda m: f"{m['indent']}listen 127.0.0.1:{port};", text)
    if n != 1:
        raise FrontFailed(f"{SITE}: expected one 'listen 8080;' line, found {n}")
    return text


def render_caddyfile(text: str, port: int, replicas: Sequence[int]) -> str:
    """The recipe's Caddyfile with its upstreams replaced by ``127.0.0.1:P`` for each replica
    port and its site address ``:8080`` by the test's loopback port."""
    text, n = _CADDY_UPSTREAMS.subn(
        lambda m: f"{m['indent']}reverse_proxy "
                  + " ".join(f"127.0.0.1:{p}" for p in replicas) + " {", text)
    if n != 1:
        raise FrontFailed(f"{CADDYFILE}: expected one 'reverse_proxy NAME:8000 ... {{' line")
    text, n = _CADDY_SITE.subn(f"http://127.0.0.1:{port} {{", text)  # plain HTTP, as :8080
    if n != 1:
        raise FrontFailed(f"{CADDYFILE}: expected one ':8080 {{' site")
    return text


def main_conf(directory: Path) -> str:
    d = directory
    temp = "\n".join(f"    {kind}_temp_path {d}/{kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\n"
            f"error_log {d}/error.log info;\n"
            "events { worker_connections 128; }\n"
            f"http {{\n    access_log {d}/access.log;\n{temp}\n    include relay.conf;\n}}\n")


class Front:
    """A reverse proxy in front of relay replicas, run from a private folder as nobody when
    the test runs as root (the folder is not under root's 0700 temporary folders)."""

    name = "front"

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"relay-{self.name}-"))
        self.as_root = os.geteuid() == 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base}/t{path}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    def _hand_over(self) -> None:
        if self.as_root:  # the whole of it runs as nobody, as nginx's workers would
            for path in (self.dir, *self.dir.rglob("*")):
                os.chown(path, NOBODY, NOBODY)

    def _user(self) -> dict[str, object]:
        return {"user": NOBODY, "group": NOBODY, "extra_groups": []} if self.as_root else {}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        done: subprocess.CompletedProcess[str] = subprocess.run(  # type: ignore[call-overload]
            args, capture_output=True, text=True, timeout=30, check=False, env=self.env(),
            **self._user())
        return done

    def check(self) -> None:
        """The server's own check of the rendered configuration."""

    def start(self) -> Front:
        self._hand_over()
        self.check()
        with (self.dir / "stderr.log").open("wb") as err:
            self.proc = subprocess.Popen(  # type: ignore[call-overload]
                self.command(), stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                start_new_session=True, env=self.env(), **self._user())
        deadline = time.monotonic() + START_TIMEOUT
        last = "no answer yet"
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise FrontFailed(f"{self.name} exited with {self.proc.returncode}:\n"
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
        raise FrontFailed(f"{self.name} did not answer /t/healthz within {START_TIMEOUT:g}s "
                          f"(last: {last}):\n{self.log_text()}")

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace")
                       for p in (self.dir / "stderr.log", self.dir / "error.log") if p.exists())

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


class Nginx(Front):
    """nginx in front of ``replicas`` (ports on 127.0.0.1), on deploy/cdn/nginx."""

    name = "nginx"

    def __init__(self, replicas: Sequence[int]) -> None:
        super().__init__()
        self.binary = binary("nginx")
        (self.dir / "relay.conf").write_text(render_site(SITE.read_text(), self.port, replicas))
        shutil.copyfile(LOCATIONS, self.dir / LOCATIONS.name)
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(main_conf(self.dir))

    def command(self) -> list[str]:
        return [self.binary, "-p", str(self.dir), "-c", str(self.conf),
                "-e", str(self.dir / "error.log")]

    def check(self) -> None:
        done = self.run(*self.command(), "-t")
        if done.returncode != 0:
            raise FrontFailed(f"nginx -t failed:\n{done.stderr}")


class Caddy(Front):
    """Caddy in front of ``replicas`` (ports on 127.0.0.1), on deploy/cdn/Caddyfile."""

    name = "caddy"

    def __init__(self, replicas: Sequence[int]) -> None:
        super().__init__()
        self.binary = binary("caddy")
        self.conf = self.dir / "Caddyfile"
        self.conf.write_text(render_caddyfile(CADDYFILE.read_text(), self.port, replicas))

    def env(self) -> dict[str, str]:
        home = str(self.dir)  # Caddy keeps its data and autosaved config under these
        return {"HOME": home, "XDG_DATA_HOME": home, "XDG_CONFIG_HOME": home,
                "PATH": "/usr/bin:/bin"}

    def command(self) -> list[str]:
        return [self.binary, "run", "--config", str(self.conf), "--adapter", "caddyfile"]

    def check(self) -> None:
        done = self.run(self.binary, "validate", "--config", str(self.conf), "--adapter",
                        "caddyfile")
        if done.returncode != 0:
            raise FrontFailed(f"caddy validate failed:\n{done.stderr}")
