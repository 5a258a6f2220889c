"""``GET {prefix}/r.js``: the browser snippet.

``relay/static/r.js`` is read and minified once, at import; its gzip bytes are computed then
too, so a request only picks a representation and compares validators:

    >>> minify("let count = 1; /* why */ if (count) { f( 'x  y', {count: count} ); } // end")
    "let a=1;if(a){f('x  y',{count:a})}"

Each representation has a strong ETag: the SHA-256 of the minified script, with ``-gzip``
appended for the gzip bytes (RFC 9110 wants different tags for different content codings).
"""

from __future__ import annotations

import collections
import gzip
import hashlib
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

SOURCE: Final = Path(__file__).parent / "static" / "r.js"
MAX_GZIP_BYTES: Final = 1024  # the snippet's budget as served; tests/test_snippet.py holds it
CACHE_CONTROL: Final = "public, max-age=300"
CONTENT_TYPE: Final = "application/javascript; charset=utf-8"


def install_block(prefix: str = "/t") -> str:
    """The HTML a site pastes into its pages (README: "Install the snippet"): a stub that
    queues calls until the script has loaded, then the script itself, async."""
    return (
        "<script>window.relay = window.relay || "
        "function(){(relay.q=relay.q||[]).push(arguments)};</script>\n"
        f'<script async src="{prefix}/r.js"></script>'
    )


INSTALL_BLOCK: Final = install_block()

_LETTERS: Final = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_WORD: Final = frozenset(_LETTERS + "0123456789_$")
# After these a `/` starts a regex literal; after anything else it divides.
_BEFORE_REGEX_PUNCT: Final = frozenset("(,=:[!&|?{};~+-*%<>")
_BEFORE_REGEX_WORDS: Final = frozenset({"return", "typeof", "case", "do", "else", "in", "of",
                                        "new", "delete", "void", "throw"})
# Declared names that would also be browser globals: renaming every occurrence of one could
# turn a reference to the global into a reference to nothing. r.js must not declare them.
_GLOBAL_NAMES: Final = frozenset({
    "name", "status", "event", "length", "origin", "top", "parent", "self", "open", "close",
    "stop", "print", "screen", "frames", "history", "location", "navigator", "document",
    "window", "closed", "opener", "external", "crypto", "fetch", "URL", "JSON", "Object",
})  # fmt: skip
_KEYWORDS: Final = frozenset({"do", "if", "in", "of", "for", "let", "new", "try", "var"})


@dataclass(frozen=True, slots=True)
class _Token:
    text: str
    kind: str  # "name" (identifiers, keywords, numbers), "string", "regex" or "punct"
    gap: bool  # whitespace or a comment before it


def _tokens(source: str) -> list[_Token]:
    out: list[_Token] = []
    gap = False
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
        prev = out[-1] if out else None
        if c in "'\"":
            j = _skip_literal(source, i, c, classes=False)
            token = _Token(source[i:j], "string", gap)
        elif c == "/" and (
            prev is None
            or (prev.kind == "punct" and prev.text in _BEFORE_REGEX_PUNCT)
            or (prev.kind == "name" and prev.text in _BEFORE_REGEX_WORDS)
        ):
            j = _skip_literal(source, i, "/", classes=True)
            while j < n and source[j] in _WORD:  # flags
                j += 1
            token = _Token(source[i:j], "regex", gap)
        elif c in _WORD:
            j = i
            while j < n and source[j] in _WORD:
                j += 1
            token = _Token(source[i:j], "name", gap)
        elif source.startswith("=>", i):
            token = _Token("=>", "punct", gap)
        else:
            token = _Token(c, "punct", gap)
        out.append(token)
        gap, i = False, i + len(token.text)
    return out


def _skip_literal(source: str, i: int, quote: str, *, classes: bool) -> int:
    """The end (exclusive) of the string or regex literal starting at ``i``."""
    j, in_class = i + 1, False
    while j < len(source) and source[j] != "\n":
        c = source[j]
        if c == "\\":
            j += 2
            continue
        if classes and c in "[]":
            in_class = c == "["
        elif c == quote and not in_class:
            return j + 1
        j += 1
    raise ValueError(f"r.js: unterminated literal at offset {i}")


def _declared(tokens: list[_Token]) -> set[str]:
    """Names declared by ``let NAME``, ``catch (NAME)`` and arrow-function parameters."""
    names: set[str] = set()
    for k, t in enumerate(tokens):
        if t.kind != "name":
            continue
        if t.text in ("var", "const", "function"):
            raise ValueError(f"r.js: '{t.text}' is not handled by the minifier; use let and =>")
        if t.text == "let" and k + 1 < len(tokens):
            names.add(tokens[k + 1].text)
        if t.text == "catch" and k + 2 < len(tokens) and tokens[k + 2].kind == "name":
            names.add(tokens[k + 2].text)
    for k, t in enumerate(tokens):
        if t.text != "=>" or k == 0:
            continue
        prev = tokens[k - 1]
        if prev.kind == "name":
            names.add(prev.text)
            continue
        depth, j = 0, k - 1
        while j >= 0:  # back to the "(" that opens the parameter list
            text = tokens[j].text
            depth += text == ")"
            depth -= text == "("
            if depth == 0:
                break
            if tokens[j].kind == "name" and tokens[j - 1].text in "(,.":
                names.add(text)
            j -= 1
    bad = sorted(names & _GLOBAL_NAMES)
    if bad:
        raise ValueError(f"r.js: do not declare browser globals as names: {', '.join(bad)}")
    return names


def _short_names(taken: set[str], kept: str) -> Iterator[str]:
    """Unused names, the letters most frequent in ``kept`` (the text that is not renamed)
    first: gzip gives frequent characters shorter codes."""
    counts = collections.Counter(kept)
    letters = sorted(_LETTERS, key=lambda c: (-counts[c], _LETTERS.index(c)))
    for name in itertools.chain(letters, (a + b for a in letters for b in letters)):
        if name not in taken and name not in _KEYWORDS:
            yield name


def _renames(tokens: list[_Token]) -> dict[int, str]:
    """Token index -> its new text, for every use of a declared name (not properties)."""
    declared = _declared(tokens)
    uses: dict[int, str] = {}
    for k, t in enumerate(tokens):
        if t.kind != "name" or t.text not in declared:
            continue
        prev = tokens[k - 1].text if k else ""
        after = tokens[k + 1].text if k + 1 < len(tokens) else ""
        spread = k >= 3 and "".join(x.text for x in tokens[k - 3 : k]) == "..."
        if prev == "." and not spread:
            continue  # a property: obj.name
        if prev in "{," and after == ":":
            continue  # an object key: {name: ...}
        if prev == "{" and after in ",}":
            raise ValueError(f"r.js: shorthand property {{{t.text}}}; write {{{t.text}: ...}}")
        uses[k] = t.text
    counts = collections.Counter(uses.values())
    taken = {t.text for t in tokens if t.kind == "name"}
    kept = "".join(t.text for k, t in enumerate(tokens) if k not in uses)
    by_use = sorted(counts, key=lambda n: (-counts[n], n))
    short = dict(zip(by_use, _short_names(taken, kept), strict=False))
    return {k: short[name] for k, name in uses.items()}


def _compactions(tokens: list[_Token]) -> dict[int, str]:
    """Token index -> shorter text ("" drops it), where JavaScript means the same:

    ``;}`` -> ``}``; ``(x) =>`` -> ``x =>``; ``true``/``false`` -> ``!0``/``!1``; and
    consecutive ``let`` statements become one (``let a=1;let b=2;`` -> ``let a=1,b=2;``).
    """
    edits: dict[int, str] = {}
    last = len(tokens) - 1
    for k, t in enumerate(tokens):
        prev = tokens[k - 1].text if k else ";"
        after = tokens[k + 1].text if k < last else ""
        if t.text == ";" and after == "}":
            edits[k] = ""
        elif (t.text == "(" and k + 3 <= last and tokens[k + 1].kind == "name"
              and tokens[k + 2].text == ")" and tokens[k + 3].text == "=>"):
            edits[k] = edits[k + 2] = ""
        elif t.kind == "name" and t.text in ("true", "false") and prev != "." and after not in ".[":
            edits[k] = "!0" if t.text == "true" else "!1"
        elif t.text == "let" and prev in ";{}":
            end, inner = k + 1, 0  # the ";" that ends this statement
            while end <= last and not (inner == 0 and tokens[end].text == ";"):
                inner += tokens[end].text in "([{"
                inner -= tokens[end].text in ")]}"
                end += 1
            if end < last and tokens[end + 1].text == "let" and edits.get(end) != "":
                edits[end], edits[end + 1] = ",", ""
    return edits


def _needs_space(before: str, after: str, gap: bool) -> bool:
    """Whether two neighbouring tokens need a space between them."""
    if before in _WORD and after in _WORD:
        return True  # `let a`, `return !0` after a dropped token
    return gap and before == after and before in "+-"  # `a + +b`, `a - -b`


def minify(source: str) -> str:
    """Drop comments and the whitespace JavaScript does not need, and shorten local names.

    The names declared with ``let``, ``catch`` or as arrow-function parameters get one- or
    two-letter names, the most used first; properties and object keys keep theirs. This is
    a tokenizer, not a parser: r.js keeps to the subset its header describes, and anything
    else it recognizes as unsafe (``var``, a template literal, a shorthand property, a
    declared browser global) is an error. See ``_compactions`` for the rest.
    """
    tokens = _tokens(source)
    edits = _compactions(tokens)
    edits.update(_renames(tokens))
    out: list[str] = []
    gap = False
    for k, t in enumerate(tokens):
        text = edits.get(k, t.text)
        gap = gap or t.gap
        if not text:
            continue
        if out and _needs_space(out[-1][-1], text[0], gap):
            out.append(" ")
        out.append(text)
        gap = False
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
