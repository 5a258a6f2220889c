"""The references checked at the end of a parse: tests that expect a destination the rules
no longer define get one diagnostic per file and name, not one per case."""

from __future__ import annotations

from pathlib import Path

from relay.registry import check_rules
from relay.rules.diagnostics import dotted

DESTINATIONS = "destinations:\n  lake: {type: log, events: '*'}\n"


def _case(i: int, destination: str) -> str:
    return (f"  - name: case {i}\n"
            f"    given: {{source: browser, event: {{event: page_view, event_id: e{i}}}}}\n"
            f"    expect: {{{destination}: delivered}}\n")


def _check(tmp_path: Path, files: dict[str, str]) -> list[str]:
    (tmp_path / "a.yaml").write_text("sources: {browser: {type: browser}}\n"
                                     "events: {page_view: {}}\n" + DESTINATIONS)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    rules, diagnostics = check_rules(tmp_path, {})
    assert rules is None
    return [d.render() for d in diagnostics]


def test_a_renamed_destination_gives_one_diagnostic_per_test_file(tmp_path: Path) -> None:
    tests = "tests:\n" + "".join(_case(i, "archive") for i in range(5)) + _case(5, "lake")
    more = "tests:\n" + "".join(_case(i, "archive") for i in range(10, 12))
    [first, second] = _check(tmp_path, {"tests.yaml": tests, "zz-more.yaml": more})
    assert first == (
        f"{tmp_path}/tests.yaml:4:14: R206 tests[0].expect.archive: 5 test cases in "
        f"{tmp_path}/tests.yaml expect destination 'archive', which the rules do not define: "
        "the tests are stale (the destinations are lake: rename 'archive' to one of them in "
        "the expect of the cases at lines 4, 7, 10, 13, 16, or remove it there)")
    assert second.startswith(f"{tmp_path}/zz-more.yaml:4:14: R206 tests[6].expect.archive: 2 "
                             f"test cases in {tmp_path}/zz-more.yaml expect destination")


def test_a_near_miss_is_named_as_the_likely_rename(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("destinations:\n  archive2: {type: log, events: '*'}\n")
    tests = "tests:\n" + _case(1, "archive") + _case(2, "archive")
    [line] = _check(tmp_path, {"tests.yaml": tests})
    assert "2 test cases in" in line
    assert "(did you rename it to 'archive2'? then rename it too in the expect of the cases at " \
        "lines 4, 7, or remove it there)" in line


def test_long_lists_of_lines_are_cut_short(tmp_path: Path) -> None:
    tests = "tests:\n" + "".join(_case(i, "archive") for i in range(20))
    [line] = _check(tmp_path, {"tests.yaml": tests})
    assert line.count(", ") < 20 and "..., or remove it there" in line
    assert "20 test cases" in line


def test_one_case_keeps_the_plain_message(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text("tests:\n" + _case(1, "nope"))
    rules, diagnostics = check_rules(tmp_path, {})
    assert rules is None
    assert [(d.code, dotted(d.path), d.message) for d in diagnostics if d.code == "R206"] == [
        ("R206", "tests[0].expect.nope", "unknown destination 'nope'")]
