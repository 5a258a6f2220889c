"""Request bodies to raw events: one object, an array, or ``{"batch": [...]}`` (pure)."""

from __future__ import annotations

from typing import Any

import orjson

from relay.web import Problem

JSON_TYPES = ("application/json", "text/plain")


def media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def parse_body(
    body: bytes, content_type: str | None, max_batch: int, allowed: tuple[str, ...] = JSON_TYPES
) -> list[Any] | Problem:
    """One object, an array, or ``{"batch": [...]}`` -> the list of raw events."""
    mt = media_type(content_type)
    if mt not in allowed:
        return Problem(
            415, f"content type '{mt or 'none'}' not accepted; send {' or '.join(allowed)}"
        )
    if not body.strip():
        return Problem(400, 'body: empty; send a JSON object, an array or {"batch": [...]}')
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return Problem(400, f"body: invalid JSON ({exc})")
    if isinstance(data, dict) and "batch" in data and "event" not in data:
        data = data["batch"]
        if not isinstance(data, list):
            return Problem(400, "batch: expected an array of events")
    items = data if isinstance(data, list) else [data]
    if not items:
        return Problem(400, "body: no events")
    if len(items) > max_batch:
        return Problem(413, f"batch: {len(items)} events, at most {max_batch} in one request")
    return items
