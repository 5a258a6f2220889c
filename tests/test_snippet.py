"""GET /r.js (relay.snippet): caching, validators, gzip, the size budget, and the minifier."""

from __future__ import annotations

import gzip
import hashlib
import re

import httpx
import pytest

from relay import snippet
from relay.snippet import MAX_GZIP_BYTES, SNIPPET, SOURCE, accepts_gzip, matches, minify

from .conftest import ROOT

IDENTITY = {"Accept-Encoding": "identity"}
GZIP = {"Accept-Encoding": "gzip, deflate, br"}


async def _raw(client: httpx.AsyncClient, headers: dict[str, str]) -> tuple[httpx.Response, bytes]:
    """The response and its body exactly as sent (httpx would decompress ``.content``)."""
    async with client.stream("GET", "/r.js", headers=headers) as r:
        return r, b"".join([chunk async for chunk in r.aiter_raw()])


# -- the handler ---------------------------------------------------------------------------


async def test_serves_the_minified_script_with_cache_headers(client: httpx.AsyncClient) -> None:
    r, body = await _raw(client, IDENTITY)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/javascript; charset=utf-8"
    assert r.headers["cache-control"] == "public, max-age=300"
    assert r.headers["vary"] == "Accept-Encoding"
    assert "content-encoding" not in r.headers
    assert body == minify(SOURCE.read_text()).encode()
    assert int(r.headers["content-length"]) == len(body)
    # A strong validator: quoted, no W/, the SHA-256 of what is served.
    assert r.headers["etag"] == f'"{hashlib.sha256(body).hexdigest()}"'


async def test_gzip_when_accepted(client: httpx.AsyncClient) -> None:
    r, body = await _raw(client, GZIP)
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["vary"] == "Accept-Encoding"
    assert int(r.headers["content-length"]) == len(body)
    assert gzip.decompress(body) == SNIPPET.body
    # Another coding, another strong tag (RFC 9110 8.8.3).
    plain, _ = await _raw(client, IDENTITY)
    assert r.headers["etag"] != plain.headers["etag"]
    assert r.headers["etag"].startswith('"') and not r.headers["etag"].startswith("W/")


async def test_gzip_size_as_served_is_within_budget(client: httpx.AsyncClient) -> None:
    _, body = await _raw(client, GZIP)
    print(f"r.js as served: {len(body)} bytes gzip ({len(SNIPPET.body)} bytes minified, "
          f"{SOURCE.stat().st_size} bytes of source); budget {MAX_GZIP_BYTES}")
    assert len(body) <= MAX_GZIP_BYTES, (
        f"r.js is {len(body)} bytes gzipped as served, over the {MAX_GZIP_BYTES}-byte budget"
    )


async def test_gzip_refused_with_q_zero(client: httpx.AsyncClient) -> None:
    r, body = await _raw(client, {"Accept-Encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in r.headers
    assert body == SNIPPET.body


@pytest.mark.parametrize("coding", [IDENTITY, GZIP])
async def test_if_none_match_answers_304(client: httpx.AsyncClient, coding: dict[str, str]) -> None:
    first, _ = await _raw(client, coding)
    etag = first.headers["etag"]
    for given in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        r, body = await _raw(client, {**coding, "If-None-Match": given})
        assert r.status_code == 304, given
        assert body == b""
        assert r.headers["etag"] == etag
        assert r.headers["cache-control"] == "public, max-age=300"
        assert r.headers["vary"] == "Accept-Encoding"
        assert "content-encoding" not in r.headers


async def test_a_stale_or_other_coding_tag_gets_the_script(client: httpx.AsyncClient) -> None:
    gz, _ = await _raw(client, GZIP)
    for given in ('"0000"', gz.headers["etag"]):  # the gzip tag does not match identity
        r, body = await _raw(client, {**IDENTITY, "If-None-Match": given})
        assert r.status_code == 200
        assert body == SNIPPET.body


async def test_only_get(client: httpx.AsyncClient) -> None:
    assert (await client.post("/r.js", content=b"x")).status_code == 405


# -- the pure parts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("GZIP", True),
        ("deflate, gzip;q=0.5", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("br", False),
        ("*", True),
        ("*;q=0", False),
        ("gzip;q=0, *", False),
        ("x-gzip", True),
        ("gzip;q=bad", False),
    ],
)
def test_accepts_gzip(header: str | None, expected: bool) -> None:
    assert accepts_gzip(header) is expected


def test_matches() -> None:
    assert matches('"a"', '"a"')
    assert matches('W/"a"', '"a"')
    assert matches(' "b" , "a"', '"a"')
    assert matches("*", '"a"')
    assert not matches(None, '"a"')
    assert not matches('"b"', '"a"')


def test_snippet_sets_no_cookie_and_uses_no_storage() -> None:
    code = SNIPPET.body.decode()  # without the comments
    for word in ("cookie", "Storage", "indexedDB", "caches"):
        assert word not in code, word


# -- the minifier --------------------------------------------------------------------------


def test_minify_drops_comments_and_whitespace_but_not_strings() -> None:
    src = "// head\nlet text = 'a  // b /* c */';  /* x */ f(text,  \"q\\\"  \");\n"
    assert re.fullmatch(r"""let (\w)='a  // b /\* c \*/';f\(\1,"q\\"  "\);""", minify(src))


def test_minify_renames_declared_names_only() -> None:
    src = (
        "let queue = [];\n"
        "let send = (item, extra) => queue.push({queue: item, extra: extra, n: item.queue});\n"
        "obj.queue = send(queue.length);\n"
    )
    out = minify(src)
    # Object keys and properties keep their names; the declared names are shortened.
    assert "{queue:" in out and ".queue" in out and ".length" in out and "extra:" in out
    assert "let queue" not in out and "send(" not in out and "item" not in out
    # Consecutive let statements merge into one.
    assert out.count("let ") == 1


def test_minify_keeps_operators_apart_and_regexes_whole() -> None:
    assert minify("a = b + +c - -d;") == "a=b+ +c- -d;"
    assert minify("q = a / b / c;") == "q=a/b/c;"
    assert re.fullmatch(r"let (\w)=/\^gtm\\\.\|\^a b'c\$/;\1\.test\(y\);",
                        minify("let x = /^gtm\\.|^a b'c$/; x.test(y);"))
    assert minify("f(true, false, x.true);") == "f(!0,!1,x.true);"
    assert re.fullmatch(r"return (\w)=>\1;", minify("return (x) => x;"))  # no parentheses
    assert minify("if (a) { b(); }") == "if(a){b()}"


def test_minify_renames_spread_names() -> None:
    out = minify("let f = (...args) => g(...args, {...args});")
    assert re.fullmatch(r"let \w=\(\.\.\.(\w)\)=>g\(\.\.\.\1,\{\.\.\.\1\}\);", out), out


@pytest.mark.parametrize(
    ("src", "error"),
    [
        ("let a = `x`;", "template literal"),
        ("var a = 1;", "'var'"),
        ("function f() {}", "'function'"),
        ("let name = 1;", "browser globals"),
        ("let a = 1; f({a});", "shorthand"),
        ("let a = 'x;", "unterminated"),
        ("/* x", "unterminated comment"),
    ],
)
def test_minify_refuses_what_it_cannot_handle(src: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        minify(src)


def test_served_snippet_keeps_every_property_name() -> None:
    out = SNIPPET.body.decode()
    for name in (
        "event_id", "context", "consent", "batch", "sendBeacon", "keepalive", "gdprApplies",
        "eventStatus", "cmpuishown", "__tcfapi", "addEventListener", "consents", "dataLayer",
        "pushState", "replaceState", "popstate", "pagehide", "visibilitychange", "loaded",
        "consent_update", "page_view", "currentScript", "auto", "analytics", "ads",
    ):  # fmt: skip
        assert name in out, name
    assert "\n" not in out and "/*" not in out


def test_readme_has_the_install_block() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "## Install the snippet" in readme
    assert snippet.INSTALL_BLOCK in readme
