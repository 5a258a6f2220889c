"""Event contracts: check an event's properties against the ``events:`` section of the rules.

    >>> check({"event": "purchase", "properties": {"value": -1}}, events).error
    'properties.order_id: required; properties.value: must be >= 0; ...'

Every problem is reported, joined with ``"; "``, so a developer fixes them in one round trip.
A ``null`` property counts as absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from relay.engine.envelope import kind_of
from relay.rules.model import Contract, Events, FieldSpec
from relay.types import Event

ContractKind = Literal["ok", "rejected", "quarantine"]

_TYPE_NAMES = {
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "a boolean",
    "object": "an object",
    "array": "an array",
}


@dataclass(slots=True)
class ContractResult:
    """The verdict. ``event`` is the input itself unless something changed (schema set,
    properties dropped); ``dropped`` names properties removed by ``additional_properties: drop``.

    Not frozen, like the engine's other per-event records: one is built for every event, and
    a frozen dataclass's ``__init__`` (an ``object.__setattr__`` call per field) costs about
    four times as much. Treat it as read-only all the same.
    """

    kind: ContractKind
    event: Event
    error: str | None = None  # for the client and the debug view
    contract: Contract | None = None
    dropped: tuple[str, ...] = ()
    logged: str | None = None  # ``error`` in names from the rules only, for the hop line


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _type_ok(expected: str, value: Any) -> bool:
    if expected == "string":
        return isinstance(value, str)
    if expected == "number":
        return _is_number(value)
    if expected == "integer":
        return _is_number(value) and float(value).is_integer()
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "object":
        return isinstance(value, dict)
    return isinstance(value, list)  # array


def _in_enum(value: Any, options: tuple[Any, ...]) -> bool:
    # 1 == True in Python; a contract's enum of booleans must not accept numbers.
    return any(
        isinstance(option, bool) == isinstance(value, bool) and option == value
        for option in options
    )


def check_field(name: str, spec: FieldSpec, value: Any) -> list[str]:
    """The problems with one property value (empty when it conforms)."""
    where = f"properties.{name}"
    if spec.type is not None and not _type_ok(spec.type, value):
        return [f"{where}: expected {_TYPE_NAMES[spec.type]}, got {kind_of(value)}"]
    errors: list[str] = []
    if _is_number(value):
        if spec.min is not None and value < spec.min:
            errors.append(f"{where}: must be >= {_num(spec.min)}")
        if spec.max is not None and value > spec.max:
            errors.append(f"{where}: must be <= {_num(spec.max)}")
    if spec.max_length is not None:
        if isinstance(value, str) and len(value) > spec.max_length:
            errors.append(f"{where}: must be at most {spec.max_length} characters")
        elif isinstance(value, list) and len(value) > spec.max_length:
            errors.append(f"{where}: must have at most {spec.max_length} items")
    if spec.pattern is not None and isinstance(value, str) and not spec.pattern.search(value):
        errors.append(f"{where}: must match {spec.pattern.pattern}")
    if spec.enum is not None and not _in_enum(value, spec.enum):
        errors.append(f"{where}: must be one of: {', '.join(str(o) for o in spec.enum)}")
    return errors


def check(event: Event, events: Events) -> ContractResult:
    """Validate ``event`` against its contract in ``events``.

    An event with no contract follows ``events.fallback``: ``reject``, ``quarantine`` (kept
    aside, not routed) or ``accept`` (``ok`` with ``contract=None``).
    """
    name = event.get("event")
    contract = events.contracts.get(name) if isinstance(name, str) else None
    if contract is None:
        if events.fallback == "accept":
            return ContractResult("ok", event)
        kind: ContractKind = "rejected" if events.fallback == "reject" else "quarantine"
        return ContractResult(
            kind, event, f"event: no contract for '{name}'", logged="event: no contract"
        )

    raw_props = event.get("properties")
    props: dict[str, Any] = raw_props if isinstance(raw_props, dict) else {}
    errors: list[str] = []
    for field_name, spec in contract.properties.items():
        value = props.get(field_name)
        if value is None:
            if spec.required:
                errors.append(f"properties.{field_name}: required")
            continue
        errors.extend(check_field(field_name, spec, value))

    extra: list[str] = []
    if contract.additional_properties != "keep":
        extra = [key for key in props if key not in contract.properties]
    if errors or (extra and contract.additional_properties == "reject"):
        # The contract's own property names are the rules'; the extra ones are the client's,
        # so the hop line counts them instead of naming them.
        logged = errors.copy()
        if extra and contract.additional_properties == "reject":
            errors.extend(f"properties.{key}: not in the contract" for key in extra)
            logged.append(f"properties: {len(extra)} not in the contract")
        return ContractResult(
            "rejected", event, "; ".join(errors), contract, logged="; ".join(logged)
        )

    out = event
    if "schema" not in event:
        out = {**event, "schema": contract.version}
    if extra:  # additional_properties: drop
        if out is event:
            out = dict(event)
        out["properties"] = {k: v for k, v in props.items() if k in contract.properties}
    return ContractResult("ok", out, None, contract, tuple(extra) if extra else ())
