from __future__ import annotations

from typing import Any

from relay.pipeline import fields
from relay.rules.diagnostics import Reporter
from relay.rules.fields import At
from relay.types import StepContext


def at(value: Any, step: str) -> tuple[At, Reporter]:
    rep = Reporter()
    return At(value, ("pipelines", "p", 7, step), rep), rep


def event() -> dict[str, Any]:
    return {
        "event": "purchase",
        "event_id": "e1",
        "time": "2026-11-28T12:00:00.000Z",
        "source": "backend",
        "received_at": "2026-11-28T12:00:01.000Z",
        "schema": 2,
        "consent": {"ads": "granted"},
        "correlation_id": "c1",
        "user": {"id": "u1", "email": "a@b.example"},
        "context": {"page": {"url": "https://a/", "title": "T"}, "ip": "1.2.3.4"},
        "properties": {"value": 1, "currency": "EUR", "internal_note": "n"},
    }


def test_parse_drop_and_allow() -> None:
    a, rep = at(["properties.internal_note", "user"], "drop")
    assert fields.parse_drop(a) == fields.DropOptions(("properties.internal_note", "user"))
    a, rep = at("user.id", "allow")
    assert fields.parse_allow(a) == fields.AllowOptions(("user.id",))
    assert rep.diagnostics == []
    a, rep = at(None, "drop")
    fields.parse_drop(a)
    assert rep.diagnostics[0].code == "R103"
    a, rep = at(["a.", ""], "drop")
    fields.parse_drop(a)
    assert [d.code for d in rep.diagnostics] == ["R104", "R104"]


def test_drop() -> None:
    ctx = StepContext("d")
    opts = fields.DropOptions(("properties.internal_note", "user.email", "missing.path"))
    out = fields.apply_drop(event(), opts, ctx)
    assert "internal_note" not in out["properties"]
    assert out["user"] == {"id": "u1"}
    assert ctx.counts == {"drop": 2}
    assert ctx.notes == ["dropped properties.internal_note", "dropped user.email"]


def test_allow_keeps_only_listed_and_envelope_keys() -> None:
    ctx = StepContext("d")
    opts = fields.AllowOptions(("properties.value", "context.page.url", "user.id.deeper"))
    out = fields.apply_allow(event(), opts, ctx)
    assert out == {
        "event": "purchase",
        "event_id": "e1",
        "time": "2026-11-28T12:00:00.000Z",
        "source": "backend",
        "received_at": "2026-11-28T12:00:01.000Z",
        "schema": 2,
        "consent": {"ads": "granted"},
        "context": {"page": {"url": "https://a/"}},
        "properties": {"value": 1},
    }
    removed = {
        "correlation_id",
        "user.id",
        "user.email",
        "context.page.title",
        "context.ip",
        "properties.currency",
        "properties.internal_note",
    }
    assert ctx.counts == {"allow": len(removed)}
    assert all(path in ctx.notes[0] for path in removed)


def test_allow_whole_subtree() -> None:
    opts = fields.AllowOptions(("properties", "properties.value"))
    out = fields.apply_allow(event(), opts, StepContext("d"))
    assert out["properties"] == event()["properties"]
    opts = fields.AllowOptions(("properties.value", "properties"))
    out = fields.apply_allow(event(), opts, StepContext("d"))
    assert out["properties"] == event()["properties"]


def test_allow_note_is_bounded() -> None:
    ctx = StepContext("d")
    big = {"event": "e", "properties": {f"p{i}": i for i in range(30)}}
    fields.apply_allow(big, fields.AllowOptions(()), ctx)
    assert ctx.counts == {"allow": 1}
    ctx = StepContext("d")
    fields.apply_allow(big, fields.AllowOptions(("properties.none",)), ctx)
    assert ctx.counts == {"allow": 30}
    assert ctx.notes[0].endswith("and 20 more")


def test_set() -> None:
    a, rep = at({"properties.currency": "USD", "context.app": {"name": "shop"}}, "set")
    opts = fields.parse_set(a)
    assert rep.diagnostics == []
    ctx = StepContext("d")
    first = fields.apply_set(event(), opts, ctx)
    second = fields.apply_set(event(), opts, ctx)
    assert first["properties"]["currency"] == "USD"
    assert first["context"]["app"] == {"name": "shop"}
    first["context"]["app"]["name"] = "changed"
    assert second["context"]["app"] == {"name": "shop"}  # values are not shared
    assert ctx.counts == {}


def test_set_errors() -> None:
    a, rep = at({"a..b": 1}, "set")
    assert fields.parse_set(a) == fields.SetOptions(())
    assert rep.diagnostics[0].code == "R104"
    a, rep = at(["x"], "set")
    fields.parse_set(a)
    assert rep.diagnostics[0].code == "R102"
