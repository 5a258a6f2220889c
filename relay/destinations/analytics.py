"""What the product-analytics destinations (``posthog``, ``mixpanel``, ``matomo``) read from
an event the same way: who it is about, when it happened, the page, the device, the campaign
and the click ids, and the stable ids derived from ``event_id`` that make retries
idempotent. Pure functions of the (post-pipeline) event.

    distinct_id({"user": {"id": "u_42"}, "anonymous_id": "a1"})  -> ("user.id", "u_42")
    stable_uuid("posthog", "evt_1")  -> the same UUID on every attempt and in every process
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

from relay.destinations.base import is_sha256_hex, sha256_hex
from relay.personal import is_phone_field, normalize_identifier
from relay.types import Event

# The relay's own UUID namespace: ids derived from event ids with uuid5 (RFC 4122, SHA-1).
NAMESPACE = uuid.UUID("6f1d6c1e-2b8e-5c55-9a53-3c0f6a3e9b71")
# Where a distinct id comes from, in order of preference.
IDENTITY_PATHS = ("user.id", "anonymous_id", "correlation_id")
CAMPAIGN_KEYS = ("source", "medium", "name", "term", "content")


def stable_uuid(kind: str, value: str) -> str:
    """``uuid5(NAMESPACE, "<kind>:<value>")`` as text: a valid UUID that a retry, a replay and
    another replica all derive alike, so the vendor can deduplicate by it."""
    return str(uuid.uuid5(NAMESPACE, f"{kind}:{value}"))


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | str):
        text = str(value).strip()
        return text or None
    return None


def _get(event: Event, dotted: str) -> Any:
    value: Any = event
    for key in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def distinct_id(event: Event) -> tuple[str, str] | None:
    """(where it came from, the id): ``user.id``, else ``anonymous_id``, else the
    ``correlation_id`` (the relay's signed visit cookie); None when the event has none."""
    for path in IDENTITY_PATHS:
        text = _text(_get(event, path))
        if text is not None:
            return path, text
    return None


def event_time(event: Event) -> datetime | None:
    """When the event happened: its ``time``, else its ``received_at`` (both ISO-8601 UTC
    after the envelope), as an aware datetime; None when neither parses."""
    for key in ("time", "received_at"):
        value = event.get(key)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                continue
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
    return None


def received_time(event: Event) -> datetime | None:
    value = event.get("received_at")
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
    return None


def page(event: Event) -> dict[str, str]:
    """``context.page``'s string fields (``url``, ``referrer``, ``title``)."""
    raw = _get(event, "context.page")
    if not isinstance(raw, dict):
        return {}
    return {k: v for k in ("url", "referrer", "title") if isinstance(v := raw.get(k), str) and v}


def url_parts(url: str) -> tuple[str, str, str, str]:
    """(scheme, host, path, query) of an absolute URL; empty strings where it has none."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "", "", "", ""
    return parts.scheme, parts.hostname or "", parts.path, parts.query


def context_text(event: Event, key: str) -> str | None:
    """A string field of ``context`` (``ip``, ``user_agent``, ``country``)."""
    return _text(_get(event, f"context.{key}"))


def device(event: Event) -> dict[str, str]:
    """The pipeline's coarse ``context.device`` (``type``, ``os``, ``browser``)."""
    raw = _get(event, "context.device")
    if not isinstance(raw, dict):
        return {}
    return {k: v for k in ("type", "os", "browser") if isinstance(v := raw.get(k), str) and v}


def campaign(event: Event) -> dict[str, str]:
    """``context.campaign`` (the ``utm`` step's collapse of ``utm_*``) by its own keys."""
    raw = _get(event, "context.campaign")
    if not isinstance(raw, dict):
        return {}
    return {k: v for k in CAMPAIGN_KEYS if isinstance(v := raw.get(k), str) and v}


def click_ids(event: Event) -> dict[str, str]:
    """``context.click_ids`` (``gclid``, ``fbclid``, ...) as the pipeline kept them."""
    raw = _get(event, "context.click_ids")
    if not isinstance(raw, dict):
        return {}
    return {str(k): v for k, v in raw.items() if isinstance(v, str) and v}


def properties(event: Event, names: dict[str, str]) -> dict[str, Any]:
    """``properties``, each key renamed through ``names`` (the ``properties`` setting)."""
    raw = event.get("properties")
    if not isinstance(raw, dict):
        return {}
    return {names.get(str(k), str(k)): v for k, v in raw.items()}


def hashed_identifier(event: Event, dotted: str) -> str | None:
    """``user.email`` / ``user.phone`` as a SHA-256 hex: passed on when the pipeline already
    hashed it, else normalized the way the ``hash`` step does and hashed here. A raw value
    never leaves this function."""
    value = _get(event, dotted)
    if is_sha256_hex(value):
        return str(value)
    text = _text(value)
    if text is None or not isinstance(value, str):
        return None
    normalized = normalize_identifier(text, is_phone_field(dotted.rsplit(".", 1)[-1]))
    return sha256_hex(normalized) if normalized else None


def json_size(item: Any) -> int:
    """Bytes of ``item`` as JSON (what the vendor's per-event limit measures)."""
    return len(orjson.dumps(item))
