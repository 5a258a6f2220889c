"""Normalize one incoming event into the envelope of SPEC section 3.

``normalize`` is the first thing every ingested event goes through, so it is on the hot path:
one pass copies and checks the payload (types, limits, depth), nothing is deep-copied twice,
and the input is never mutated. It is kept cheap without a second, "fast" code path that
could drift from the checks: containers are copied by ``dict.copy``/``list.copy`` and the
Python loop only checks lengths and swaps in copies of nested containers; the time is
formatted from caches; a valid event name is accepted by one regex match. Checks run in a
fixed order (the order of ``_normalize``), so an invalid payload always gets the same error.

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

from relay.pipeline.params import CLICK_ID_SET
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
RELAY_CONTEXT_KEYS: Final = ("ip", "user_agent", "country", "gpc", "bot")


# The optional short strings of the top level, in the order they are checked.
_BROWSER_STRINGS: Final = ("anonymous_id",)
_TRUSTED_STRINGS: Final = ("anonymous_id", *RELAY_KEYS)
_RELAY_CONTEXT_KEY_SET: Final = frozenset(RELAY_CONTEXT_KEYS)

EVENT_NAME_MAX = 128
EVENT_ID_MAX = 128
CONSENT_KEY_CHARS = 64  # purpose and Consent Mode names are short
_EVENT_NAME = re.compile(r"[\w .:/-]{1,128}")
_STATES: Final[dict[str, str]] = {"granted": "granted", "denied": "denied"}
_EPOCH = datetime(1970, 1, 1)
# ".000Z" .. ".999Z": formatting the milliseconds is a tuple index, not a format call.
_MILLIS: Final = tuple(f".{milli:03d}Z" for milli in range(1000))


@dataclass(frozen=True, slots=True)
class EnvelopeError:
    """Why a payload is not a valid envelope: ``properties.value: required``.

    ``message`` is always the relay's own words; ``field`` may hold keys the client chose
    (``consent.<key>``, ``properties.<key>.<key>``), so ``logged`` names only its envelope key.
    """

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message

    @property
    def logged(self) -> str:
        """The error for a log line: ``properties: longer than 2048 characters``."""
        top = self.field.partition(".")[0].partition("[")[0]
        return f"{top}: {self.message}" if top else self.message


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
    return _format_second(second) + _MILLIS[milli]


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
    """The ad click ids in ``url``'s query, by canonical (lowercase) name; first one wins.

    ``unquote_plus`` is skipped for values with nothing to decode (most click ids): it would
    return them unchanged.
    """
    query = url.partition("#")[0].partition("?")[2]
    found: dict[str, str] = {}
    if not query:
        return found
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        name = key.lower()
        if name in CLICK_ID_SET and value and name not in found:
            found[name] = unquote_plus(value) if "%" in value or "+" in value else value
    return found


def _consent(raw: Any, consent_map: Mapping[str, str], max_keys: int) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise _Invalid("consent", f"expected an object, got {kind_of(raw)}")
    if len(raw) > max_keys:
        raise _Invalid("consent", f"more than {max_keys} keys")
    explicit: dict[str, str] = {}
    derived: dict[str, str] = {}
    for key, value in raw.items():
        if value is True:
            state: str | None = "granted"
        elif value is False:
            state = "denied"
        elif isinstance(value, str):
            state = _STATES.get(value) or _STATES.get(value.lower())
        else:
            state = None
        if len(key) > CONSENT_KEY_CHARS:
            raise _Invalid("consent", f"a key is longer than {CONSENT_KEY_CHARS} characters")
        if state is None:
            raise _Invalid(f"consent.{key}", "expected 'granted', 'denied' or a boolean")
        purpose = consent_map.get(key)
        if purpose is None:
            explicit[key] = state
        elif derived.get(purpose) != "denied":
            # Several Consent Mode keys may map to one purpose: all present must be granted.
            derived[purpose] = state
    if explicit:
        derived.update(explicit)  # an explicit purpose key wins over Consent Mode
    return derived


INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # what JSON encoders (orjson) can write


def _copy_dict(d: dict[str, Any], path: str, depth: int, lim: Limits) -> dict[str, Any]:
    """A copy of ``d`` that the event owns, checked against ``lim``: nesting depth, key and
    string lengths. The first problem in document order raises ``_Invalid`` with its path.

    Why copy at all, when the payload is a fresh ``orjson.loads`` result? Because the event
    is written to afterwards while the payload is still read: the engine sets ``context.gpc``
    and the other browser context fields on the event and then reads the *payload's*
    ``context.gpc`` (``engine._says_gpc``); merging a held browser copy writes at any path
    (``paths.set_``); pipeline steps rewrite nested fields and may run on the event itself;
    and ``relay test`` passes events that belong to the loaded rules. A shared nested dict
    would carry those writes back into the payload. Dropping the copy would save only the
    ``dict.copy`` calls, since every value must be visited for the limits anyway.

    ``d.copy()`` copies in C; the loop only checks lengths and replaces nested containers by
    their checked copies. A dict or list subclass is kept as a plain value (not checked, not
    copied), as before; JSON never produces one.
    """
    if depth > lim.depth:
        raise _Invalid(path, f"nested deeper than {lim.depth} levels")
    max_chars = lim.string_chars
    out = d.copy()
    for key, value in d.items():
        if len(key) > max_chars:
            raise _Invalid(path, f"a key is longer than {max_chars} characters")
        t = type(value)
        if t is str:
            if len(value) > max_chars:
                raise _Invalid(f"{path}.{key}", f"longer than {max_chars} characters")
        elif t is dict:
            out[key] = _copy_dict(value, f"{path}.{key}", depth + 1, lim)
        elif t is list:
            out[key] = _copy_list(value, f"{path}.{key}", depth + 1, lim)
        elif t is int and not INT_MIN <= value <= INT_MAX:
            raise _Invalid(f"{path}.{key}", "an integer outside the 64-bit range")
    return out


def _copy_list(items: list[Any], path: str, depth: int, lim: Limits) -> list[Any]:
    """``_copy_dict`` for arrays."""
    if depth > lim.depth:
        raise _Invalid(path, f"nested deeper than {lim.depth} levels")
    max_chars = lim.string_chars
    out = items.copy()
    for i, value in enumerate(items):
        t = type(value)
        if t is str:
            if len(value) > max_chars:
                raise _Invalid(f"{path}[{i}]", f"longer than {max_chars} characters")
        elif t is dict:
            out[i] = _copy_dict(value, f"{path}[{i}]", depth + 1, lim)
        elif t is list:
            out[i] = _copy_list(value, f"{path}[{i}]", depth + 1, lim)
        elif t is int and not INT_MIN <= value <= INT_MAX:
            raise _Invalid(f"{path}[{i}]", "an integer outside the 64-bit range")
    return out


def _object(value: Any, key: str, lim: Limits) -> dict[str, Any]:
    """The checked copy of the object ``raw[key]`` (its value, not None)."""
    if type(value) is not dict:
        raise _Invalid(key, f"expected an object, got {kind_of(value)}")
    return _copy_dict(value, key, 1, lim)


def _short_string(value: Any, key: str, max_chars: int) -> str:
    """``raw[key]`` (its value, not None) as a non-empty string of at most ``max_chars``;
    an integer becomes its decimal string."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _Invalid(key, f"expected a string, got {kind_of(value)}")
    if not value:
        raise _Invalid(key, "must not be empty")
    if len(value) > max_chars:
        raise _Invalid(key, f"longer than {max_chars} characters")
    return value


def _event_id(value: Any) -> str:
    """``raw["event_id"]`` (not None) as a dedup key that can also travel as an HTTP header
    (the webhook destination's ``Idempotency-Key``): printable (no tab, newline or other
    control character, no Unicode separator but the space) and without whitespace at either
    end. Refused, not trimmed: ``" x1"`` and ``"x1"`` are different keys to the client."""
    event_id = _short_string(value, "event_id", EVENT_ID_MAX)
    if not event_id.isprintable():
        raise _Invalid(
            "event_id", "may contain only printable characters (no tab, newline or other "
            "control character)"
        )
    if event_id[0].isspace() or event_id[-1].isspace():
        raise _Invalid("event_id", "must not start or end with whitespace")
    return event_id


def _event_name(name: Any) -> str:
    """``name`` if it is a valid event name. A valid name passes the pattern (which also
    bounds its length) and is not all spaces; anything else goes through the checks one by
    one, so the error says what is wrong."""
    if isinstance(name, str) and _EVENT_NAME.fullmatch(name) and name.strip():
        return name
    if name is None:
        raise _Invalid("event", "required")
    if not isinstance(name, str):
        raise _Invalid("event", f"expected a string, got {kind_of(name)}")
    if not name.strip():
        raise _Invalid("event", "must not be empty")
    if len(name) > EVENT_NAME_MAX:
        raise _Invalid("event", f"longer than {EVENT_NAME_MAX} characters")
    raise _Invalid("event", "may contain only letters, digits, spaces and _ . : / -")


def _normalize(
    raw: dict[str, Any],
    trusted: bool,
    lim: Limits,
    consent_map: Mapping[str, str],
    now_ms: int,
) -> Event:
    get = raw.get
    out: Event = {"event": _event_name(get("event"))}
    event_id = get("event_id")
    if event_id is not None:
        out["event_id"] = _event_id(event_id)

    raw_time = get("time")
    if raw_time is None:
        out["time"] = format_ms(now_ms)
    else:
        parsed = parse_time(raw_time)
        if parsed is None:
            raise _Invalid("time", "expected an ISO-8601 time or epoch milliseconds")
        out["time"] = parsed

    raw_consent = get("consent")
    if raw_consent is not None:
        out["consent"] = _consent(raw_consent, consent_map, lim.properties)

    for key in _TRUSTED_STRINGS if trusted else _BROWSER_STRINGS:
        value = get(key)
        if value is not None:
            out[key] = _short_string(value, key, lim.string_chars)
    schema = get("schema")
    if schema is not None:
        if isinstance(schema, bool) or not isinstance(schema, int | str):
            raise _Invalid("schema", f"expected a number or a string, got {kind_of(schema)}")
        out["schema"] = schema

    user = get("user")
    if user is not None:
        out["user"] = _object(user, "user", lim)

    raw_context = get("context")
    if raw_context is not None:
        context = _object(raw_context, "context", lim)
        if not trusted and not _RELAY_CONTEXT_KEY_SET.isdisjoint(context):
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

    raw_properties = get("properties")
    properties = None if raw_properties is None else _object(raw_properties, "properties", lim)
    if not ENVELOPE_KEYS.issuperset(raw):
        # dataLayer form: extra top-level keys are properties; explicit ones win.
        flat = {k: v for k, v in raw.items() if k not in ENVELOPE_KEYS}
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
