from __future__ import annotations

from typing import Any

import pytest

from relay.pipeline import click_ids
from relay.rules.diagnostics import Reporter
from relay.rules.fields import At
from relay.types import StepContext


def parse(value: Any) -> tuple[click_ids.ClickIdsOptions, list[str]]:
    rep = Reporter()
    opts = click_ids.parse(At(value, ("pipelines", "p", 4, "click_ids"), rep))
    return opts, [d.render() for d in rep.diagnostics]


def event() -> dict[str, Any]:
    return {
        "event": "purchase",
        "context": {
            "page": {"url": "https://a.example/?gclid=G1&x=1", "referrer": "https://r/?fbclid=F"},
            "click_ids": {"gclid": "G1", "fbclid": "F"},
        },
    }


def test_parse() -> None:
    assert parse({"keep_for": "ads"}) == (click_ids.ClickIdsOptions("ads"), [])
    assert parse("drop") == (click_ids.ClickIdsOptions(None), [])


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("keep", "R105"),
        ({"keep": "ads"}, "R101"),
        ({}, "R103"),
        (None, "R103"),
        ({"keep_for": ["ads"]}, "R102"),
    ],
)
def test_parse_errors(value: Any, fragment: str) -> None:
    _, errors = parse(value)
    assert any(fragment in e for e in errors), errors


def test_kept_when_the_purpose_is_granted() -> None:
    ctx = StepContext("d", granted=frozenset({"ads", "analytics"}))
    out = click_ids.apply(event(), click_ids.ClickIdsOptions("ads"), ctx)
    assert out == event()
    assert ctx.counts == {}


def test_removed_when_the_purpose_is_not_granted() -> None:
    ctx = StepContext("d", granted=frozenset({"analytics"}))
    out = click_ids.apply(event(), click_ids.ClickIdsOptions("ads"), ctx)
    assert "click_ids" not in out["context"]
    assert out["context"]["page"] == {"url": "https://a.example/?x=1", "referrer": "https://r/"}
    assert ctx.counts == {"click_ids": 4}
    assert ctx.notes[0] == "removed context.click_ids (ads not granted)"
    assert "G1" not in str(out) and "F" not in str(out["context"])


def test_drop() -> None:
    ctx = StepContext("d", granted=frozenset({"ads"}))
    out = click_ids.apply(event(), click_ids.ClickIdsOptions(None), ctx)
    assert "click_ids" not in out["context"]
    assert ctx.counts["click_ids"] == 4


def test_no_click_ids() -> None:
    ctx = StepContext("d")
    assert click_ids.apply({"event": "e"}, click_ids.ClickIdsOptions("ads"), ctx) == {"event": "e"}
    assert ctx.counts == {}


def test_names_compare_decoded_and_lowercase() -> None:
    ctx = StepContext("d", granted=frozenset({"analytics"}))
    event = {
        "context": {
            "page": {
                "url": "https://a.example/?GCLID=1&x=2",
                "referrer": "https://r.example/?gcl%69d=1&FbClId=2&q=a+b",
                "search": "?q=gclid+fbclid",  # in a value only: stays
            }
        }
    }
    out = click_ids.apply(event, click_ids.ClickIdsOptions("ads"), ctx)
    assert out["context"]["page"] == {
        "url": "https://a.example/?x=2",
        "referrer": "https://r.example/?q=a+b",
        "search": "?q=gclid+fbclid",
    }
    assert ctx.counts == {"click_ids": 3}
