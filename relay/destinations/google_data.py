"""Google's user-provided data: the normalization and SHA-256 hashing that GA4's ``user_data``
(and Google Ads' enhanced conversions, which share the algorithm) expect, as pure functions.

Sources: developers.google.com/analytics/devguides/collection/ga4/uid-data, and Google's own
reference code (googleads/google-ads-python, ``examples/remarketing/
upload_enhanced_conversions_for_web.py``: ``normalize_and_hash_email_address``).

    email("John.Smith@Gmail.com ") == sha256_hex("johnsmith@gmail.com")  # gmail: no dots
    phone("+1 (650) 555-1212")                # E.164, digits after a +: Google's vector
    -> '1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8'

Each function returns None for a value that cannot be one (an "email" without ``@``, a
"phone" with too few digits, the ``[email]`` a ``redact`` step left): the caller leaves the
field out rather than send the hash of something else. A value that is already SHA-256 hex
is taken as hashed by the caller and passed as it is.
"""

from __future__ import annotations

import re
import unicodedata

from relay.destinations.base import is_sha256_hex, sha256_hex

GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
E164_DIGITS = (7, 15)  # E.164 numbers have at most 15 digits; fewer than 7 is no number
_NOT_DIGIT = re.compile(r"[^0-9]")
_SPACES = re.compile(r"\s+")
_COUNTRY = re.compile(r"[A-Za-z]{2}")


def hashed(value: object) -> str | None:
    """``value`` when it already is SHA-256 hex (any case; lowercased), else None."""
    if isinstance(value, str) and is_sha256_hex(value.strip().lower()):
        return value.strip().lower()
    return None


def email(value: object) -> str | None:
    """The hash of an email address: trimmed, lowercased, and for gmail.com and
    googlemail.com addresses without the dots before the ``@``."""
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    local, at, domain = text.rpartition("@")
    if not at or not local or "." not in domain or " " in text:
        return None
    if domain in GMAIL_DOMAINS:
        local = local.replace(".", "")
    return sha256_hex(f"{local}@{domain}")


def phone_e164(value: object) -> str | None:
    """A phone number in E.164 form: its digits after a ``+``. A leading ``00`` (the
    international call prefix) is dropped when the number was not written with ``+``.
    ``"+1 (650) 555-1212"`` -> ``"+16505551212"``; ``"0033 6 12 34 56 78"`` -> ``"+33612345678"``.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    digits = _NOT_DIGIT.sub("", text)
    if not text.startswith("+") and digits.startswith("00"):
        digits = digits[2:]
    low, high = E164_DIGITS
    if not low <= len(digits) <= high:
        return None
    return "+" + digits


def phone(value: object) -> str | None:
    """The hash of a phone number in E.164 form (``phone_e164``)."""
    e164 = phone_e164(value)
    return sha256_hex(e164) if e164 is not None else None


def _letters(value: object, *, digits: bool) -> str | None:
    """Lowercased, trimmed, inner spaces collapsed; only letters (and digits when ``digits``)
    and spaces kept: Google's "remove symbol characters" (and "remove digits")."""
    if not isinstance(value, str):
        return None
    kept: list[str] = []
    for ch in unicodedata.normalize("NFC", value.lower()):
        if ch.isalpha() or (digits and ch.isdigit()):
            kept.append(ch)
        elif ch.isspace():
            kept.append(" ")
        # anything else is a symbol: removed, not replaced ("Anne-Marie" -> "annemarie")
    text = _SPACES.sub(" ", "".join(kept)).strip()
    return text or None


def name(value: object) -> str | None:
    """The hash of a first or last name: digits and symbols removed, lowercased, trimmed."""
    text = _letters(value, digits=False)
    return sha256_hex(text) if text is not None else None


def street(value: object) -> str | None:
    """The hash of a street address (name and number): symbols removed, lowercased."""
    text = _letters(value, digits=True)
    return sha256_hex(text) if text is not None else None


def place(value: object) -> str | None:
    """A city or region, sent in the clear: digits and symbols removed, lowercased."""
    return _letters(value, digits=False)


def postal_code(value: object) -> str | None:
    """A postal code, sent in the clear: trimmed, without ``.`` and ``~``."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).replace(".", "").replace("~", "").strip()
    return text or None


def country(value: object) -> str | None:
    """An ISO 3166-1 alpha-2 country code, in capitals; None for anything else."""
    if not isinstance(value, str) or not _COUNTRY.fullmatch(value.strip()):
        return None
    return value.strip().upper()
