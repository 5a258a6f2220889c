"""The ``tests:`` section: cases written inside the rules, run by ``relay test``."""

from __future__ import annotations

from typing import Any, cast

from relay.rules.codes import (
    BAD_FIELD_PATH,
    DUPLICATE_TEST,
    FIELDS_NOT_DELIVERED,
    NO_EXPECTATION,
    UNKNOWN_OUTCOME,
)
from relay.rules.diagnostics import suggest
from relay.rules.fields import BAD_VALUE, MISSING_KEY, At
from relay.rules.model import OUTCOMES, Expectation, Given, RuleTest
from relay.rules.reader import Reader

TEST_KEYS = ("name", "given", "expect")
GIVEN_KEYS = ("source", "headers", "event")


def tests(r: Reader, section: At) -> tuple[RuleTest, ...]:
    out: list[RuleTest] = []
    names: set[str] = set()
    for at in section.items() if section.present else ():
        if at.mapping(TEST_KEYS, TEST_KEYS) is None:
            continue
        name = at.get("name").string()
        if name is not None and name in names:
            at.get("name").error(DUPLICATE_TEST, f"two tests are named '{name}'",
                                 "give each test its own name")
        names.add(name or "")
        given_at = at.get("given")
        items = given_at.items() if isinstance(given_at.value, list) else [given_at]
        if not items:
            given_at.error(BAD_VALUE, "given needs at least one event")
        given = [g for g in (_given(r, i) for i in items if i.present) if g is not None]
        expect = _expect(r, at.get("expect"))
        if name is not None and expect is not None and len(given) == len(items):
            out.append(RuleTest(name, tuple(given), expect, at.path))
    return tuple(out)


def _given(r: Reader, at: At) -> Given | None:
    if at.mapping(GIVEN_KEYS, ("source", "event")) is None:
        return None
    source = r.ref("source", at.get("source"))
    headers: dict[str, str] = {}
    header_at = at.get("headers")
    for key, value in (header_at.mapping() or {}).items() if header_at.present else ():
        text = value.string(allow_empty=True)
        if text is not None:
            headers[key] = text
    event = at.get("event")
    if not isinstance(event.value, dict):
        event.wrong_type("a mapping (the event envelope)")
        return None
    return Given(source, event.value, headers) if source is not None else None


def _expect(r: Reader, at: At) -> dict[str, Expectation] | None:
    entries = at.mapping()
    if entries is None:
        return None
    if not entries:
        at.error(NO_EXPECTATION, "the test expects nothing",
                 "name each destination and its outcome, like {ga4: delivered}")
        return None
    out: dict[str, Expectation] = {}
    for destination, child in entries.items():
        r.refer("destination", destination, child, key=True)
        outcome_at, fields = child, None
        if isinstance(child.value, dict):
            if child.mapping(("outcome", "fields"), ("outcome",)) is None:
                continue
            outcome_at = child.get("outcome")
            fields = _expected_fields(r, child.get("fields"))
        outcome = outcome_at.string()
        if outcome is not None and outcome not in OUTCOMES:
            outcome_at.error(UNKNOWN_OUTCOME, f"unknown outcome '{outcome}'",
                             suggest(outcome, OUTCOMES) or r.options(OUTCOMES))
            continue
        if outcome is None:
            if not outcome_at.present:
                child.error(MISSING_KEY, "missing the expected outcome")
            continue
        if fields is not None and outcome != "delivered":
            r.rep.error(child.get("fields").path, FIELDS_NOT_DELIVERED,
                        f"fields can only be checked on a delivered copy, not {outcome}",
                        "remove fields or expect delivered", key=True)
        out[destination] = Expectation(cast(Any, outcome), fields)
    return out


def _expected_fields(r: Reader, at: At) -> dict[str, Any] | None:
    if not at.present:
        return None
    out: dict[str, Any] = {}
    for path, child in (at.mapping() or {}).items():
        if r.is_dotted(path):
            out[path] = child.value
        else:
            r.rep.error(child.path, BAD_FIELD_PATH, f"'{path}' is not a dotted field path",
                        "like properties.value", key=True)
    return out
