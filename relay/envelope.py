"""Normalize one incoming event into the envelope of SPEC section 3.

``normalize`` is the first thing every ingested event goes through, so it is on the hot path:
one pass copies and checks the payload (types, limits, depth), nothing is deep-copied twice,
and the input is never mutated.

    >>> normalize({"event": "purchase", "order_id": "O1", "consent": {"ad_storage": True}},
    ...           trusted=False, limits=Limits(), consent_map=DEFAULT_CONSENT_MAP, now_ms=0)
    {'event': 'purchase', 'time': '1970-01-01T00:00:00.000Z', 'consent': {'ads': 'granted'},
     'properties': {'order_id': 'O1'}}
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import unquote_plus

from relay.rules.model import Limits
from relay.types import Event

# Top-level keys of the envelope; anything else in a payload is a property (dataLayer form).
ENVELOPE_KEYS: Final = frozenset(
    {
        "event",
        "event_id",
        "time",
        "consent",
        "user",
        "context",
        "properties",
        "correlation_id",
        "schema",
        "source",
        "received_at",
        "anonymous_id",
    }
)
# Set by the relay itself; a browser payload cannot set them.
RELAY_KEYS: Final = ("source", "received_at", "correlation_id")
RELAY_CONTEXT_KEYS: Final = ("ip", "user_agent", "country", "gpc")

# Ad click identifiers: copied from the page URL's query into ``context.click_ids``.
CLICK_ID_PARAMS: Final = (
    "gclid",  # Google Ads
    "gbraid",  # Google Ads (iOS, app to web)
    "wbraid",  # Google Ads (iOS, web to app)
    "dclid",  # Google Display & Video 360
    "fbclid",  # Meta
    "msclkid",  # Microsoft Ads
    "ttclid",  # TikTok
    "li_fat_id",  # LinkedIn
    "twclid",  # X / Twitter
    "epik",  # Pinterest
    "rdt_cid",  # Reddit
    "yclid",  # Yandex
    "igshid",  # Instagram share id
    "sccid",  # Snapchat (sent as ScCid)
)
CLICK_ID_SET: Final = frozenset(CLICK_ID_PARAMS)

EVENT_NAME_MAX = 128
EVENT_ID_MAX = 128
_EVENT_NAME = re.compile(r"[\w .:/-]{1,128}")
_STATES: Final[dict[str, str]] = {"granted": "granted", "denied": "denied"}
_EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class EnvelopeError:
    """Why a payload is not a valid envelope: ``properties.value: required``."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class _Invalid(Exception):
    def __init__(self, field: str, message: str) -> None:
        self.error = EnvelopeError(field, message)


def kind_of(value: Any) -> str:
    """JSON-flavoured type names for error messages: ``a string``, ``an object``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


@functools.lru_cache(maxsize=8)
def _format_second(second: int) -> str:
    return (_EPOCH + timedelta(seconds=second)).isoformat(timespec="seconds")


def format_ms(ms: int) -> str:
    """Epoch milliseconds -> ``2026-11-28T12:00:00.000Z`` (the date part is cached per second:
    every event formats its receive time)."""
    second, milli = divmod(ms, 1000)
    return f"{_format_second(second)}.{milli:03d}Z"


def parse_time(value: Any) -> str | None:
    """An ISO-8601 string or epoch milliseconds -> ISO-8601 UTC with ``Z``; None if invalid.

    An ISO string without an offset is taken as UTC.
    """
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
            if dt.tzinfo is not None:
                dt = dt.astimezone(UTC).replace(tzinfo=None)
            return dt.isoformat(timespec="milliseconds") + "Z"
        except (ValueError, OverflowError):
            return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            return None
        try:
            return format_ms(math.floor(value))
        except OverflowError:
            return None
    return None


def click_ids(url: str) -> dict[str, str]:
    """The ad click ids in ``url``'s query, by canonical (lowercase) name; first one wins."""
    query = url.partition("#")[0].partition("?")[2]
    found: dict[str, str] = {}
    if not query:
        return found
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        name = key.lower()
        if name in CLICK_ID_SET and value and name not in found:
            found[name] = unquote_plus(value)
    return found


def _consent(raw: Any, consent_map: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise _Invalid("consent", f"expected an object, got {kind_of(raw)}")
    explicit: dict[str, str] = {}
    derived: dict[str, str] = {}
    for key, value in raw.items():
        if value is True:
            state = "granted"
        elif value is False:
            state = "denied"
        elif isinstance(value, str) and value.lower() in _STATES:
            state = _STATES[value.lower()]
        else:
            raise _Invalid(f"consent.{key}", "expected 'granted', 'denied' or a boolean")
        purpose = consent_map.get(key)
        if purpose is None:
            explicit[key] = state
        elif derived.get(purpose) != "denied":
            # Several Consent Mode keys may map to one purpose: all present must be granted.
            derived[purpose] = state
    derived.update(explicit)  # an explicit purpose key wins over Consent Mode
    return derived


def _copy_dict(d: dict[str, Any], path: str, depth: int, lim: Limits) -> dict[str, Any]:
    if depth > lim.depth:
        raise _Invalid(path, f"nested deeper than {lim.depth} levels")
    max_chars = lim.string_chars
    out: dict[str, Any] = {}
    for key, value in d.items():
        if len(key) > max_chars:
            raise _Invalid(path, f"a key is longer than {max_chars} characters")
        t = type(value)
        if t is str:
            if len(value) > max_chars:
                raise _Invalid(f"{path}.{key}", f"longer than {max_chars} characters")
            out[key] = value
        elif t is dict:
            out[key] = _copy_dict(value, f"{path}.{key}", depth + 1, lim)
        elif t is list:
            out[key] = _copy_list(value, f"{path}.{key}", depth + 1, lim)
        else:
            out[key] = value
    return out


def _copy_list(items: list[Any], path: str, depth: int, lim: Limits) -> list[Any]:
    if depth > lim.depth:
        raise _Invalid(path, f"nested deeper than {lim.depth} levels")
    max_chars = lim.string_chars
    out: list[Any] = []
    for i, value in enumerate(items):
        t = type(value)
        if t is str:
            if len(value) > max_chars:
                raise _Invalid(f"{path}[{i}]", f"longer than {max_chars} characters")
            out.append(value)
        elif t is dict:
            out.append(_copy_dict(value, f"{path}[{i}]", depth + 1, lim))
        elif t is list:
            out.append(_copy_list(value, f"{path}[{i}]", depth + 1, lim))
        else:
            out.append(value)
    return out


def _object(raw: dict[str, Any], key: str, lim: Limits) -> dict[str, Any] | None:
    value = raw.get(key)
    if value is None:
        return None
    if type(value) is not dict:
        raise _Invalid(key, f"expected an object, got {kind_of(value)}")
    return _copy_dict(value, key, 1, lim)


def _short_string(raw: dict[str, Any], key: str, max_chars: int) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _Invalid(key, f"expected a string, got {kind_of(value)}")
    if not value:
        raise _Invalid(key, "must not be empty")
    if len(value) > max_chars:
        raise _Invalid(key, f"longer than {max_chars} characters")
    return value


def _event_name(raw: dict[str, Any]) -> str:
    name = raw.get("event")
    if name is None:
        raise _Invalid("event", "required")
    if not isinstance(name, str):
        raise _Invalid("event", f"expected a string, got {kind_of(name)}")
    if not name.strip():
        raise _Invalid("event", "must not be empty")
    if len(name) > EVENT_NAME_MAX:
        raise _Invalid("event", f"longer than {EVENT_NAME_MAX} characters")
    if not _EVENT_NAME.fullmatch(name):
        raise _Invalid("event", "may contain only letters, digits, spaces and _ . : / -")
    return name


def _normalize(
    raw: dict[str, Any],
    trusted: bool,
    lim: Limits,
    consent_map: Mapping[str, str],
    now_ms: int,
) -> Event:
    out: Event = {"event": _event_name(raw)}
    event_id = _short_string(raw, "event_id", EVENT_ID_MAX)
    if event_id is not None:
        out["event_id"] = event_id

    raw_time = raw.get("time")
    if raw_time is None:
        out["time"] = format_ms(now_ms)
    else:
        parsed = parse_time(raw_time)
        if parsed is None:
            raise _Invalid("time", "expected an ISO-8601 time or epoch milliseconds")
        out["time"] = parsed

    raw_consent = raw.get("consent")
    if raw_consent is not None:
        out["consent"] = _consent(raw_consent, consent_map)

    for key in ("anonymous_id", *(RELAY_KEYS if trusted else ())):
        value = _short_string(raw, key, lim.string_chars)
        if value is not None:
            out[key] = value
    schema = raw.get("schema")
    if schema is not None:
        if isinstance(schema, bool) or not isinstance(schema, int | str):
            raise _Invalid("schema", f"expected a number or a string, got {kind_of(schema)}")
        out["schema"] = schema

    user = _object(raw, "user", lim)
    if user is not None:
        out["user"] = user

    context = _object(raw, "context", lim)
    if context is not None:
        if not trusted:
            for key in RELAY_CONTEXT_KEYS:
                context.pop(key, None)
        page = context.get("page")
        if "click_ids" not in context and type(page) is dict:
            url = page.get("url")
            if type(url) is str and "?" in url:
                ids = click_ids(url)
                if ids:
                    context["click_ids"] = ids
        out["context"] = context

    properties = _object(raw, "properties", lim)
    flat = {k: v for k, v in raw.items() if k not in ENVELOPE_KEYS}
    if flat:  # dataLayer form: extra top-level keys are properties; explicit ones win
        flat_copy = _copy_dict(flat, "properties", 1, lim)
        if properties is None:
            properties = flat_copy
        else:
            for key, value in flat_copy.items():
                properties.setdefault(key, value)
    if properties is not None:
        if len(properties) > lim.properties:
            raise _Invalid("properties", f"more than {lim.properties} properties")
        out["properties"] = properties
    return out


def normalize(
    raw: Any,
    *,
    trusted: bool,
    limits: Limits,
    consent_map: Mapping[str, str],
    now_ms: int,
) -> Event | EnvelopeError:
    """Check ``raw`` against the envelope rules and return a new, normalized event.

    ``trusted`` is True for authenticated sources (webhook, Segment): their ``context`` and
    ``correlation_id`` are kept as sent. For browsers the relay-set fields are dropped, and
    the caller sets them from the request afterwards. ``time`` becomes ISO-8601 UTC with
    millisecond precision (``now_ms`` when absent); consent values become ``granted`` or
    ``denied`` per purpose; click ids in ``context.page.url`` are copied to
    ``context.click_ids``. A ``null`` optional field is treated as absent.
    """
    if type(raw) is not dict:
        return EnvelopeError("", f"expected a JSON object, got {kind_of(raw)}")
    try:
        return _normalize(raw, trusted, limits, consent_map, now_ms)
    except _Invalid as exc:
        return exc.error
