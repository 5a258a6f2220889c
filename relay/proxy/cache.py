"""The proxy's in-memory script cache and its supply-chain guard.

Cached scripts are kept decoded (``body``) and gzip-compressed (``gzipped``), so the browser
gets gzip when it asks for it and the SHA-256 is that of the script itself, as in a
Subresource Integrity attribute. The cache is bounded per object (the route's
``cache_max_bytes``) and in total (``PROXY_CACHE_TOTAL_BYTES``); the least recently used
script goes first.

    >>> script = Script.build(b"console.log(1)", "text/javascript", expires=60.0)
    >>> script.digest
    'sha256-...'
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from relay.rules.model import PROXY_CACHE_TOTAL_BYTES

RawHeaders = list[tuple[bytes, bytes]]


class TooLarge(ValueError):
    """A body over its bound."""


def sri_digest(body: bytes) -> str:
    """``sha256-<base64>``, the form of a ``pin:`` (and of an HTML ``integrity`` attribute)."""
    return "sha256-" + base64.b64encode(hashlib.sha256(body).digest()).decode()


def decode_body(raw: bytes, encoding: str, limit: int) -> bytes:
    """The body without its ``Content-Encoding`` (identity or gzip), at most ``limit`` bytes
    decoded (so a small gzip bomb cannot fill memory). Raises ``TooLarge`` or ``ValueError``."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        body = raw
    elif encoding in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(raw, limit + 1)
        except zlib.error as exc:
            raise ValueError(f"bad gzip body: {exc}") from exc
    else:
        raise ValueError(f"content-encoding {encoding!r} is not cached")
    if len(body) > limit:
        raise TooLarge(f"decoded body over {limit} bytes")
    return body


@dataclass(slots=True)
class Script:
    body: bytes
    gzipped: bytes
    content_type: str
    digest: str
    expires: float  # monotonic seconds
    tag: str = field(init=False, repr=False, compare=False)  # the ETag's value, unquoted
    _heads: dict[int, Heads] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.tag = hashlib.sha256(self.digest.encode()).hexdigest()[:20]
        self._heads = {}

    @classmethod
    def build(cls, body: bytes, content_type: str, expires: float) -> Script:
        return cls(body, gzip.compress(body, 6, mtime=0), content_type, sri_digest(body), expires)

    @property
    def size(self) -> int:
        return len(self.body) + len(self.gzipped)

    def etag(self, gzipped: bool) -> str:
        return f'"{self.tag}-gz"' if gzipped else f'"{self.tag}"'

    def etags(self) -> tuple[str, str]:
        return self.etag(False), self.etag(True)

    def heads(self, max_age: int) -> Heads:
        """The response headers of this script under ``Cache-Control: public,
        max-age=<max_age>`` (the route's ``cache:``), built once per max-age."""
        heads = self._heads.get(max_age)
        if heads is None:
            heads = self._heads[max_age] = Heads.build(self, max_age)
        return heads


@dataclass(frozen=True, slots=True)
class Heads:
    """A cached script's raw response headers, ``[gzipped]`` for the gzip variant: ``ok``
    for a 200 (and HEAD), ``not_modified`` for a 304 (no body, no Content-* headers)."""

    ok: tuple[RawHeaders, RawHeaders]
    not_modified: tuple[RawHeaders, RawHeaders]

    @classmethod
    def build(cls, script: Script, max_age: int) -> Heads:
        ok: list[RawHeaders] = []
        not_modified: list[RawHeaders] = []
        for gz in (False, True):
            common = [
                (b"cache-control", f"public, max-age={max_age}".encode("latin-1")),
                (b"etag", script.etag(gz).encode("latin-1")),
                (b"vary", b"accept-encoding"),
            ]
            body = script.gzipped if gz else script.body
            full = [*common, (b"content-type", script.content_type.encode("latin-1")),
                    (b"content-length", str(len(body)).encode("latin-1"))]
            if gz:
                full.append((b"content-encoding", b"gzip"))
            not_modified.append(common)
            ok.append(full)
        return cls((ok[0], ok[1]), (not_modified[0], not_modified[1]))


class ScriptCache:
    """Scripts by upstream URL, least recently used evicted first."""

    def __init__(self, max_bytes: int = PROXY_CACHE_TOTAL_BYTES) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._items: OrderedDict[str, Script] = OrderedDict()
        self._flights: dict[str, _Flight] = {}

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> Script | None:
        """The script for ``key``, fresh or not (the caller decides)."""
        script = self._items.get(key)
        if script is not None:
            self._items.move_to_end(key)
        return script

    def put(self, key: str, script: Script) -> bool:
        """Keep ``script``; False when it alone is over the total bound."""
        if script.size > self.max_bytes:
            return False
        old = self._items.pop(key, None)
        if old is not None:
            self.size -= old.size
        self._items[key] = script
        self.size += script.size
        while self.size > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self.size -= evicted.size
        return True

    def clear(self) -> None:
        self._items.clear()
        self.size = 0

    @asynccontextmanager
    async def filling(self, key: str) -> AsyncIterator[None]:
        """One upstream fetch per key at a time; the others wait and then read the cache."""
        flight = self._flights.get(key)
        if flight is None:
            flight = self._flights[key] = _Flight()
        flight.users += 1
        try:
            async with flight.lock:
                yield
        finally:
            flight.users -= 1
            if flight.users == 0:
                del self._flights[key]


class _Flight:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0
