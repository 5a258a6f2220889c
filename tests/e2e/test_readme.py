"""The README's shell and Python blocks, run as written on a copy of the repository.

The copy holds what a clone would (the files git tracks, and new files it does not ignore),
so the set-up command really installs the package into a fresh ``.venv`` and starts
``relay serve`` on the embedded defaults; every other block then runs in a shell of its own
whose environment knows nothing of the test's virtualenv, as in a reader's new terminal.

A block's role is the ``<!-- readme-test: ... -->`` comment on the line before it:

- ``serve``: the set-up command; started in the background, it must answer on port 8000;
- ``self (...)``: the test command itself (``bash .ci/run``), which runs this test: not run
  from inside it, and there may be only one such block;
- ``background URL``: a server command (``relay demo``); started, it must answer at URL,
  then it is stopped;
- no comment: the block runs to completion and must exit 0.

The public and admin ports are the README's own (8000, 9901; 8080 for the demo): when
another process holds one, the test fails and says so.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from .relayproc import REPO_ROOT

README = REPO_ROOT / "README.md"
SERVE_URL = "http://127.0.0.1:8000/t/healthz"
PORTS = (8000, 9901, 8080)
# The README's relay listens on the default ports, which every other test's CLI probes for a
# running relay (the default admin port): .ci/run runs this file on its own, after the rest.
pytestmark = pytest.mark.alone
INSTALL_TIMEOUT = 300.0  # pip install into the fresh .venv, then the relay starting
BLOCK_TIMEOUT = 120.0
_BLOCK = re.compile(
    r"(?:^<!-- readme-test: (?P<role>[^\n]*?) -->\n)?^```(?P<lang>sh|python)\n(?P<code>.*?)^```",
    re.MULTILINE | re.DOTALL,
)


@dataclass(frozen=True)
class Block:
    line: int
    lang: str
    role: str  # "" (run to completion), "serve", "self ...", "background URL"
    code: str


def readme_blocks(text: str) -> list[Block]:
    return [
        Block(text.count("\n", 0, m.start("code")), m["lang"], m["role"] or "", m["code"])
        for m in _BLOCK.finditer(text)
    ]


def _copy_of_repository(target: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = REPO_ROOT / name.decode()
        if not source.is_file():  # deleted in the working tree, not yet committed
            continue
        dest = target / name.decode()
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(source.read_bytes())
        dest.chmod(source.stat().st_mode)


def _fresh_env() -> dict[str, str]:
    """A new terminal's environment: no virtualenv, no RELAY_* settings, no proxies."""
    venv = os.environ.get("VIRTUAL_ENV")
    exe_dir = str(Path(sys.executable).parent)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep)
            if p and p != exe_dir and not (venv and p.startswith(venv))]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RELAY_", "PYTHON", "VIRTUAL_ENV"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env["PATH"] = os.pathsep.join(path)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class Background:
    """A block run by bash in its own process group, stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, code: str, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            ["bash", "-c", code], cwd=cwd, env=env, stdout=self._out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_for(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"exited with {self.proc.returncode} before {url} answered:\n"
                            f"{self.output()}", pytrace=False)
            try:
                if httpx.get(url, timeout=1.0, trust_env=False).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        pytest.fail(f"{url} did not answer within {timeout:g}s:\n{self.output()}", pytrace=False)

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._out.close()


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    taken = [p for p in PORTS if _port_taken(p)]
    if taken:
        pytest.fail(f"the README's ports {taken} are in use on 127.0.0.1: stop what holds "
                    f"them (a relay serve or relay demo of your own?) and run again",
                    pytrace=False)
    root = tmp_path_factory.mktemp("readme") / "relay"
    _copy_of_repository(root)
    yield root


def test_readme_blocks_are_all_accounted_for() -> None:
    blocks = readme_blocks(README.read_text())
    roles = [b.role.split(" ", 1)[0] for b in blocks]
    assert roles.count("serve") == 1, "one set-up command starts the relay"
    assert roles.count("self") == 1, "only the test command itself is not run here"
    assert set(roles) <= {"", "serve", "self", "background"}, roles
    assert sum(1 for b in blocks if not b.role) >= 2  # the quick start and the embedding


def test_readme_commands_run_verbatim_after_the_set_up(clone: Path) -> None:
    blocks = readme_blocks(README.read_text())
    env = _fresh_env()
    setup = next(b for b in blocks if b.role == "serve")
    relay = Background(setup.code, clone, env, clone.parent / "serve.log")
    try:
        relay.wait_for(SERVE_URL, INSTALL_TIMEOUT)
        for block in blocks:
            where = f"README.md:{block.line}"
            if block.role in ("serve",) or block.role.startswith("self"):
                continue
            if block.role.startswith("background"):
                url = block.role.split(" ", 1)[1]
                server = Background(block.code, clone, env, clone.parent / f"{block.line}.log")
                try:
                    server.wait_for(url, BLOCK_TIMEOUT)
                finally:
                    server.stop()
                continue
            command = (["bash", "-euo", "pipefail", "-c", block.code] if block.lang == "sh"
                       else [str(clone / ".venv" / "bin" / "python"), "-c", block.code])
            done = subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True,
                                  timeout=BLOCK_TIMEOUT, check=False)
            assert done.returncode == 0, (
                f"{where} exited {done.returncode}\n--- stdout\n{done.stdout[-3000:]}"
                f"\n--- stderr\n{done.stderr[-3000:]}\n--- relay serve\n{relay.output()}"
            )
            if "curl" in block.code:
                _check_quick_start(clone, done.stdout)
    finally:
        relay.stop()


def _check_quick_start(clone: Path, stdout: str) -> None:
    """What the quick start says its commands show."""
    assert "HTTP/1.1 202" in stdout, stdout  # the browser event, the backend purchase
    assert '"accepted":1,"duplicates":0,"rejected":[{"index":1' in stdout, stdout
    assert "relay_events_received_total" in stdout
    assert '"ready":true' in stdout.replace(" ", "").replace("\n", "")
    archived = (clone / "var" / "events.jsonl").read_text()
    assert '"event":"page_view"' in archived and '"event":"purchase"' in archived
    assert "gclid=abc" not in archived  # the landing URL was cleaned
