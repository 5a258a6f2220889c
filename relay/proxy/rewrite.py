"""Vendor-aware routes: the hit read whole (at most ``max_body`` bytes), decoded as the
vendor's library encodes it, cleaned by the route's pipeline and options
(``relay.proxy.hygiene``), and encoded again the same way.

gzip is undone and redone here for every vendor: a body with ``Content-Encoding: gzip``
keeps it, and a body that is gzip by its magic bytes without that header (posthog-js) is
sent back gzipped without it. The ``Referer`` (the page the hit was sent from) is cleaned as
the pipeline cleans page URLs. Decoded, a body may be at most ``DECODED_FACTOR`` times
``max_body`` (a small gzip bomb stays small). Any other ``Content-Encoding``, and a body the
vendor's format cannot read, is refused with 400: it is never forwarded as it came.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from relay.pipeline.url import filter_query
from relay.proxy.hygiene import Hygiene, clean
from relay.proxy.target import query_filter
from relay.proxy.vendors.base import (
    GZIP_MAGIC,
    TooLarge,
    Undecodable,
    VendorFormat,
    gunzip,
    gzip_bytes,
)

DECODED_FACTOR = 16


class BodyTooLarge(Exception):
    """The request body is over the route's ``max_body``."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """The request to send instead of the browser's: its body, its (raw) query, and the
    body headers to set (None removes one)."""

    body: bytes
    query: bytes
    headers: dict[str, str | None] = field(default_factory=dict)


async def read_body(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
    return bytes(body)


def rewrite(
    fmt: VendorFormat,
    body: bytes,
    headers: Mapping[str, str],
    query: bytes,
    hygiene: Hygiene,
    limit: int,
) -> Prepared:
    """The cleaned request for a vendor hit. Raises ``Undecodable`` or ``TooLarge``.

    ``headers`` are the request's, with lowercase names; ``query`` the raw query already
    cleaned by the route's ``query`` options; ``limit`` the decoded size bound.
    """
    encoding = headers.get("content-encoding", "").strip().lower()
    gzip_header = encoding in ("gzip", "x-gzip")
    if encoding not in ("", "identity") and not gzip_header:
        raise Undecodable(f"Content-Encoding {encoding} is not decoded; send the body "
                          "uncompressed or gzip")
    gzipped = gzip_header or body[:2] == GZIP_MAGIC
    if gzipped:
        body = gunzip(body, limit)
    elif len(body) > limit:
        raise TooLarge(f"the body is over {limit} bytes")
    payload = fmt.decode(body, headers, query.decode("latin-1"))
    clean(payload, hygiene)
    encoded = fmt.encode(payload)
    new_query = encoded.query
    if payload.items:
        new_query = fmt.query(new_query, hygiene.route.forward_ip)
    out = encoded.body
    set_headers = dict(encoded.headers)
    if gzipped and out:
        out = gzip_bytes(out)
    set_headers["content-encoding"] = "gzip" if gzip_header and out else None
    referer = headers.get("referer")
    if referer:  # the page the hit was sent from: its URL, as the pipeline cleans URLs
        route = hygiene.route
        referer, _ = filter_query(referer, query_filter(route, hygiene.keep_click_ids))
        cleaned = hygiene.role("context.page.url", referer)
        set_headers["referer"] = cleaned if isinstance(cleaned, str) and cleaned else None
    return Prepared(out, new_query.encode("latin-1"), set_headers)
