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
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, cast

from relay.pipeline.fields import parse_choice
from relay.pipeline.hash import HEX64
from relay.rules.fields import At
from relay.types import Event, StepContext

RedactMode = Literal["free_text"]
REDACT_MODES: tuple[RedactMode, ...] = ("free_text",)
REDACTED_PAGE_FIELDS = ("title", "url", "referrer", "search", "path")
EMAIL_MASK, PHONE_MASK, CARD_MASK = "[email]", "[phone]", "[card]"

_EMAIL = r"[A-Za-z0-9._%+\-]+(?:@|%40)[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"
# A digit run with optional separators, not glued to a word, a decimal point or a dash.
_NUMBER = r"(?<![\w.\-+])\+?\(?[0-9][0-9 \-.()]{7,}[0-9](?![\w])"
_EMAIL_RE = re.compile(_EMAIL)
_NUMBER_RE = re.compile(_NUMBER)
_DATE = re.compile(r"[0-9]{4}[-/.][0-9]{1,2}[-/.][0-9]{1,2}|[0-9]{1,2}[-/.][0-9]{1,2}[-/.][0-9]{4}")
_NOT_DIGIT = re.compile(r"[^0-9]")
_NO_DIGITS = str.maketrans("", "", "0123456789")
MIN_DIGITS = 9  # fewer digits than this in a string: no phone or card number can be in it


@dataclass(frozen=True, slots=True)
class RedactOptions:
    mode: RedactMode = "free_text"


def parse(at: At) -> RedactOptions:
    return RedactOptions(cast(RedactMode, parse_choice(at, REDACT_MODES, "free_text")))


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def redact_text(text: str) -> tuple[str, dict[str, int]]:
    """``text`` with emails, card and phone numbers masked, and how many of each."""
    found: dict[str, int] = {}
    if "@" in text or "%40" in text:
        text, n = _EMAIL_RE.subn(EMAIL_MASK, text)
        if n:
            found["email"] = n
    if len(text) - len(text.translate(_NO_DIGITS)) < MIN_DIGITS:
        return text, found  # the common case: skip the number scan
    digits_only = text.isdigit()

    def mask(m: re.Match[str]) -> str:
        chunk = m.group()
        digits = _NOT_DIGIT.sub("", chunk)
        if 13 <= len(digits) <= 19 and luhn(digits):
            found["card"] = found.get("card", 0) + 1
            return CARD_MASK
        if 9 <= len(digits) <= 15 and not digits_only and not _DATE.match(chunk.lstrip("+(")):
            found["phone"] = found.get("phone", 0) + 1
            return PHONE_MASK
        return chunk

    return _NUMBER_RE.sub(mask, text), found


class _Walker:
    __slots__ = ("ctx", "skip_hashes")

    def __init__(self, ctx: StepContext, skip_hashes: bool) -> None:
        self.ctx = ctx
        self.skip_hashes = skip_hashes

    def text(self, value: str, path: tuple[str | int, ...]) -> str:
        if len(value) < 6 or (self.skip_hashes and HEX64.fullmatch(value)):
            return value
        new, found = redact_text(value)
        if found:
            what = ", ".join(f"{n} {kind}" for kind, n in found.items())
            self.ctx.count("redact", sum(found.values()), f"redacted {what} in {_dotted(path)}")
        return new

    def value(self, value: Any, path: tuple[str | int, ...]) -> Any:
        # The path is built as a tuple and rendered only when something is found.
        if isinstance(value, str):
            return self.text(value, path)
        if isinstance(value, dict):
            for key, item in value.items():
                value[key] = self.value(item, (*path, key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                value[i] = self.value(item, (*path, i))
        return value


def _dotted(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p)
                   for i, p in enumerate(path))


def apply(event: Event, options: RedactOptions, ctx: StepContext) -> Event:
    plain = _Walker(ctx, skip_hashes=False)
    for key in ("properties",):
        if key in event:
            event[key] = plain.value(event[key], (key,))
    if "user" in event:
        event["user"] = _Walker(ctx, skip_hashes=True).value(event["user"], ("user",))
    context = event.get("context")
    if isinstance(context, dict):
        if "campaign" in context:
            context["campaign"] = plain.value(context["campaign"], ("context", "campaign"))
        page = context.get("page")
        if isinstance(page, dict):
            for field in REDACTED_PAGE_FIELDS:
                value = page.get(field)
                if isinstance(value, str):
                    page[field] = plain.text(value, ("context", "page", field))
    return event
