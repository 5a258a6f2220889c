"""deploy/Dockerfile's two stages, done here without Docker: the build stage's files (its
COPY lines, through .dockerignore) make the wheel; the wheel alone, installed into a folder
of its own with no source tree, runs the image's command on the rules the runtime stage
copies, and writes nothing outside --var (the image's root filesystem is read-only).

What this cannot show: the base image, the user and the read-only mount themselves; those
are properties of the Dockerfile, checked in test_dockerfile.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from tests.e2e.relayproc import REPO_ROOT, RelayProcess

from .dockerfile import ignore_allows, instructions
from .promql import DEPLOY

DOCKERFILE = DEPLOY / "Dockerfile"


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def _pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args, "--no-index", "-q"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def _copy(sources: list[str], dest: Path) -> None:
    """A COPY of the build context (the repository, through .dockerignore)."""
    for source in sources:
        assert ignore_allows(REPO_ROOT / ".dockerignore", source), source
        path = REPO_ROOT / source
        if path.is_dir():
            shutil.copytree(path, dest / path.name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copyfile(path, dest / path.name)


def test_the_wheel_alone_serves_and_writes_only_under_var(tmp_path: Path) -> None:
    steps = instructions(DOCKERFILE)
    src = tmp_path / "src"
    src.mkdir()
    build_copies = [i.words() for i in steps if i.stage == 0 and i.keyword == "COPY"]
    _copy([s for words in build_copies for s in words[:-1]], src)
    _pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(tmp_path / "wheels"),
         str(src))
    (wheel,) = (tmp_path / "wheels").glob("relay-*.whl")
    site = tmp_path / "site"  # stands for the image's /usr/local: read-only once built
    _pip("install", "--no-deps", "--target", str(site), str(wheel))

    (rules_copy,) = [i.words() for i in steps if i.stage == 1 and i.keyword == "COPY"]
    etc = tmp_path / "etc"
    etc.mkdir()
    _copy(rules_copy[-2:-1], etc)
    rules = etc / "rules"
    before = {"site": _files(site), "rules": _files(rules)}

    workdir = tmp_path / "run"
    relay = RelayProcess(workdir, rules, env={"PYTHONPATH": str(site),
                                              "PYTHONDONTWRITEBYTECODE": "1"})
    where = subprocess.run([sys.executable, "-c", "import relay; print(relay.__file__)"],
                           env=relay.env, cwd=tmp_path, capture_output=True, text=True,
                           timeout=30, check=True).stdout.strip()
    assert Path(where).is_relative_to(site), f"the relay imported is not the wheel's: {where}"
    try:
        relay.start()
        with httpx.Client(timeout=10, trust_env=False) as http:
            script = http.get(relay.url("/r.js"))
            assert script.status_code == 200 and script.headers["etag"]  # package data in
            event = {"event": "page_view", "event_id": "evt_wheel_1",
                     "context": {"page": {"url": "http://127.0.0.1/"}}}
            accepted = http.post(relay.url("/e"), json=event)
            assert accepted.status_code == 202, accepted.text
            assert http.get(relay.admin_url("/readyz")).json()["ready"] is True
        assert relay.stop() == 0
    finally:
        relay.close()
    assert {"site": _files(site), "rules": _files(rules)} == before
    logs = {p.name for p in relay.log_files + relay.out_files}
    written = {p.split("/")[0] for p in _files(workdir)} - logs
    assert written == {"var"}, written
    assert "spool.db" in _files(relay.var_dir)
