"""Request bodies to raw events: one object, an array, or ``{"batch": [...]}``; and gzip
bodies decompressed within a limit (pure)."""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from relay.web import Problem

JSON_TYPES = ("application/json", "text/plain")
GZIP_ENCODINGS = ("gzip", "x-gzip")


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


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes | Problem:
    """The body as sent before ``Content-Encoding`` (gzip, or none), never more than
    ``limit`` bytes of it: decompression stops there (413), so a small body that inflates
    to gigabytes (a zip bomb) costs at most ``limit`` bytes of memory. Several gzip members
    one after another are one body, as RFC 1952 allows.

    ``decompress(gzip.compress(b"x" * 10), "gzip", 5)`` -> a 413 Problem.
    """
    name = (encoding or "").strip().lower()
    if name in ("", "identity"):
        return body
    if name not in GZIP_ENCODINGS:
        return Problem(
            415, f"Content-Encoding '{name}' not accepted; send gzip or an uncompressed body"
        )
    out = bytearray()
    data = body
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        while True:
            out += inflate.decompress(data, limit + 1 - len(out))  # at least 1: 0 is "all"
            if len(out) > limit:
                return Problem(413, f"body over {limit} bytes once decompressed")
            if inflate.unconsumed_tail:
                data = inflate.unconsumed_tail
            elif inflate.eof and inflate.unused_data:
                data = inflate.unused_data  # the next member
                inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            else:
                break
    except zlib.error as exc:
        return Problem(400, f"body: not valid gzip ({exc}); send gzip or drop Content-Encoding")
    if not inflate.eof:
        return Problem(400, "body: the gzip stream ends early (truncated)")
    return bytes(out)
