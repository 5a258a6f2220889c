from __future__ import annotations

import hashlib
from typing import Any

import pytest

from relay.pipeline import hash as hash_step
from relay.rules.diagnostics import Reporter
from relay.rules.fields import At
from relay.types import StepContext

# Known vector (Google Ads / Meta enhanced-conversions documentation style).
JOHN_SMITH = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"


def parse(value: Any) -> tuple[hash_step.HashOptions, list[str]]:
    rep = Reporter()
    opts = hash_step.parse(At(value, ("pipelines", "p", 5, "hash"), rep))
    return opts, [d.render() for d in rep.diagnostics]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def run(user: dict[str, Any], *paths: str) -> tuple[dict[str, Any], StepContext]:
    ctx = StepContext("d")
    out = hash_step.apply({"event": "e", "user": user}, hash_step.HashOptions(paths), ctx)
    return out, ctx


def test_parse() -> None:
    assert parse(["user.email", "user.phone"]) == (
        hash_step.HashOptions(("user.email", "user.phone")),
        [],
    )
    assert parse("user.email") == (hash_step.HashOptions(("user.email",)), [])
    opts, errors = parse(["user.email", "user..phone", True])
    assert opts.paths == ("user.email",)
    assert "R104 pipelines.p[5].hash[1]: 'user..phone' is not a dotted field path" in errors[0]
    assert len(errors) == 2
    _, errors = parse({"user.email": True})
    assert "R102" in errors[0]


def test_email_vector() -> None:
    out, ctx = run({"email": "john_smith@gmail.com"}, "user.email")
    assert out["user"]["email"] == JOHN_SMITH
    out, _ = run({"email": "  John_Smith@GMAIL.com "}, "user.email")
    assert out["user"]["email"] == JOHN_SMITH
    assert ctx.counts == {"hash": 1}
    assert ctx.notes == ["hashed user.email"]


@pytest.mark.parametrize(
    ("phone", "normalized"),
    [
        ("+1 (555) 010-0000", "+15550100000"),
        ("+44 20 7946 0958", "+442079460958"),
        ("555.010.0000", "5550100000"),
        (15550100000, "15550100000"),
    ],
)
def test_phone_normalization(phone: Any, normalized: str) -> None:
    out, _ = run({"phone": phone}, "user.phone")
    assert out["user"]["phone"] == sha(normalized)


def test_other_fields_are_trimmed_and_lowercased() -> None:
    out, _ = run({"first_name": " Ann "}, "user.first_name")
    assert out["user"]["first_name"] == sha("ann")


def test_already_hashed_values_are_left_alone() -> None:
    upper = JOHN_SMITH.upper()
    out, ctx = run({"email": JOHN_SMITH, "phone": upper}, "user.email", "user.phone")
    assert out["user"] == {"email": JOHN_SMITH, "phone": upper}
    assert ctx.counts == {}


def test_values_that_cannot_be_hashed_are_removed() -> None:
    out, ctx = run(
        {"email": {"a": "x@y.z"}, "phone": "  ", "id": True}, "user.email", "user.phone", "user.id"
    )
    assert out["user"] == {}
    assert ctx.counts == {"hash": 3}


def test_missing_fields_are_skipped() -> None:
    out, ctx = run({"id": "u1", "email": None}, "user.email", "user.phone", "properties.x.y")
    assert out["user"] == {"id": "u1", "email": None}
    assert ctx.counts == {}


def test_top_level_path() -> None:
    ctx = StepContext("d")
    out = hash_step.apply({"anonymous_id": "A1"}, hash_step.HashOptions(("anonymous_id",)), ctx)
    assert out["anonymous_id"] == sha("a1")
