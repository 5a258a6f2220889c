from __future__ import annotations

import re
from typing import Any

import pytest

from relay.engine.match import holds, matches, parse_when
from relay.rules.diagnostics import Reporter
from relay.rules.fields import At
from relay.rules.model import Matcher


def parse(value: Any) -> tuple[tuple[Matcher, ...], list[str]]:
    rep = Reporter()
    out = parse_when(At(value, ("destinations", "ga4", "when"), rep))
    return out, [d.render() for d in rep.diagnostics]


def test_parse_spec_example() -> None:
    matchers, errors = parse(
        {"properties.value": {"gt": 0}, "context.country": {"in": ["US", "CA"]}}
    )
    assert errors == []
    assert matchers == (
        Matcher("properties.value", "gt", 0),
        Matcher("context.country", "in", ("US", "CA")),
    )


def test_parse_all_ops_and_shorthands() -> None:
    matchers, errors = parse(
        {
            "event": "purchase",
            "context.country": ["US", "CA"],
            "properties.value": {"gte": 1, "lt": 100.5, "ne": 50},
            "user.email": {"exists": True},
            "context.page.url": {"matches": "^https://shop\\."},
        }
    )
    assert errors == []
    ops = [(m.path, m.op) for m in matchers]
    assert ops == [
        ("event", "eq"),
        ("context.country", "in"),
        ("properties.value", "gte"),
        ("properties.value", "lt"),
        ("properties.value", "ne"),
        ("user.email", "exists"),
        ("context.page.url", "matches"),
    ]
    assert isinstance(matchers[-1].value, re.Pattern)


def test_parse_none_is_empty() -> None:
    assert parse(None) == ((), [])


@pytest.mark.parametrize(
    ("value", "code", "fragment"),
    [
        ({"properties.value": {"gtt": 0}}, "R101", "unknown key 'gtt' (did you mean 'gt'?)"),
        ({"properties.value": {"in": "US"}}, "R102", "expected a list, got a string"),
        ({"properties.value": {"gt": "0"}}, "R102", "expected a number, got a string"),
        ({"properties.value": {"exists": "yes"}}, "R102", "expected true or false"),
        ({"properties.value": {"matches": "("}}, "R107", "invalid regular expression"),
        ({"properties.value": {"eq": {"a": 1}}}, "R102", "expected a string, number"),
        ({"properties.value": {}}, "R104", "needs at least one operator"),
        ({"properties..value": {"gt": 0}}, "R104", "is not a dotted field path"),
        (["x"], "R102", "expected a mapping, got a list"),
    ],
)
def test_parse_errors(value: Any, code: str, fragment: str) -> None:
    _, errors = parse(value)
    assert len(errors) == 1, errors
    assert f" {code} " in errors[0]
    assert fragment in errors[0]
    assert "destinations.ga4.when" in errors[0]


EVENT: dict[str, Any] = {
    "event": "purchase",
    "context": {"country": "US", "page": {"url": "https://shop.example/p"}},
    "properties": {"value": 10, "flag": True, "note": None},
}


@pytest.mark.parametrize(
    ("matcher", "expected"),
    [
        (Matcher("event", "eq", "purchase"), True),
        (Matcher("event", "eq", "page_view"), False),
        (Matcher("event", "ne", "page_view"), True),
        (Matcher("context.country", "in", ("US", "CA")), True),
        (Matcher("context.country", "in", ("DE",)), False),
        (Matcher("properties.value", "gt", 0), True),
        (Matcher("properties.value", "gt", 10), False),
        (Matcher("properties.value", "gte", 10), True),
        (Matcher("properties.value", "lt", 10.5), True),
        (Matcher("properties.value", "lte", 9), False),
        (Matcher("properties.flag", "gt", 0), False),  # booleans are not numbers
        (Matcher("properties.flag", "eq", 1), False),
        (Matcher("properties.flag", "eq", True), True),
        (Matcher("properties.value", "eq", 10.0), True),
        (Matcher("context.page.url", "matches", re.compile(r"shop\.example")), True),
        (Matcher("properties.value", "matches", re.compile("1")), False),  # not a string
        (Matcher("properties.value", "exists", True), True),
        (Matcher("properties.value", "exists", False), False),
        # missing (or null) fields fail everything except exists: false and ne
        (Matcher("properties.missing", "eq", "x"), False),
        (Matcher("properties.missing", "in", ("x",)), False),
        (Matcher("properties.missing", "gt", 0), False),
        (Matcher("properties.missing", "lt", 0), False),
        (Matcher("properties.missing", "matches", re.compile("")), False),
        (Matcher("properties.missing", "exists", True), False),
        (Matcher("properties.missing", "exists", False), True),
        (Matcher("properties.missing", "ne", "x"), True),
        (Matcher("properties.note", "exists", False), True),
        (Matcher("properties.value.deeper", "exists", False), True),
    ],
)
def test_ops(matcher: Matcher, expected: bool) -> None:
    assert holds(matcher, EVENT) is expected


def test_matches_needs_all() -> None:
    assert matches((), EVENT)
    good = Matcher("event", "eq", "purchase")
    bad = Matcher("properties.value", "gt", 100)
    assert matches((good,), EVENT)
    assert not matches((good, bad), EVENT)


def test_parsed_matchers_run() -> None:
    matchers, _ = parse({"properties.value": {"gt": 0}, "context.country": {"in": ["US", "CA"]}})
    assert matches(matchers, EVENT)
    assert not matches(matchers, {**EVENT, "context": {"country": "DE"}})
