"""``relay.ingest.body.decompress``: gzip within a limit."""

from __future__ import annotations

import gzip

from relay.ingest.body import decompress
from relay.web import Problem


def test_plain_bodies_pass() -> None:
    assert decompress(b"{}", None, 10) == b"{}"
    assert decompress(b"{}", "identity", 10) == b"{}"


def test_gzip_and_several_members() -> None:
    assert decompress(gzip.compress(b'{"a": 1}'), "gzip", 100) == b'{"a": 1}'
    two = gzip.compress(b"ab") + gzip.compress(b"cd")
    assert decompress(two, "GZIP", 100) == b"abcd"
    assert decompress(gzip.compress(b"x" * 100), "x-gzip", 100) == b"x" * 100


def test_the_limit_applies_to_the_decompressed_size() -> None:
    out = decompress(gzip.compress(b"x" * 101), "gzip", 100)
    assert isinstance(out, Problem) and out.status == 413
    bomb = gzip.compress(b"\0" * 50_000_000)
    out = decompress(bomb, "gzip", 1000)
    assert isinstance(out, Problem) and out.status == 413


def test_bad_gzip_and_other_encodings() -> None:
    for body in (b"plain", gzip.compress(b"abc")[:-4], b""):
        out = decompress(body, "gzip", 100)
        assert isinstance(out, Problem) and out.status == 400, body
    out = decompress(b"{}", "deflate", 100)
    assert isinstance(out, Problem) and out.status == 415 and "gzip" in out.message
