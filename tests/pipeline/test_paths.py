"""Each step's ``paths`` is a faithful model of its ``apply``: on an event that has every
field, every field ``apply`` leaves is in ``paths``'s set (hashed exactly where ``apply``
hashed it), and every field ``paths`` names (but for ``*``) is in what ``apply`` left."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from relay.fieldset import FieldSet, Leaf
from relay.personal import HEX64
from relay.pipeline import STEPS
from relay.rules.diagnostics import Reporter
from relay.rules.fields import At
from relay.types import StepContext

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/126.0.0.0 Safari/537.36")
EVENT: dict[str, Any] = {
    "event": "purchase", "event_id": "e1", "time": "2026-11-28T12:00:00.000Z",
    "source": "browser", "received_at": "2026-11-28T12:00:00.000Z", "schema": 1,
    "consent": {"ads": "granted"}, "correlation_id": "c1", "anonymous_id": "a1",
    "user": {"id": "u_42", "email": "Ann@Example.com", "phone": "+1 (555) 010-0000",
             "address": {"city": "Paris", "country": "FR"}},
    "context": {
        "ip": "203.0.113.77", "user_agent": CHROME, "country": "US", "gpc": False,
        "page": {"url": "https://shop.example/p?utm_source=news&utm_medium=mail&utm_campaign=bf"
                        "&utm_term=shoes&utm_content=top&utm_x=1&gclid=g1&q=2",
                 "referrer": "https://search.example/?q=shoes", "title": "Shoes",
                 "search": "?utm_medium=mail"},
        "click_ids": {"gclid": "g1"}, "device": {"model": "x"},
    },
    "properties": {"order_id": "O1", "value": 10, "note": "call ann@example.com",
                   "items": [{"sku": "s1"}]},
}
CASES: list[tuple[str, Any, frozenset[str]]] = [
    ("ip", "strip", frozenset()), ("ip", "truncate", frozenset()), ("ip", "keep", frozenset()),
    ("user_agent", "device", frozenset()), ("user_agent", "drop", frozenset()),
    ("user_agent", "keep", frozenset()),
    ("url", {"keep_params": ["utm_source"]}, frozenset()),
    ("url", {"drop_params": ["q"]}, frozenset()), ("url", "strip_query", frozenset()),
    ("utm", "collapse", frozenset()), ("utm", "drop", frozenset()),
    ("click_ids", "drop", frozenset()), ("click_ids", {"keep_for": "ads"}, frozenset({"ads"})),
    ("hash", ["user.email", "user.phone", "user.nope"], frozenset()),
    ("redact", "free_text", frozenset()),
    ("drop", ["user.email", "context.page", "nope.x"], frozenset()),
    ("allow", ["properties.value", "context.page.url", "user", "context.nope"], frozenset()),
    ("set", {"properties.currency": "EUR", "context.app": {"name": "shop"}, "user.email": "x"},
     frozenset()),
]


def leaves(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The paths of ``value``'s fields; a list is one field (paths do not index lists)."""
    if isinstance(value, dict) and value:
        return [p for k, v in value.items() for p in leaves(v, (*prefix, k))]
    return [prefix]


def _value(event: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        event = event.get(key) if isinstance(event, dict) else None
    return event


@pytest.mark.parametrize(("kind", "value", "granted"), CASES,
                         ids=[f"{k}:{v}" for k, v, _ in CASES])
def test_paths_models_apply(kind: str, value: Any, granted: frozenset[str]) -> None:
    step = STEPS[kind]
    rep = Reporter()
    options = step.parse(At(value, (), rep))
    assert rep.diagnostics == []
    before = FieldSet.of(".".join(p) for p in leaves(EVENT))
    modelled = step.paths(before, options)
    out = step.apply(copy.deepcopy(EVENT), options, StepContext("d", granted))
    assert out is not None
    for path in leaves(out):
        dotted = ".".join(path)
        node = modelled.get(dotted)
        assert node is not None, f"{kind}: apply leaves {dotted}, paths says it is gone"
        was, now = _value(EVENT, path), _value(out, path)
        hashed = isinstance(now, str) and bool(HEX64.fullmatch(now)) and now != was
        assert isinstance(node, Leaf) or not hashed, dotted
        assert getattr(node, "hashed", False) == hashed, f"{kind}: {dotted} hashed: {hashed}"
    for dotted, _ in modelled.paths():
        if "*" not in dotted:
            assert _value(out, tuple(dotted.split("."))) is not None, (
                f"{kind}: paths names {dotted}, apply did not leave it")


def test_every_step_is_modelled() -> None:
    assert {kind for kind, _, _ in CASES} == set(STEPS)


def test_without_consent_click_ids_may_still_be_there() -> None:
    """The datamap lists what a destination *can* receive: ``keep_for`` keeps the ids in the
    set, since they arrive whenever the purpose is granted."""
    options = STEPS["click_ids"].parse(At({"keep_for": "ads"}, (), Reporter()))
    fields = FieldSet.of(["context.click_ids.gclid"])
    assert STEPS["click_ids"].paths(fields, options).has("context.click_ids.gclid")
    out = STEPS["click_ids"].apply(copy.deepcopy(EVENT), options, StepContext("d"))
    assert out is not None and "click_ids" not in out["context"]


def test_hashing_an_object_is_modelled_as_hashed_or_gone() -> None:
    """``hash`` cannot hash an object and removes it; ``paths`` says "hashed", which covers
    both (it never claims a raw value)."""
    options = STEPS["hash"].parse(At(["user.address"], (), Reporter()))
    modelled = STEPS["hash"].paths(FieldSet.of(["user.address.city"]), options)
    assert modelled.paths() == [("user.address", True)]
    out = STEPS["hash"].apply(copy.deepcopy(EVENT), options, StepContext("d"))
    assert out is not None and "address" not in out["user"]
