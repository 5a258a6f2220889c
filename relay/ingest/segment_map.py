"""Segment messages -> relay envelopes (pure): ``envelope``.

docs/http.md has the whole table. In short: ``messageId`` is the ``event_id``; the time is
Segment's clock-skew-corrected ``timestamp``; ``userId`` is ``user.id``; the identity traits
(``email``, ``phone``, ``firstName``, ``lastName``, ``birthday``, ``address``) become
``user.*``; the other traits of ``identify`` and ``group`` become the event's ``properties``,
so the event's contract checks them as it checks any event's properties.

    >>> envelope("identify", {"messageId": "m1", "userId": "u1",
    ...                       "traits": {"email": "ann@example.com", "plan": "pro"}},
    ...          sent_at=None, received_ms=0)
    {'event': 'identify', 'event_id': 'm1', 'user': {'id': 'u1', 'email': 'ann@example.com'},
     'properties': {'plan': 'pro'}}
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from relay.destinations.segment import (
    ADDRESS_FIELDS,
    EVENTS_BY_TYPE,
    IDENTITY_TRAITS,
    MESSAGE_TYPES,
)
from relay.engine.envelope import format_ms, kind_of
from relay.engine.identity import new_id

# Segment's context fields the relay keeps, and their envelope names.
CONTEXT_FIELDS: Final = (
    ("ip", "ip"),
    ("userAgent", "user_agent"),
    ("page", "page"),
    ("campaign", "campaign"),
    ("locale", "locale"),
    ("timezone", "timezone"),
    ("library", "library"),
    ("groupId", "group_id"),
)
# What a derived messageId leaves out: what a library changes when it retries.
_NOT_THE_MESSAGE: Final = frozenset({"sentAt", "writeKey", "_metadata", "receivedAt"})


class MessageError(ValueError):
    """A message Segment itself would refuse, before it is an envelope: the client's answer
    (``str(error)``) names Segment's field."""


def epoch_ms(value: Any) -> float | None:
    """An ISO-8601 time (no offset means UTC) or epoch milliseconds -> epoch milliseconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp() * 1000


def corrected_time(timestamp: Any, sent_at: Any, received_ms: int) -> Any:
    """Segment's clock-skew correction: ``receivedAt - (sentAt - timestamp)``, when the
    client sent both times (the device's clock may be off; the relay's is not). Otherwise,
    or when one of them is not a time, ``timestamp`` as it is (the envelope check reports a
    bad one).

    ``corrected_time("2026-11-28T12:00:00Z", "2026-11-28T12:00:05Z", <12:01:00>)``
    -> ``"2026-11-28T12:00:55.000Z"``: sent 5 seconds after it happened, so it happened 5
    seconds before the relay received it.
    """
    happened, sent = epoch_ms(timestamp), epoch_ms(sent_at)
    if happened is None or sent is None:
        return timestamp
    try:
        return format_ms(round(received_ms - (sent - happened)))
    except (OverflowError, ValueError):
        return timestamp


def message_id(msg: dict[str, Any]) -> str:
    """The ``messageId`` Segment's API adds when a client sent none. With a ``timestamp``
    it is derived from the message (what a retry keeps: not ``sentAt``), so a retried
    request is a duplicate; without one there is nothing stable to derive it from."""
    if msg.get("timestamp") is None:
        return new_id("seg-")
    kept = {k: v for k, v in msg.items() if k not in _NOT_THE_MESSAGE}
    try:
        blob = orjson.dumps(kept, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # keys JSON cannot sort (it never produces them)
        return new_id("seg-")
    return "seg-" + hashlib.sha256(blob).hexdigest()[:32]


def identity(traits: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    """Move the identity traits into ``user`` (where a value is not there already); the
    other traits are returned."""
    rest = dict(traits)
    for theirs, ours in IDENTITY_TRAITS:
        for name in (theirs, _snake(theirs)):
            value = rest.get(name)
            if value is None:
                continue
            del rest[name]
            if ours == "date_of_birth" and isinstance(value, str):
                value = value[:10] if value[4:5] == "-" and value[7:8] == "-" else value
            user.setdefault(ours, value)
    address = rest.get("address")
    if isinstance(address, dict):
        del rest["address"]
        mapped = user.setdefault("address", {})
        if isinstance(mapped, dict):
            for theirs, ours in ADDRESS_FIELDS:
                for name in (theirs, _snake(theirs)):
                    if address.get(name) is not None:
                        mapped.setdefault(ours, address[name])
            if not mapped:
                del user["address"]
    return rest


def _snake(name: str) -> str:
    """``firstName`` -> ``first_name``: Segment reads traits either way."""
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def _traits(msg: dict[str, Any], key: str) -> dict[str, Any]:
    traits = msg.get(key)
    if traits is None:
        return {}
    if not isinstance(traits, dict):
        raise MessageError(f"{key}: expected an object, got {kind_of(traits)}")
    return traits


def _context(given: Any, out: dict[str, Any], user: dict[str, Any]) -> None:
    if given is None:
        return
    if not isinstance(given, dict):
        raise MessageError(f"context: expected an object, got {kind_of(given)}")
    context: dict[str, Any] = {}
    for theirs, ours in CONTEXT_FIELDS:
        if given.get(theirs) is not None:
            context[ours] = given[theirs]
    out["context"] = context
    consent = given.get("consent")
    if isinstance(consent, dict) and isinstance(consent.get("categoryPreferences"), dict):
        out["consent"] = consent["categoryPreferences"]
    traits = given.get("traits")
    if isinstance(traits, dict):
        identity(traits, user)  # only who the user is; other context traits are not kept


def envelope(kind: str | None, msg: Any, *, sent_at: Any, received_ms: int) -> Any:
    """One Segment message -> a relay envelope. ``kind`` is the call's type (``track``,
    ...), None for a batch, whose messages each name their ``type``. ``sent_at`` is the
    request's ``sentAt`` (a message's own wins). Anything that is not an object is returned
    as it is, for the envelope check to report; ``MessageError`` when Segment would refuse it.
    """
    if not isinstance(msg, dict):
        return msg
    if kind is None:
        kind = msg.get("type")
        if kind not in MESSAGE_TYPES:
            given = f"'{kind}'" if isinstance(kind, str) else kind_of(kind)
            raise MessageError(
                f"type: {given} is not one of {', '.join(MESSAGE_TYPES)} (each message of a "
                "batch names its type)"
            )
    if msg.get("userId") is None and msg.get("anonymousId") is None:
        raise MessageError("userId or anonymousId: required (Segment refuses a message "
                           "with neither)")
    out: dict[str, Any] = {
        "event": msg.get("event") if kind == "track" else EVENTS_BY_TYPE[kind],
        "event_id": msg["messageId"] if msg.get("messageId") is not None else message_id(msg),
    }
    timestamp = msg.get("timestamp", msg.get("originalTimestamp"))
    if timestamp is not None:
        sent = msg.get("sentAt") if msg.get("sentAt") is not None else sent_at
        out["time"] = corrected_time(timestamp, sent, received_ms)
    user: dict[str, Any] = {}
    if msg.get("userId") is not None:
        user["id"] = msg["userId"]
    if msg.get("anonymousId") is not None:
        out["anonymous_id"] = msg["anonymousId"]
    properties = msg.get("properties")
    if properties is not None and not isinstance(properties, dict):
        raise MessageError(f"properties: expected an object, got {kind_of(properties)}")
    props = dict(properties or {})
    if kind == "identify":
        for key, value in identity(_traits(msg, "traits"), user).items():
            props.setdefault(key, value)
    elif kind == "group":
        if msg.get("groupId") is None:
            raise MessageError("groupId: required for group")
        props["group_id"] = msg["groupId"]
        for key, value in _traits(msg, "traits").items():  # the group's, not the user's
            props.setdefault(key, value)
    elif kind == "alias":
        if msg.get("previousId") is None:
            raise MessageError("previousId: required for alias")
        props["previous_id"] = msg["previousId"]
    elif kind in ("page", "screen"):
        for key in ("name", "category"):
            if msg.get(key) is not None:
                props.setdefault(key, msg[key])
    _context(msg.get("context"), out, user)
    if user:
        out["user"] = user
    if props or properties is not None:
        out["properties"] = props
    return out
