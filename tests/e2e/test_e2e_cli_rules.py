"""The shipped rules pass ``relay check`` and ``relay test``, run as the CLI a user runs, and
a broken copy fails ``relay check`` with ``file:line:col`` diagnostics."""

from __future__ import annotations

import re
from pathlib import Path

from .relayproc import SHIPPED_RULES, run_cli
from .rulesdir import edit, make_rules


def test_relay_check_passes_on_the_shipped_rules(tmp_path: Path) -> None:
    done = run_cli(["check", "--rules", str(SHIPPED_RULES)], cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^ok: \d+ file\(s\), \d+ destination\(s\), \d+ test\(s\), rules version "
                     r"[0-9a-f]+$", done.stdout, re.M), done.stdout


def test_relay_test_passes_on_the_shipped_rules(tmp_path: Path) -> None:
    done = run_cli(["test", "--rules", str(SHIPPED_RULES)], cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    m = re.search(r"^(\d+) passed, (\d+) failed$", done.stdout, re.M)
    assert m, done.stdout
    assert int(m.group(1)) > 0 and m.group(2) == "0", done.stdout
    assert "FAIL" not in done.stdout


def test_relay_check_reports_a_broken_rule_with_its_place(tmp_path: Path) -> None:
    rules = make_rules(tmp_path / "rules")

    def typo(tree: dict[str, object]) -> None:
        dests = tree["destinations"]
        assert isinstance(dests, dict)
        dests["archive"]["purpose"] = "analytic"

    edit(rules / "destinations.yaml", typo)
    done = run_cli(["check", "--rules", str(rules)], cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    line = next((ln for ln in done.stderr.splitlines() if "destinations.archive.purpose" in ln), "")
    assert re.match(r"^\S*destinations\.yaml:\d+:\d+: ", line), done.stderr
    assert "analytic" in line and "analytics" in line, line  # the near miss is suggested


def test_relay_test_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    rules = make_rules(tmp_path / "rules", tests=[{
        "name": "e2e: a US page view is suppressed (wrong on purpose)",
        "given": {"source": "browser", "headers": {"CF-IPCountry": "US"},
                  "event": {"event": "page_view", "event_id": "e2e-wrong-1"}},
        "expect": {"archive": "suppressed"},
    }])
    done = run_cli(["test", "--rules", str(rules)], cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL e2e: a US page view is suppressed" in done.stdout, done.stdout
    assert "archive: expected suppressed, got delivered" in done.stdout, done.stdout


def test_relay_check_strict_fails_on_the_shipped_example_secret(tmp_path: Path) -> None:
    unset = {"BACKEND_SIGNING_SECRET": ""}
    done = run_cli(["check", "--rules", str(SHIPPED_RULES)], cwd=tmp_path, env=unset)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " R301 sources.backend.auth.hmac: " in done.stdout, done.stdout  # a warning
    done = run_cli(["check", "--strict", "--rules", str(SHIPPED_RULES)], cwd=tmp_path, env=unset)
    assert done.returncode == 1, done.stdout + done.stderr
    [line] = [ln for ln in done.stderr.splitlines() if " R301 " in ln]
    assert re.match(r"^\S*sources\.yaml:\d+:\d+: R301 sources\.backend\.auth\.hmac: ", line), line
    assert "set BACKEND_SIGNING_SECRET to" in line, line
    done = run_cli(["check", "--strict", "--rules", str(SHIPPED_RULES)], cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr  # with the variable set: clean
