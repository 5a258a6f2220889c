"""`relay test` on the shipped rules, and what a failing case shows."""

from __future__ import annotations

from pathlib import Path

from relay.cli import main
from relay.registry import load_rules
from relay.testing import run_tests
from tests.conftest import SHIPPED_RULES


async def test_shipped_rules_tests_pass() -> None:
    rules = load_rules(SHIPPED_RULES, {})
    results = await run_tests(rules)
    assert results and all(r.passed for r in results), [r.failures for r in results if r.failures]


def test_failing_case_shows_a_diff(rules_dir: Path, capsys: object) -> None:
    (rules_dir / "zz-extra-tests.yaml").write_text(
        "tests:\n"
        "  - name: wrong on purpose\n"
        "    given: {source: browser, headers: {CF-IPCountry: US},\n"
        "            event: {event: page_view, event_id: x}}\n"
        "    expect: {archive: {outcome: delivered, fields: {context.ip: 1.2.3.4}}}\n"
    )
    assert main(["test", "--rules", str(rules_dir)]) == 1
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "FAIL wrong on purpose" in out
    assert '- expected "1.2.3.4"' in out and '+ sent     "192.0.2.0"' in out


def test_check_cli(rules_dir: Path, capsys: object) -> None:
    assert main(["check", "--rules", str(rules_dir)]) == 0
    (rules_dir / "bad.yaml").write_text("destinations:\n  extra: {type: file, purpose: analytic}\n")
    assert main(["check", "--rules", str(rules_dir)]) == 1
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert "bad.yaml:2:" in err and "did you mean 'analytics'" in err
