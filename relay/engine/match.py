"""``when:`` matchers: conditions on event fields that gate a destination.

    when: {properties.value: {gt: 0}, context.country: {in: [US, CA]}}

Each dotted path maps to one or more operators, all of which must hold. Shorthands: a scalar
means ``eq`` and a list means ``in`` (``context.country: [US, CA]``). A missing (or null) field
fails every operator except ``exists: false`` and ``ne``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from relay.paths import MISSING, get
from relay.rules.fields import BAD_VALUE, At
from relay.rules.model import MATCH_OPS, Matcher, MatchOp
from relay.types import Event


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _same(a: Any, b: Any) -> bool:
    # 1 == True in Python; a rule comparing with true must not match the number 1.
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _parse_op(op: MatchOp, at: At) -> Matcher | None:
    path = str(at.path[-2])
    value = at.value
    if op in ("eq", "ne"):
        if not _is_scalar(value):
            at.wrong_type("a string, number, boolean or null")
            return None
        return Matcher(path, op, value)
    if op == "in":
        items = at.items()
        if not isinstance(value, list):
            return None
        for item in items:
            if not _is_scalar(item.value):
                item.wrong_type("a string, number, boolean or null")
                return None
        return Matcher(path, op, tuple(value))
    if op == "exists":
        flag = at.boolean()
        if flag is None:
            if value is None:
                at.wrong_type("true or false")
            return None
        return Matcher(path, op, flag)
    if op == "matches":
        pattern = at.regex()
        if pattern is None:
            if value is None:
                at.wrong_type("a regular expression")
            return None
        return Matcher(path, op, pattern)
    number = at.number()  # gt, gte, lt, lte
    if number is None:
        if value is None:
            at.wrong_type("a number")
        return None
    return Matcher(path, op, value)


def _valid_path(path: str) -> bool:
    return bool(path) and all(path.split("."))


def parse_when(at: At) -> tuple[Matcher, ...]:
    """Type a ``when:`` mapping into matchers; mistakes are reported through ``at``."""
    if at.value is None:
        return ()
    entries = at.mapping()
    if entries is None:
        return ()
    out: list[Matcher] = []
    for path, entry in entries.items():
        if not _valid_path(path):
            entry.error(BAD_VALUE, f"'{path}' is not a dotted field path", "like properties.value")
            continue
        if isinstance(entry.value, list):  # shorthand: path: [a, b] means in
            entry = At({"in": entry.value}, entry.path, entry.rep)
        elif _is_scalar(entry.value):  # shorthand: path: value means eq
            entry = At({"eq": entry.value}, entry.path, entry.rep)
        ops = entry.mapping(allowed=MATCH_OPS)
        if ops is None:
            continue
        if not ops and not entry.value:
            entry.error(BAD_VALUE, "needs at least one operator", f"one of {', '.join(MATCH_OPS)}")
        for op, op_at in ops.items():
            matcher = _parse_op(cast(MatchOp, op), op_at)  # mapping() kept only MATCH_OPS
            if matcher is not None:
                out.append(matcher)
    return tuple(out)


def holds(matcher: Matcher, event: Event) -> bool:
    """Whether one matcher holds for ``event``."""
    value = get(event, matcher.path)
    op = matcher.op
    if value is MISSING or value is None:
        if op == "exists":
            return matcher.value is False
        return op == "ne" and matcher.value is not None
    if op == "eq":
        return _same(value, matcher.value)
    if op == "ne":
        return not _same(value, matcher.value)
    if op == "in":
        return any(_same(value, option) for option in matcher.value)
    if op == "exists":
        return matcher.value is True
    if op == "matches":
        return isinstance(value, str) and matcher.value.search(value) is not None
    if not _is_number(value):
        return False
    if op == "gt":
        return bool(value > matcher.value)
    if op == "gte":
        return bool(value >= matcher.value)
    if op == "lt":
        return bool(value < matcher.value)
    return bool(value <= matcher.value)  # lte


def matches(matchers: Sequence[Matcher], event: Event) -> bool:
    """True when every matcher holds (an empty ``when`` matches everything)."""
    return all(holds(m, event) for m in matchers)
