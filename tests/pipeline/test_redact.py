from __future__ import annotations

from typing import Any

import pytest

from relay.pipeline import redact
from relay.rules.diagnostics import Reporter
from relay.rules.fields import At
from relay.types import StepContext

HASHED = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"


def parse(value: Any) -> tuple[redact.RedactOptions, list[str]]:
    rep = Reporter()
    opts = redact.parse(At(value, ("pipelines", "p", 6, "redact"), rep))
    return opts, [d.render() for d in rep.diagnostics]


def test_parse() -> None:
    assert parse("free_text") == (redact.RedactOptions(), [])
    _, errors = parse("freetext")
    assert "did you mean 'free_text'?" in errors[0]


def test_apply_scope_and_counts() -> None:
    event: dict[str, Any] = {
        "event": "contact ann@example.com",  # never touched
        "event_id": "evt_5550100000123",
        "time": "2026-11-28T12:00:00.000Z",
        "correlation_id": "ann@example.com",
        "user": {"email": HASHED, "note": "ann@example.com", "ids": ["+1 555 010 0000"]},
        "properties": {
            "message": "reach me at ann@example.com or +1 555 010 0000",
            "nested": {"items": [{"text": "card 4111111111111111"}]},
            "value": 5550100000,
        },
        "context": {
            "page": {
                "url": "https://a.example/?email=ann%40example.com",
                "title": "Order for ann@example.com",
                "referrer": "https://b.example/",
            },
            "campaign": {"content": "ann@example.com"},
            "ip": "1.2.3.4",
        },
    }
    ctx = StepContext("d")
    out = redact.apply(event, redact.RedactOptions(), ctx)
    assert out["event"] == "contact ann@example.com"
    assert out["event_id"] == "evt_5550100000123"
    assert out["correlation_id"] == "ann@example.com"
    assert out["user"] == {"email": HASHED, "note": "[email]", "ids": ["[phone]"]}
    assert out["properties"] == {
        "message": "reach me at [email] or [phone]",
        "nested": {"items": [{"text": "card [card]"}]},
        "value": 5550100000,  # numbers are not free text
    }
    assert out["context"]["page"] == {
        "url": "https://a.example/?email=[email]",
        "title": "Order for [email]",
        "referrer": "https://b.example/",
    }
    assert out["context"]["campaign"] == {"content": "[email]"}
    assert ctx.counts == {"redact": 8}
    assert "redacted 1 email, 1 phone in properties.message" in ctx.notes
    assert "redacted 1 card in properties.nested.items[0].text" in ctx.notes
    assert all("ann" not in note and "555" not in note for note in ctx.notes)


@pytest.mark.parametrize(
    ("tree", "plain"),
    [
        ({"section": "shoes", "items": 3, "price": 89.9, "ab": "variant-b"}, True),
        ([{"id": "u_1042"}, "size 42", None], True),
        ({"a": ["x", {"b": "ann@example.com"}]}, False),
        ({"a": "ann%40example.com"}, False),
        ({"a": "line\n5550100000"}, False),  # JSON writes \n: a lookbehind would miss these
        ({"a": "tab\t4111111111111111"}, False),
        ({"a": "1234567890"}, False),  # maybe: the walk decides it is an id
        ({"a": "on 2026-11-28 12:00"}, False),  # maybe: the walk decides it is a date
        ({"n": 5550100000}, False),  # a number: errs toward walking
        ({1: "x"}, False),  # orjson refuses non-string keys: walked
        ({"big": 2**70}, False),
    ],
)
def test_plain_json(tree: Any, plain: bool) -> None:
    assert redact.plain_json(tree) is plain


def test_apply_walks_what_plain_json_cannot_clear() -> None:
    event: dict[str, Any] = {
        "properties": {
            "note": "line\n5550100000",
            "tab": "paid\t4111111111111111",
            "short": "a@b.cd",  # the shortest email still looked at
            "odd": {1: "ann@example.com"},
            "big": [2**70, "call +1 555 010 0000"],
            "plain": "shoes",
        },
        "user": {"email": HASHED, "note": "ann%40example.com"},
        "context": {"campaign": {"content": "x%40y.io"}, "page": {"title": "Blue shoes"}},
    }
    ctx = StepContext("d")
    out = redact.apply(event, redact.RedactOptions(), ctx)
    assert out["properties"] == {
        "note": "line\n[phone]",
        "tab": "paid\t[card]",
        "short": "[email]",
        "odd": {1: "[email]"},
        "big": [2**70, "call [phone]"],
        "plain": "shoes",
    }
    assert out["user"] == {"email": HASHED, "note": "[email]"}
    assert out["context"] == {
        "campaign": {"content": "[email]"},
        "page": {"title": "Blue shoes"},
    }
    assert ctx.counts == {"redact": 7}
    assert ctx.notes == [
        "redacted 1 phone in properties.note",
        "redacted 1 card in properties.tab",
        "redacted 1 email in properties.short",
        "redacted 1 email in properties.odd[1]",
        "redacted 1 phone in properties.big[1]",
        "redacted 1 email in user.note",
        "redacted 1 email in context.campaign.content",
    ]
