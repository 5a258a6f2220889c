"""A rules directory with many typical mistakes: every one is reported in one run, at the
exact file, line and column, with its code. The fixture files were written by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.registry import check_rules, load_rules
from relay.rules import RulesError
from relay.rules.diagnostics import dotted

MISTAKES = Path(__file__).resolve().parent / "cases" / "mistakes"

# file, line, column, code, key path, and a piece of the message or hint
EXPECTED = [
    ("01_relay.yaml", 2, 11, "R210", "relay.prefix", "'/t/' is not a path"),
    ("01_relay.yaml", 3, 32, "R106", "relay.cookie.max_age", "'30 minutes' is not a duration"),
    ("01_relay.yaml", 3, 55, "R213", "relay.cookie.same_site", "not Secure"),
    ("01_relay.yaml", 4, 10, "R212", "relay.spool", "sqlite:///relative/path.db"),
    ("02_purposes.yaml", 4, 5, "R101", "purposes.ads.descripton", "did you mean 'description'?"),
    ("02_purposes.yaml", 5, 15, "R220", "purposes.ads.default.eu", "write it in capitals: 'EU'"),
    ("03_sources.yaml", 3, 41, "R003", "sources.backend.auth.hmac", "MISTAKES_UNSET_SECRET"),
    ("03_sources.yaml", 4, 9, "R226", "sources.apps", "needs write_keys"),
    ("04_events.yaml", 7, 34, "R232", "events.purchase.properties.value.min", "min 10 is greater"),
    ("04_events.yaml", 8, 41, "R107", "events.purchase.properties.currency.pattern",
     "invalid regular expression"),
    ("04_events.yaml", 9, 20, "R231", "events.purchase.properties.note.type",
     "did you mean 'string'?"),
    ("05_pipelines.yaml", 5, 7, "R207", "pipelines.minimize[2].hashh", "did you mean 'hash'?"),
    ("06_destinations.yaml", 4, 14, "R204", "destinations.ga4.purpose",
     "unknown purpose 'analytic' (did you mean 'analytics'?)"),
    ("06_destinations.yaml", 5, 25, "R205", "destinations.ga4.events[1]",
     "did you mean 'purchase'?"),
    ("06_destinations.yaml", 8, 23, "R102", "destinations.ga4.retry.attempts",
     "expected a whole number, got a string"),
    ("06_destinations.yaml", 14, 11, "R208", "destinations.meta.type",
     "did you mean 'meta_capi'? known types: file, "),
    ("06_destinations.yaml", 17, 5, "R103", "destinations.sink", "missing required key 'type'"),
    ("07_broken.yaml", 3, 11, "R001", "", "mapping values are not allowed"),
    ("08_tests.yaml", 4, 19, "R270", "tests[0].expect.ga4", "did you mean 'suppressed'?"),
    ("09_more.yaml", 2, 3, "R002", "destinations.archive", "06_destinations.yaml:9:3"),
    ("09_more.yaml", 3, 1, "R201", "destination", "did you mean 'destinations'?"),
]


def test_every_mistake_is_reported_in_one_run_at_its_place() -> None:
    rules, diagnostics = check_rules(MISTAKES, {})
    assert rules is None
    got = [
        (Path(d.mark.file).name, d.mark.line, d.mark.col, d.code, dotted(d.path))
        for d in diagnostics
    ]
    assert got == [e[:5] for e in EXPECTED]
    assert len({e[3] for e in EXPECTED}) >= 12  # at least a dozen different mistakes
    for d, expected in zip(diagnostics, EXPECTED, strict=True):
        assert expected[5] in d.render(), d.render()
        assert d.severity == "error"


def test_the_spec_example_message_renders_as_documented() -> None:
    _, diagnostics = check_rules(MISTAKES, {})
    line = next(d.render() for d in diagnostics if d.code == "R204")
    assert line == (
        f"{MISTAKES / '06_destinations.yaml'}:4:14: R204 destinations.ga4.purpose: "
        "unknown purpose 'analytic' (did you mean 'analytics'?)"
    )


def test_load_rules_raises_with_all_errors_sorted() -> None:
    with pytest.raises(RulesError) as info:
        load_rules(MISTAKES, {})
    marks = [(d.mark.file, d.mark.line, d.mark.col) for d in info.value.diagnostics]
    assert marks == sorted(marks)
    assert len(info.value.diagnostics) == len(EXPECTED)
    assert str(info.value).count("\n") == len(EXPECTED) - 1
