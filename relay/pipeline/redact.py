"""``redact``: mask personal data inside free-text fields.

    - redact: free_text
    # properties.note "call +1 555 010 0000 or ann@example.com, card 4111 1111 1111 1111"
    # -> "call [phone] or [email], card [card]"

Looks at every string in ``properties``, ``user`` (except values that are already SHA-256
hashes), ``context.campaign`` and ``context.page`` (``REDACTED_PAGE_FIELDS``); never at the
envelope keys (event, event_id, time, source, received_at, correlation_id). Emails are found
also when URL-encoded (``ann%40example.com``). A run of 13 to 19 digits passing the Luhn check
is a card; other runs of 9 to 15 digits (with optional ``+`` and separators) are phone numbers,
except dates and strings made of digits only (order and user ids).

Most events hold nothing to redact, so a subtree whose JSON shows nothing to find is not
walked at all (``plain_json``), and a string without ``@``, ``%40`` or 9 digits is not
scanned (``may_hold_personal_data``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, cast

import orjson

from relay.fieldset import FieldSet
from relay.personal import HEX64, MIN_DIGITS, MIN_TEXT, may_hold_personal_data, redact_text
from relay.pipeline.fields import parse_choice
from relay.rules.fields import At
from relay.types import Event, StepContext

RedactMode = Literal["free_text"]
REDACT_MODES: tuple[RedactMode, ...] = ("free_text",)
REDACTED_PAGE_FIELDS = ("title", "url", "referrer", "search", "path")
# The core of ``_NUMBER`` without its lookarounds, searched in the JSON of a whole subtree.
_NUMBER_RUN = re.compile(r"[0-9][0-9 \-.()]{7,}[0-9]")
_DIGITS = b"0123456789"


@dataclass(frozen=True, slots=True)
class RedactOptions:
    mode: RedactMode = "free_text"


def parse(at: At) -> RedactOptions:
    return RedactOptions(cast(RedactMode, parse_choice(at, REDACT_MODES, "free_text")))


def plain_json(tree: dict[str, Any] | list[Any]) -> bool:
    """True when no string in ``tree`` can hold an email, phone or card number, decided on
    one ``orjson.dumps`` instead of a walk: the JSON has no ``@`` and no ``%40``, and fewer
    than ``MIN_DIGITS`` digits or no run of digits and separators that ``_NUMBER`` needs.

    Safe because every email contains ``@`` or ``%40``, every phone or card number has
    ``MIN_DIGITS`` digits and a ``_NUMBER_RUN`` match, and JSON escapes none of these
    characters (only quotes, backslashes and control characters), so they appear verbatim in
    the JSON of the string holding them. The run is searched without ``_NUMBER``'s
    lookbehind, which an escape such as ``\\n`` would fool. Keys and numbers only add
    candidates, so the test errs toward walking; so does a tree orjson cannot serialize (a
    non-string key, a huge integer).

        >>> plain_json({"section": "shoes", "items": 3, "price": 89.9})
        True
        >>> plain_json({"note": "line\\n5550100000"})
        False
    """
    try:
        blob = orjson.dumps(tree)
    except orjson.JSONEncodeError:
        return False
    text = blob.decode()  # str's ``in`` is much faster than bytes'
    if "@" in text or "%40" in text:
        return False
    if len(blob) - len(blob.translate(None, _DIGITS)) < MIN_DIGITS:
        return True
    return _NUMBER_RUN.search(text) is None


KeyPath = tuple[str | int, ...]


def _text(value: str, parent: KeyPath, key: str | int, ctx: StepContext, skip_hashes: bool) -> str:
    """``value`` redacted; a finding is counted under the dotted path of ``parent`` + ``key``,
    built only then."""
    if len(value) < MIN_TEXT or (skip_hashes and len(value) == 64 and HEX64.fullmatch(value)):
        return value
    if not may_hold_personal_data(value):
        return value
    new, found = redact_text(value)
    if found:
        what = ", ".join(f"{n} {kind}" for kind, n in found.items())
        where = _dotted((*parent, key))
        ctx.count("redact", sum(found.values()), f"redacted {what} in {where}")
    return new


def _walk(
    tree: dict[str, Any] | list[Any], path: KeyPath, ctx: StepContext, skip_hashes: bool
) -> None:
    """Redact the strings of ``tree`` in place."""
    if isinstance(tree, dict):
        for key, item in tree.items():
            if isinstance(item, str):
                tree[key] = _text(item, path, key, ctx, skip_hashes)
            elif isinstance(item, (dict, list)):
                _walk(item, (*path, key), ctx, skip_hashes)
    else:
        for i, item in enumerate(tree):
            if isinstance(item, str):
                tree[i] = _text(item, path, i, ctx, skip_hashes)
            elif isinstance(item, (dict, list)):
                _walk(item, (*path, i), ctx, skip_hashes)


def _value(value: Any, parent: KeyPath, key: str, ctx: StepContext, skip_hashes: bool) -> Any:
    """``value`` with its strings redacted; a dict or list is changed in place, and not walked
    at all when ``plain_json`` shows it has nothing to find. With ``skip_hashes`` (``user``),
    it is walked without that test: the hashed values there are runs of digits and letters
    that ``_NUMBER_RUN`` is slow to rule out (about 1 µs per hash), where the walk sets a
    hash aside with one ``HEX64`` match."""
    if isinstance(value, str):
        return _text(value, parent, key, ctx, skip_hashes)
    if isinstance(value, (dict, list)) and (skip_hashes or not plain_json(value)):
        _walk(value, (*parent, key), ctx, skip_hashes)
    return value


def _dotted(path: KeyPath) -> str:
    return "".join(
        f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(path)
    )


def paths(fields: FieldSet, options: RedactOptions) -> FieldSet:
    """The same fields: only what their strings say changes."""
    return fields


def apply(event: Event, options: RedactOptions, ctx: StepContext) -> Event:
    if "properties" in event:
        event["properties"] = _value(event["properties"], (), "properties", ctx, False)
    if "user" in event:  # hashed values (64 hex digits) stay
        event["user"] = _value(event["user"], (), "user", ctx, True)
    context = event.get("context")
    if isinstance(context, dict):
        if "campaign" in context:
            context["campaign"] = _value(context["campaign"], ("context",), "campaign", ctx, False)
        page = context.get("page")
        if isinstance(page, dict):
            for field in REDACTED_PAGE_FIELDS:
                value = page.get(field)
                if isinstance(value, str):
                    page[field] = _text(value, ("context", "page"), field, ctx, False)
    return event
