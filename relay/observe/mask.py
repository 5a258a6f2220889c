"""Masking for what people look at: the debug view, the quarantine store, and log lines that
quote a client's text. Each value is masked by what it means, so the view still says what it
is, and nothing in it is a raw IP, email, phone number, user agent, identifier or cookie.

    >>> masker = Masker.from_secrets(["the-cookie-secret"])
    >>> masker.event({
    ...     "time": "2026-11-28T19:20:17.188Z",
    ...     "user": {"email": "Ann@Example.com "},
    ...     "context": {"ip": "203.0.113.77", "user_agent": "Mozilla/5.0 (X11; Linux) ...",
    ...                 "page": {"url": "http://shop.example:8080/p?email=ann%40example.com&n=2"}},
    ...     "properties": {"value": 149.0, "order_id": "1234567890", "note": "call 555 010 0000"}})
    {'time': '2026-11-28T19:20:17.188Z',
     'user': {'email': '[email #f379a7fd]'},
     'context': {'ip': '203.0.113.0 #606da5bd', 'user_agent': '[user agent #0b00c18f]',
                 'page': {'url': 'http://shop.example:8080/p?email=[email]&n=2'}},
     'properties': {'value': 149.0, 'order_id': '1234567890', 'note': 'call [phone]'}}

Field by field:

- ``context.ip``: the truncated address (v4 /24, v6 /48) and a tag of the whole address, so
  two visitors of one network stay apart: ``203.0.113.0 #606da5bd``;
- ``user.*``: a tag, named by the field: ``[email #f379a7fd]``. Emails and phone numbers are
  tagged in their normalized form (``Ann@Example.com `` and ``ann@example.com`` match); a value
  that already is SHA-256 hex (a pipeline hashed it) is shown as it is;
- ``context.user_agent`` (and any field named ``user_agent``, ``userAgent``, ``User-Agent``,
  ``ua`` or ending in ``user_agent``, like Meta's ``client_user_agent`` and PostHog's
  ``$raw_user_agent``) and ``anonymous_id``: a tag;
- a field named for a visitor's or user's id anywhere (``client_id``, ``user_id``,
  ``anonymous_id``, ``userId``, ``distinct_id``, ``$device_id``, ``uid``, ...: the ids vendor
  formats carry, often a cookie's value): a tag, as for ``user.*``;
- cookie values: each value of ``context.cookies`` (``_fbc``, ``_fbp``, ``_ttp``) and the fields
  vendors carry them in (``fbc``, ``fbp``, ``ttp``): ``[cookie #...]``; a field named
  ``client_ip_address``, ``ip_address`` or ``ip`` anywhere: as ``context.ip``;
- ``correlation_id``: its digest, the one the debug view's ``?cid=`` filter takes;
- ``event_id``: as sent (it is how an event is followed from arrival to delivery);
- a URL (a string that starts with a scheme): scheme, host and port as they are, user info
  replaced by ``[userinfo]``, the path and fragment as free text, each query value decoded and
  masked as free text (``?email=[email]``);
- a field named for an email or a phone number anywhere (``properties.customer_email``,
  ``properties.mobile``, a query's ``phone=``): a tag, as for ``user.*`` (``[phone]`` in a URL);
- every other string, and every key, is free text: IP addresses in it as above; emails, phone
  numbers and card numbers (Luhn) replaced by ``[email]``, ``[phone]`` and ``[card]``, as the
  ``redact`` step does; timestamps, dates, ids made of digits and numbers stay as they are.

A tag is ``#`` and 8 hex digits of HMAC-SHA256 under a key derived from the cookie secrets (the
newest), so a tag cannot be reversed by hashing guesses, and it stays the same for a value as
long as that secret does (a secret rotation changes every tag).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, unquote_plus

from relay.observe.log import digest
from relay.personal import (
    HEX64,
    MIN_TEXT,
    ip_addresses,
    is_phone_field,
    may_hold_personal_data,
    normalize_identifier,
    redact_emails,
    redact_text,
    truncate,
)

TAG_HEX = 8
KEY_BYTES = 16  # at least: a shorter key would make tags guessable
_CONTEXT = b"relay.observe.mask.v1"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_URL_PARTS = re.compile(r"[/?#]")
_USER_AGENT_NAMES = frozenset({"useragent", "ua"})  # user_agent, userAgent, User-Agent, ua
# Fields vendor formats name for a person's or a visitor's id (GA4's client_id, PostHog's and
# Mixpanel's distinct_id, $user_id, $device_id, Matomo's uid, Segment's userId, anonymousId):
# tagged like user.id, since a vendor copy in the debug view has no user.* to go by.
_ID_NAMES = frozenset({"clientid", "userid", "anonymousid", "distinctid", "deviceid", "uid"})
# Vendors' names for the user agent (client_user_agent), the address (client_ip_address)
# and their cookies (Meta's fbc and fbp, TikTok's ttp), as a vendor item in the debug view
# carries them; ``context.cookies`` holds cookie values by their names (_fbp, _ttp, ...).
_COOKIE_NAMES = frozenset({"fbc", "fbp", "ttp"})
_IP_NAMES = frozenset({"clientipaddress", "ipaddress", "ip"})


def _plain(name: str) -> str:
    """``$raw_user_agent`` -> ``rawuseragent``: a field name without case, ``$``, ``_``, ``-``."""
    return name.replace("_", "").replace("-", "").replace("$", "").lower()


class Masker:
    """Masks events and text for display (see the module's docstring). ``key`` is the HMAC
    key of the tags; the relay derives it from the cookie secrets (``from_secrets``)."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < KEY_BYTES:
            raise ValueError(f"a masking key needs at least {KEY_BYTES} bytes")
        self._key = key

    @classmethod
    def from_secrets(cls, secrets: Sequence[str]) -> Masker:
        """The key derived from the newest secret, as ``relay.state.seal`` derives its own
        (another context string, so the two keys are unrelated)."""
        if not secrets:
            raise ValueError("masking needs at least one secret")
        return cls(hmac.new(secrets[-1].encode(), _CONTEXT, hashlib.sha256).digest())

    def tag(self, value: str) -> str:
        """``#`` and 8 hex digits of the keyed hash of ``value``."""
        mac = hmac.new(self._key, value.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return "#" + mac.hexdigest()[:TAG_HEX]

    # -- by meaning -------------------------------------------------------------------

    def ip(self, value: str) -> str:
        """``203.0.113.77`` -> ``203.0.113.0 #606da5bd``; not an address: ``[ip #...]``."""
        address = value.strip()
        short = truncate(address)
        return f"{short} {self.tag(address)}" if short else f"[ip {self.tag(address)}]"

    def identifier(self, name: str, value: Any) -> Any:
        """A tag for the identifier field ``name`` (``email``, ``phone``, ``id``, ...)."""
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, str) and len(value) == 64 and HEX64.fullmatch(value):
            return value  # already hashed
        text = str(value)
        if isinstance(value, str) and ("email" in name.lower() or is_phone_field(name)):
            text = normalize_identifier(text, is_phone_field(name)) or text
        return f"[{self.text(name)} {self.tag(text)}]"

    def text(self, value: str) -> str:
        """Free text: IP addresses truncated and tagged; emails, phone and card numbers
        replaced. ``"from 203.0.113.77: call 555 010 0000"`` ->
        ``"from 203.0.113.0 #606da5bd: call [phone]"``."""
        found = ip_addresses(value)
        if not found:
            return _redacted(value)
        pieces, last = [], 0
        for start, end, short in found:
            pieces.append(_redacted(value[last:start]))
            pieces.append(f"{short} {self.tag(value[start:end])}")
            last = end
        pieces.append(_redacted(value[last:]))
        return "".join(pieces)

    def url(self, value: str) -> str:
        """A URL with its own structure kept and its personal data masked:
        ``https://ann:pw@shop.example:8080/u/ann@example.com?phone=%2B15550100000&n=2`` ->
        ``https://[userinfo]@shop.example:8080/u/[email]?phone=[phone]&n=2``."""
        scheme = _SCHEME.match(value)
        if scheme is None:
            return self.text(value)
        rest = value[scheme.end() :]
        cut = _URL_PARTS.search(rest)
        netloc, tail = (rest[: cut.start()], rest[cut.start() :]) if cut else (rest, "")
        if "@" in netloc:
            netloc = "[userinfo]@" + netloc.rpartition("@")[2]
        before_fragment, hash_sign, fragment = tail.partition("#")
        path, question, query = before_fragment.partition("?")
        out = [scheme.group(), netloc, self.text(path)]
        if question:
            out += ["?", "&".join(self._query_pair(pair) for pair in query.split("&"))]
        if hash_sign:
            out += ["#", self.text(fragment)]
        return "".join(out)

    def _query_pair(self, pair: str) -> str:
        key, equals, value = pair.partition("=")
        decoded = unquote_plus(value) if "%" in value or "+" in value else value
        kind = _contact_kind(unquote_plus(key)) if decoded else None
        if kind:
            masked = f"[{kind}]"
        elif "+" in value and "@" in (plain := unquote(value)):
            # "+" may be a space or part of an email (ann+shop@example.com): the emails
            # first, with their "+", then the rest with "+" as a space.
            masked = self.text(redact_emails(plain).replace("+", " "))
        else:
            masked = self.text(decoded)
        return self.text(key) + equals + (value if masked == decoded else masked)

    def value(self, value: Any) -> Any:
        """A tree of free text: keys and strings masked (URLs as URLs), the rest as it is;
        a field named for an email or a phone number (``customer_email``, ``mobile``) is an
        identifier, tagged, whatever its value looks like."""
        if isinstance(value, str):
            return self.url(value) if _SCHEME.match(value) else self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self._field(str(k), v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value

    def _field(self, name: str, value: Any) -> Any:
        key = _plain(name)
        if isinstance(value, str) and (key in _USER_AGENT_NAMES or key.endswith("useragent")):
            return f"[user agent {self.tag(value)}]"
        if (key in _ID_NAMES and isinstance(value, str | int) and not isinstance(value, bool)
                and value != ""):
            return self.identifier(name, value)
        if isinstance(value, str) and key in _COOKIE_NAMES:
            return f"[cookie {self.tag(value)}]"
        if isinstance(value, str) and key in _IP_NAMES:
            return self.ip(value)
        if key == "cookies" and isinstance(value, dict):
            return {self.text(str(k)): f"[cookie {self.tag(str(v))}]"
                    if isinstance(v, str | int | float) and not isinstance(v, bool) else None
                    for k, v in value.items()}
        if _is_contact(name, value):
            return self.identifier(name, value)
        return self.value(value)

    # -- events -----------------------------------------------------------------------

    def event(self, event: dict[str, Any]) -> dict[str, Any]:
        """A masked copy of ``event``, field by field (the module's docstring)."""
        out: dict[str, Any] = {}
        for key, value in event.items():
            if key == "event_id":
                out[key] = value
            elif key == "correlation_id" and isinstance(value, str):
                out[key] = digest(value)
            elif key == "anonymous_id":
                out[key] = self.identifier("id", value)
            elif key == "user":
                out[key] = self._user(value)
            elif key == "context" and isinstance(value, dict):
                out[key] = self._context(value)
            else:
                out[self.text(key)] = self._field(key, value)
        return out

    def _user(self, value: Any, name: str = "user") -> Any:
        if isinstance(value, dict):
            return {self.text(str(k)): self._user(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self._user(v, name) for v in value]
        return self.identifier(name, value)

    def _context(self, context: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in context.items():
            if key == "ip" and isinstance(value, str):
                out[key] = self.ip(value)
            else:
                out[self.text(key)] = self._field(key, value)
        return out


def _contact_kind(name: str) -> str | None:
    """``email`` or ``phone`` when the field ``name`` holds one, as its name says."""
    if is_phone_field(name):
        return "phone"
    return "email" if "email" in name.lower() else None


def _is_contact(name: str, value: Any) -> bool:
    kind = _contact_kind(name)
    if kind is None:
        return False
    return isinstance(value, str) or (
        kind == "phone" and isinstance(value, int) and not isinstance(value, bool)
    )


def _redacted(text: str) -> str:
    if len(text) < MIN_TEXT or not may_hold_personal_data(text):
        return text
    return redact_text(text)[0]
