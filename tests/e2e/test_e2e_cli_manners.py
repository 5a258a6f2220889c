"""CLI manners with the real command: ``relay dlq purge`` asks on a terminal (a pty here)
and needs ``--yes`` without one; ``relay dlq list`` shows ISO-8601 times; ``relay serve
--workers N`` on in-memory state refuses to start; a destination renamed without its tests
gives one diagnostic."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import yaml

from .conftest import MakeRelay, MakeVendor
from .relayproc import SHIPPED_RULES, RelayProcess, free_port, relay_env, run_cli
from .rulesdir import edit, make_rules, webhook
from .wire import client, page_view, post_browser, wait_until


def _dead_letters(relays: MakeRelay, vendors: MakeVendor, n: int) -> RelayProcess:
    vendor = vendors(name="strict")
    vendor.respond(400, body=b'{"error":"e2e-vendor: no"}')
    relay = relays(destinations={"strict": webhook(vendor)})
    with client() as http:
        r = post_browser(http, relay, [page_view() for _ in range(n)])
        assert r.status_code == 202, r.text
        wait_until(lambda: len(http.get(relay.admin_url("/dlq")).json()) == n, 15,
                   f"{n} dead letters")
        iso = http.get(relay.admin_url("/dlq")).json()[0]["failed_at_iso"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", iso), iso
    return relay


def _purge_on_a_terminal(relay: RelayProcess, answer: bytes) -> tuple[int, str, str]:
    """``relay dlq purge`` with a pseudo-terminal on stdin, answering ``answer``."""
    controller, terminal = pty.openpty()
    argv = [sys.executable, "-m", "relay", "dlq", "purge", "--rules", str(relay.rules_dir)]
    env = relay_env({k: v for k, v in relay.env.items() if k.startswith("RELAY_")})
    proc = subprocess.Popen(argv, cwd=relay.workdir, env=env, stdin=terminal,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.close(terminal)
    try:
        os.write(controller, answer)
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(controller)
    return proc.returncode, out.decode(), err.decode()


def test_dlq_purge_asks_first(relays: MakeRelay, vendors: MakeVendor) -> None:
    relay = _dead_letters(relays, vendors, 3)
    listed = relay.cli("dlq", "list")
    assert listed.returncode == 0, listed.stderr
    for line in listed.stdout.splitlines():
        letter = json.loads(line)
        assert letter["failed_at_iso"].endswith("Z") and isinstance(letter["failed_at"], float)

    done = relay.cli("dlq", "purge")  # no terminal, no --yes
    assert done.returncode == 1, done.stdout + done.stderr
    assert "pass --yes to purge without asking" in done.stderr and done.stdout == ""

    code, out, err = _purge_on_a_terminal(relay, b"n\n")
    assert code == 1 and "purge 3 dead letter(s) of all destinations? [y/N]" in err, err
    assert "nothing purged" in err and out == ""
    code, out, err = _purge_on_a_terminal(relay, b"y\n")
    assert code == 0, err
    assert "purge 3 dead letter(s) of all destinations? [y/N]" in err
    assert out == "purged 3 dead letter(s)\n"
    with client() as http:
        assert http.get(relay.admin_url("/dlq")).json() == []


def test_dlq_purge_yes_does_not_ask(relays: MakeRelay, vendors: MakeVendor) -> None:
    relay = _dead_letters(relays, vendors, 2)
    done = relay.cli("dlq", "purge", "--destination", "strict", "--yes")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "purged 2 dead letter(s) through the running relay\n"
    assert "[y/N]" not in done.stderr


def test_serve_with_workers_on_memory_state_refuses(tmp_path: Path) -> None:
    done = run_cli(["serve", "--rules", str(SHIPPED_RULES), "--workers", "2",
                    "--port", str(free_port()), "--admin-port", str(free_port())],
                   cwd=tmp_path, timeout=30)
    assert done.returncode == 1, done.stdout + done.stderr
    [line] = done.stderr.splitlines()
    assert "--workers 2 needs shared state, and relay.state is memory" in line
    assert "set RELAY_STATE=redis://127.0.0.1:6379/0" in line


def test_renaming_a_destination_without_its_tests_is_one_diagnostic(tmp_path: Path) -> None:
    rules = make_rules(tmp_path / "rules")

    def rename(tree: dict[str, object]) -> None:
        dests = tree["destinations"]
        assert isinstance(dests, dict)
        dests["lake"] = dests.pop("archive")

    edit(rules / "destinations.yaml", rename)
    cases = yaml.safe_load((rules / "tests.yaml").read_text())["tests"]
    stale = sum(1 for case in cases if "archive" in case["expect"])
    assert stale > 5
    done = run_cli(["check", "--rules", str(rules)], cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and lines[1] == f"{rules}: 1 error(s)", done.stderr
    assert re.match(rf"^\S*tests\.yaml:\d+:\d+: R206 tests\[0\]\.expect\.archive: {stale} test "
                    rf"cases in \S*tests\.yaml expect destination 'archive', which the rules do "
                    "not define: the tests are stale", lines[0]), lines[0]
    assert "rename 'archive' to one of them" in lines[0] and "lake" in lines[0]
