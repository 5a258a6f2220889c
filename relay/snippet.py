"""``GET {prefix}/r.js``: the browser snippet.

``relay/static/r.js`` is read and minified once, at import; its gzip bytes are computed then
too, so a request only picks a representation and compares validators:

    >>> minify("var a = 1; /* why */ if (a) { f( 'x  y' ); } // done")
    "var a=1;if(a){f('x  y');}"

Each representation has a strong ETag: the SHA-256 of the minified script, with ``-gzip``
appended for the gzip bytes (RFC 9110 wants different tags for different content codings).
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

SOURCE: Final = Path(__file__).parent / "static" / "r.js"
MAX_GZIP_BYTES: Final = 1024  # the snippet's budget as served; tests/test_snippet.py holds it
CACHE_CONTROL: Final = "public, max-age=300"
CONTENT_TYPE: Final = "application/javascript; charset=utf-8"

_WORD: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$")


def _needs_space(before: str, after: str) -> bool:
    """Whether the whitespace between two characters must stay (as one space)."""
    both_words = before in _WORD and after in _WORD
    return both_words or (before == after and before in "+-")  # `a + +b`, `a - -b`


def minify(source: str) -> str:
    """Drop comments and the whitespace JavaScript does not need.

    String literals are kept as written. The source must not contain regex or template
    literals (a backquote is an error) and must end statements with semicolons: this is a
    whitespace stripper, not a parser.
    """
    out: list[str] = []
    gap = False  # whitespace or a comment since the last token
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if c.isspace():
            gap, i = True, i + 1
            continue
        if source.startswith("//", i):
            end = source.find("\n", i)
            gap, i = True, n if end < 0 else end
            continue
        if source.startswith("/*", i):
            end = source.find("*/", i + 2)
            if end < 0:
                raise ValueError(f"r.js: unterminated comment at offset {i}")
            gap, i = True, end + 2
            continue
        if c == "`":
            raise ValueError(f"r.js: template literal at offset {i}; use a quoted string")
        if c in "'\"":
            j = i + 1
            while j < n and source[j] != c:
                if source[j] == "\n":
                    break
                j += 2 if source[j] == "\\" else 1
            if j >= n or source[j] != c:
                raise ValueError(f"r.js: unterminated string at offset {i}")
            token = source[i : j + 1]
        else:
            token = c
        if gap and out and _needs_space(out[-1][-1], token[0]):
            out.append(" ")
        out.append(token)
        gap, i = False, i + len(token)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Asset:
    """One static script in both codings, with their validators."""

    body: bytes
    gzipped: bytes
    etag: str
    gzip_etag: str

    @classmethod
    def build(cls, text: str) -> Asset:
        body = text.encode()
        digest = hashlib.sha256(body).hexdigest()
        # mtime=0: the same script always gives the same bytes (and workers agree).
        gzipped = gzip.compress(body, compresslevel=9, mtime=0)
        return cls(body, gzipped, f'"{digest}"', f'"{digest}-gzip"')


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` value allows gzip (``gzip;q=0`` refuses it).

    >>> accepts_gzip("br, gzip;q=0.8"), accepts_gzip("gzip;q=0"), accepts_gzip(None)
    (True, False, False)
    """
    allowed: bool | None = None
    star = False
    for part in (accept_encoding or "").lower().split(","):
        coding, _, params = part.partition(";")
        coding = coding.strip()
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if coding in ("gzip", "x-gzip"):
            allowed = q > 0
        elif coding == "*":
            star = q > 0
    return star if allowed is None else allowed


def matches(if_none_match: str | None, etag: str) -> bool:
    """``If-None-Match`` against ``etag``, by weak comparison (as RFC 9110 says for it)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(t.strip().removeprefix("W/") == etag for t in if_none_match.split(","))


def respond(asset: Asset, headers: Mapping[str, str]) -> Response:
    """The 200 or 304 for a request with ``headers``."""
    use_gzip = accepts_gzip(headers.get("accept-encoding"))
    etag = asset.gzip_etag if use_gzip else asset.etag
    out = {"ETag": etag, "Cache-Control": CACHE_CONTROL, "Vary": "Accept-Encoding"}
    if matches(headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=out)
    out["X-Content-Type-Options"] = "nosniff"
    if use_gzip:
        out["Content-Encoding"] = "gzip"
    body = asset.gzipped if use_gzip else asset.body
    return Response(body, headers=out, media_type=CONTENT_TYPE)


SNIPPET: Final = Asset.build(minify(SOURCE.read_text(encoding="utf-8")))


async def script(request: Request) -> Response:
    return respond(SNIPPET, request.headers)
