"""What personal data looks like: pure finders shared by the pipeline's steps (``redact``,
``ip``, ``hash``) and the masking of what people look at (``relay.observe.mask``).

- emails, phone numbers and card numbers (Luhn) inside free text: ``redact_text``;
- IP addresses cut to their network: ``truncate`` (v4 /24, v6 /48), and found inside text:
  ``ip_addresses``;
- identifiers in their canonical form before hashing (``normalize_identifier``), and values
  that already are SHA-256 hex (``HEX64``).

No I/O and no state but caches.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

HEX64 = re.compile(r"[0-9a-fA-F]{64}")
PHONE_NAMES = frozenset({"tel", "mobile", "msisdn"})
EMAIL_MASK, PHONE_MASK, CARD_MASK = "[email]", "[phone]", "[card]"

_EMAIL = r"[A-Za-z0-9._%+\-]+(?:@|%40)[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"
# A digit run with optional separators, not glued to a word, a decimal point or a dash.
_NUMBER = r"(?<![\w.\-+])\+?\(?[0-9][0-9 \-.()]{7,}[0-9](?![\w])"
_EMAIL_RE = re.compile(_EMAIL)
_NUMBER_RE = re.compile(_NUMBER)
_DATE = re.compile(r"[0-9]{4}[-/.][0-9]{1,2}[-/.][0-9]{1,2}|[0-9]{1,2}[-/.][0-9]{1,2}[-/.][0-9]{4}")
_NOT_DIGIT = re.compile(r"[^0-9]")
_DIGITS = b"0123456789"
MIN_DIGITS = 9  # fewer digits than this in a string: no phone or card number can be in it
MIN_TEXT = 6  # shorter strings are not looked at: no email, phone or card fits in them
V6_PREFIX = 48

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_V4_TEXT = rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}"
_V4 = re.compile(_V4_TEXT)
# An address inside text, not glued to a word, a longer dotted number or another address.
# IPv6 candidates (two colons or more) are checked by ``ipaddress``: "19:20:17" is not one.
_IP_IN_TEXT = re.compile(
    rf"(?<![\w.:]){_V4_TEXT}(?!\w|\.[0-9])"
    rf"|(?<![\w.:])(?:[0-9A-Fa-f]{{0,4}}:){{2,7}}(?:{_V4_TEXT}|[0-9A-Fa-f]{{1,4}})?(?![\w:.])"
)


def is_phone_field(name: str) -> bool:
    name = name.lower()
    return "phone" in name or name in PHONE_NAMES


def normalize_identifier(value: str, phone: bool) -> str:
    """An identifier's canonical form, as the ad platforms match them: a phone number's
    digits and leading ``+``; anything else (email, names, ids) trimmed and lowercased."""
    text = value.strip()
    if phone:
        return ("+" if text.startswith("+") else "") + _NOT_DIGIT.sub("", text)
    return text.lower()


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def digit_count(text: str) -> int:
    """How many ASCII digits ``text`` holds, counted on its UTF-8 bytes: deleting bytes is one
    C loop, while ``str.translate`` looks every character up in a dict (several times slower).
    Other characters encode to bytes >= 0x80, so the count is the same."""
    raw = text.encode("utf-8", "surrogatepass")
    return len(raw) - len(raw.translate(None, _DIGITS))


def may_hold_personal_data(text: str) -> bool:
    """False when ``redact_text`` certainly finds nothing: every email has ``@`` or ``%40``,
    every phone or card number at least ``MIN_DIGITS`` digits."""
    return "@" in text or "%40" in text or digit_count(text) >= MIN_DIGITS


def redact_emails(text: str) -> str:
    """``text`` with its emails (only) masked: ``"to a+b@example.com"`` -> ``"to [email]"``."""
    return _EMAIL_RE.sub(EMAIL_MASK, text) if "@" in text or "%40" in text else text


def redact_text(text: str) -> tuple[str, dict[str, int]]:
    """``text`` with emails, card and phone numbers masked, and how many of each."""
    found: dict[str, int] = {}
    if "@" in text or "%40" in text:
        text, n = _EMAIL_RE.subn(EMAIL_MASK, text)
        if n:
            found["email"] = n
    if digit_count(text) < MIN_DIGITS:
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


def _truncate_v4(ip: str) -> str | None:
    if not _V4.fullmatch(ip):
        return None
    return ip[: ip.rfind(".")] + ".0"


@functools.lru_cache(maxsize=4096)
def _truncate_v6(ip: str) -> str | None:
    try:
        addr = ipaddress.IPv6Address(ip.partition("%")[0])
    except ValueError:
        return None
    mapped = addr.ipv4_mapped
    if mapped is not None:
        return _truncate_v4(str(mapped))
    return str(ipaddress.IPv6Network((addr, V6_PREFIX), strict=False).network_address)


def ip_addresses(text: str) -> list[tuple[int, int, str]]:
    """The IP addresses inside ``text``: (start, end, truncated form) of each, in order.

    ``ip_addresses("from 203.0.113.77 at 19:20:17")`` -> ``[(5, 17, "203.0.113.0")]``.
    """
    if "." not in text and ":" not in text:
        return []
    found = []
    for m in _IP_IN_TEXT.finditer(text):
        short = truncate(m.group())
        if short is not None:
            found.append((m.start(), m.end(), short))
    return found


def truncate(ip: str) -> str | None:
    """``1.2.3.4`` -> ``1.2.3.0``; IPv6 to its /48; None when ``ip`` is not an address."""
    if ":" in ip:
        return _truncate_v6(ip)
    return _truncate_v4(ip)


_SUBJECT_CONTEXT = b"relay.ledger.subject.v1"
SUBJECT_HEX = 32


class Subjects:
    """Keyed hashes of a person's identifiers, for the ledger's links (``relay forget`` finds
    a person's events by them without the ledger knowing who they are).

    The key is derived from each cookie secret (the newest writes, every one is tried when
    looking up, so a rotation does not orphan older links). ``user.id``, the normalized email
    and the normalized phone each give one hash:

        >>> s = Subjects(["the-cookie-secret"])
        >>> s.of({"email": " Ann@Example.com"}) == s.of({"email": "ann@example.com"})
        True
    """

    __slots__ = ("_keys",)

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("subject hashes need at least one secret")
        # Keyed BLAKE2b objects, the key absorbed once; each hash starts from a copy.
        self._keys = [
            hashlib.blake2b(key=hmac.new(s.encode(), _SUBJECT_CONTEXT, hashlib.sha256).digest(),
                            digest_size=SUBJECT_HEX // 2)
            for s in reversed(secrets)  # the newest first
        ]

    @staticmethod
    def _names(user: Mapping[str, Any]) -> list[str]:
        names = []
        uid = user.get("id")
        if isinstance(uid, str | int) and not isinstance(uid, bool) and str(uid):
            names.append("id:" + str(uid))
        for key, phone in (("email", False), ("phone", True)):
            value = user.get(key)
            if isinstance(value, str) and value.strip():
                names.append(f"{key}:{normalize_identifier(value, phone)}")
        return names

    def _hash(self, key: Any, name: str) -> str:
        # Keyed BLAKE2b: a MAC in C (HMAC-SHA256 costs several times more per id); copying
        # the keyed object skips absorbing the key block again (about 0.15 µs per id).
        h = key.copy()
        h.update(name.encode())
        digest: str = h.hexdigest()
        return digest

    def of(self, user: Any) -> list[str]:
        """The hashes an event's ``user`` object is recorded under (newest key)."""
        if not isinstance(user, Mapping):
            return []
        return [self._hash(self._keys[0], n) for n in self._names(user)]

    def lookup(self, user: Mapping[str, Any]) -> list[str]:
        """Every hash ``user`` may have been recorded under, one per secret."""
        return [self._hash(k, n) for n in self._names(user) for k in self._keys]
