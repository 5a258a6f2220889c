"""What every vendor format module shares: the decoded ``Payload`` and how to read its
events (``Shape``), the re-encoded request (``Encoded``), the consent answer (``Answer``),
and the codecs the libraries use (gzip, base64, form and query strings, JSON).

Pure: no I/O. Decoding is bounded (``limit`` decoded bytes) and raises ``Undecodable`` with a
sentence a developer can act on; the proxy answers it with 400 and forwards nothing.

    >>> pairs = parse_pairs("v=2&dl=https%3A%2F%2Fshop.example%2F%3Fq%3D1&en=page_view")
    >>> [(p.name, p.value) for p in pairs]
    [('v', '2'), ('dl', 'https://shop.example/?q=1'), ('en', 'page_view')]
    >>> render_pairs(pairs, {"v": "2", "dl": "https://shop.example/", "en": "page_view"})
    'v=2&dl=https%3A%2F%2Fshop.example%2F&en=page_view'
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote_plus

Query = str  # the raw query string, still percent-encoded, without "?"
GZIP_MAGIC = b"\x1f\x8b"
# encodeURIComponent's unreserved characters: what the libraries leave unencoded.
_URI_COMPONENT_SAFE = "-_.!~*'()"


class Undecodable(ValueError):
    """The body is not what the vendor's library sends (answered 400, never forwarded)."""


class TooLarge(ValueError):
    """The body, once decoded, is over the bound (answered 413)."""


@dataclass(frozen=True, slots=True)
class Field:
    """The vendor's field ``theirs`` (a dotted path in one of its events) means the
    envelope's ``ours`` (``context.page.url``, ``user.email``, ...)."""

    ours: str
    theirs: str


def _never(name: str) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class Shape:
    """How to read one kind of vendor event as an envelope, and write it back.

    ``fields`` are lifted into the envelope, run through the pipeline and written back (a
    field the pipeline removed is removed). ``properties`` names the dict (their path, ``""``
    for the event itself) whose keys are the event's own properties, except the ``system``
    ones (the library's bookkeeping: tokens, ids, timestamps), which stay as they are;
    ``user`` the dict of the user's traits. ``also`` are more fields with the meaning of an
    envelope path (a second URL, the traits set once): each is run through the pipeline on
    its own, as that path. ``click_ids`` are dicts whose keys named for an ad click id
    (after one of ``click_prefixes``) are click ids. ``hints`` are client hints, which go
    with the user agent: kept when it is kept, only ``coarse_hints`` when it is generalized.
    """

    fields: tuple[Field, ...] = ()
    properties: str | None = None
    system: Callable[[str], bool] = _never
    user: str | None = None
    also: tuple[Field, ...] = ()
    click_ids: tuple[str, ...] = ()
    click_prefixes: tuple[str, ...] = ("",)
    hints: tuple[str, ...] = ()
    coarse_hints: tuple[str, ...] = ()


@dataclass(slots=True)
class Payload:
    """A decoded hit: its events (changed in place by the hygiene), each with its
    ``Shape``, the request's query pairs, and what ``encode`` needs to write it back."""

    items: list[tuple[dict[str, Any], Shape]]
    query: Query
    state: Any = None


@dataclass(frozen=True, slots=True)
class Encoded:
    """The request to send instead: its body, the headers to set (None removes one) and
    its query."""

    body: bytes
    query: Query
    headers: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the vendor answers a hit it took: the consent gate's answer for its library."""

    status: int
    body: bytes = b""
    content_type: str | None = None


Decode = Callable[[bytes, Mapping[str, str], Query], Payload]
Encode = Callable[[Payload], Encoded]


@dataclass(frozen=True, slots=True)
class VendorFormat:
    """One vendor: ``decode(body, headers, query)`` (headers with lowercase names, the
    body without its HTTP ``Content-Encoding``), ``encode(payload)``, ``answer(query)`` for a
    consent-gated hit, and ``query(pairs, forward_ip)`` for the query parameters the route's
    ``forward_ip`` decides (Mixpanel's ``ip=1``)."""

    name: str
    decode: Decode
    encode: Encode
    answer: Callable[[Query], Answer]
    query: Callable[[Query, str], Query] = lambda query, forward_ip: query
    doc: str = ""


# -- codecs -------------------------------------------------------------------------------


def gunzip(raw: bytes, limit: int) -> bytes:
    """``raw`` gzip-decoded, at most ``limit`` bytes. Raises ``Undecodable`` or ``TooLarge``."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise Undecodable(f"the body is not valid gzip ({exc})") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise TooLarge(f"the body is over {limit} bytes once decompressed")
    if not inflater.eof:
        raise Undecodable("the gzip body is cut short")
    return out


def gzip_bytes(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def b64decode(text: str | bytes, what: str) -> bytes:
    """Standard or URL-safe base64, padding optional (the libraries differ)."""
    data = text.encode("latin-1") if isinstance(text, str) else text
    data = data.strip().replace(b"-", b"+").replace(b"_", b"/").replace(b" ", b"+")
    data += b"=" * (-len(data) % 4)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Undecodable(f"{what} is not base64 ({exc})") from exc


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def loads(data: bytes | str, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Undecodable(f"{what} is not JSON ({exc})") from exc


def dumps(value: Any) -> bytes:
    """Compact JSON, as ``JSON.stringify`` writes it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def looks_like_json(data: bytes) -> bool:
    head = data.lstrip()[:1]
    return head in (b"{", b"[")


@dataclass(frozen=True, slots=True)
class Pair:
    """One ``name=value`` of a query or form string: ``raw`` as written, ``value`` decoded."""

    name: str
    raw: str
    value: str


def parse_pairs(text: str) -> list[Pair]:
    """A query or form string (without ``?``) taken apart, keeping each pair as written."""
    out = []
    for piece in text.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        out.append(Pair(unquote_plus(name), piece, unquote_plus(value)))
    return out


def encode_component(text: str) -> str:
    return quote(text, safe=_URI_COMPONENT_SAFE)


def render_pairs(pairs: list[Pair], values: Mapping[str, str]) -> str:
    """The string for ``values`` (name -> decoded value): a pair whose value did not change
    is written as it was; changed and new ones are encoded as ``encodeURIComponent`` does;
    names missing from ``values`` are left out. The original order is kept, new names last."""
    out: list[str] = []
    seen: set[str] = set()
    for pair in pairs:
        if pair.name in seen or pair.name not in values:
            continue
        seen.add(pair.name)
        new = values[pair.name]
        out.append(pair.raw if new == pair.value
                   else f"{encode_component(pair.name)}={encode_component(new)}")
    for name, new in values.items():
        if name not in seen:
            out.append(f"{encode_component(name)}={encode_component(new)}")
    return "&".join(out)


def query_value(query: Query, name: str) -> str | None:
    """The decoded value of the last ``name`` in ``query``, or None."""
    found = None
    for pair in parse_pairs(query):
        if pair.name == name:
            found = pair.value
    return found


def replace_param(query: Query, name: str, value: str | None) -> Query:
    """``query`` with every ``name`` set to ``value`` (None removes them); the other pairs
    as written."""
    out = []
    for pair in parse_pairs(query):
        if pair.name != name:
            out.append(pair.raw)
        elif value is not None:
            out.append(f"{encode_component(name)}={encode_component(value)}")
            value = None  # once
    return "&".join(out)
