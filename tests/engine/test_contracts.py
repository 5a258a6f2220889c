from __future__ import annotations

import re
from typing import Any

import pytest

from relay.engine.contracts import check, check_field
from relay.rules.model import Contract, Events, FieldSpec

PURCHASE = Contract(
    "purchase",
    version=2,
    properties={
        "order_id": FieldSpec(type="string", required=True),
        "value": FieldSpec(type="number", required=True, min=0),
        "currency": FieldSpec(type="string", required=True, pattern=re.compile("^[A-Z]{3}$")),
    },
    additional_properties="drop",
)
EVENTS = Events({"purchase": PURCHASE, "page_view": Contract("page_view")}, fallback="reject")


def purchase(**props: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"order_id": "O1", "value": 10, "currency": "EUR"}
    base.update(props)
    return {"event": "purchase", "event_id": "e1", "properties": base}


def test_valid_event_gets_the_schema_version() -> None:
    ev = purchase()
    result = check(ev, EVENTS)
    assert result.kind == "ok"
    assert result.error is None
    assert result.contract is PURCHASE
    assert result.event["schema"] == 2
    assert "schema" not in ev  # the input is not changed


def test_existing_schema_is_kept_and_unchanged_event_is_returned_as_is() -> None:
    ev = purchase()
    ev["schema"] = 1
    result = check(ev, EVENTS)
    assert result.event is ev
    assert result.event["schema"] == 1


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"value": None}, "properties.value: required"),
        ({"currency": "eur"}, "properties.currency: must match ^[A-Z]{3}$"),
        ({"value": -1}, "properties.value: must be >= 0"),
        ({"value": "10"}, "properties.value: expected a number, got a string"),
        ({"value": True}, "properties.value: expected a number, got a boolean"),
        ({"order_id": 5}, "properties.order_id: expected a string, got a number"),
    ],
)
def test_field_errors(props: dict[str, Any], message: str) -> None:
    result = check(purchase(**props), EVENTS)
    assert result.kind == "rejected"
    assert result.error == message


def test_all_errors_are_reported() -> None:
    ev = {"event": "purchase", "properties": {"value": -5, "currency": "usd"}}
    result = check(ev, EVENTS)
    assert result.error == (
        "properties.order_id: required; properties.value: must be >= 0; "
        "properties.currency: must match ^[A-Z]{3}$"
    )


def test_missing_properties_object() -> None:
    result = check({"event": "purchase"}, EVENTS)
    assert result.kind == "rejected"
    assert result.error is not None
    assert result.error.startswith("properties.order_id: required")


def test_additional_properties_drop() -> None:
    ev = purchase(coupon="X", note="n")
    result = check(ev, EVENTS)
    assert result.kind == "ok"
    assert result.dropped == ("coupon", "note")
    assert result.event["properties"] == {"order_id": "O1", "value": 10, "currency": "EUR"}
    assert "coupon" in ev["properties"]  # the input is not changed


def test_additional_properties_keep_and_reject() -> None:
    keep = Events({"purchase": Contract("purchase", properties=PURCHASE.properties)})
    result = check(purchase(coupon="X"), keep)
    assert result.kind == "ok"
    assert result.event["properties"]["coupon"] == "X"
    assert result.dropped == ()

    strict = Events(
        {
            "purchase": Contract(
                "purchase", properties=PURCHASE.properties, additional_properties="reject"
            )
        }
    )
    result = check(purchase(coupon="X"), strict)
    assert result.kind == "rejected"
    assert result.error == "properties.coupon: not in the contract"


def test_unknown_event_fallbacks() -> None:
    ev = {"event": "mystery"}
    result = check(ev, EVENTS)
    assert (result.kind, result.error) == ("rejected", "event: no contract for 'mystery'")

    result = check(ev, Events(EVENTS.contracts, fallback="quarantine"))
    assert result.kind == "quarantine"
    assert result.contract is None

    result = check(ev, Events(EVENTS.contracts, fallback="accept"))
    assert (result.kind, result.error, result.contract) == ("ok", None, None)
    assert result.event is ev


def test_empty_contract_accepts_anything() -> None:
    result = check({"event": "page_view", "properties": {"a": 1}}, EVENTS)
    assert result.kind == "ok"
    assert result.event["properties"] == {"a": 1}
    assert result.event["schema"] == 1


@pytest.mark.parametrize(
    ("spec", "value", "problem"),
    [
        (FieldSpec(type="integer"), 3, None),
        (FieldSpec(type="integer"), 3.0, None),
        (FieldSpec(type="integer"), 3.5, "expected an integer, got a number"),
        (FieldSpec(type="boolean"), False, None),
        (FieldSpec(type="boolean"), 0, "expected a boolean, got a number"),
        (FieldSpec(type="object"), {}, None),
        (FieldSpec(type="object"), [], "expected an object, got an array"),
        (FieldSpec(type="array"), [1], None),
        (FieldSpec(type="array"), "x", "expected an array, got a string"),
        (FieldSpec(type="number", max=10), 10.5, "must be <= 10"),
        (FieldSpec(type="number", min=0.5), 0.25, "must be >= 0.5"),
        (FieldSpec(type="string", max_length=3), "abcd", "must be at most 3 characters"),
        (FieldSpec(type="array", max_length=1), [1, 2], "must have at most 1 items"),
        (FieldSpec(enum=("a", "b")), "c", "must be one of: a, b"),
        (FieldSpec(enum=("a", "b")), "b", None),
        (FieldSpec(enum=(True,)), 1, "must be one of: True"),
        (FieldSpec(enum=(1, 2)), 2.0, None),
        (FieldSpec(pattern=re.compile("^A")), "xA", "must match ^A"),
        (FieldSpec(pattern=re.compile("A")), "xAx", None),  # search semantics, anchors as written
        (FieldSpec(min=0), "not a number", None),  # no type: only checks that fit the value
    ],
)
def test_check_field(spec: FieldSpec, value: Any, problem: str | None) -> None:
    errors = check_field("x", spec, value)
    assert errors == ([f"properties.x: {problem}"] if problem else [])
