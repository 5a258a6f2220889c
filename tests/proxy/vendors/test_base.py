"""The codecs every vendor module shares, and the registry."""

from __future__ import annotations

import gzip

import pytest

from relay.proxy.vendors import VENDORS
from relay.proxy.vendors.base import (
    TooLarge,
    Undecodable,
    b64decode,
    gunzip,
    gzip_bytes,
    parse_pairs,
    query_value,
    render_pairs,
    replace_param,
)
from relay.rules.model import PROXY_VENDORS


def test_every_vendor_name_has_a_format() -> None:
    assert tuple(VENDORS) == PROXY_VENDORS
    assert all(fmt.name == name and fmt.doc for name, fmt in VENDORS.items())


def test_pairs_keep_what_did_not_change_as_written() -> None:
    text = "a=1&b=x%20y&c=a+b&d&e=%7e"
    pairs = parse_pairs(text)
    assert [(p.name, p.value) for p in pairs] == [
        ("a", "1"), ("b", "x y"), ("c", "a b"), ("d", ""), ("e", "~")]
    values = {p.name: p.value for p in pairs}
    assert render_pairs(pairs, values) == text
    values["b"] = "x/y z"
    del values["c"]
    values["f"] = "ä&"
    assert render_pairs(pairs, values) == "a=1&b=x%2Fy%20z&d&e=%7e&f=%C3%A4%26"


def test_query_values() -> None:
    assert query_value("ip=1&verbose=1&ip=0", "ip") == "0"
    assert query_value("a=1", "ip") is None
    assert replace_param("verbose=1&ip=1&_=5", "ip", "0") == "verbose=1&ip=0&_=5"
    assert replace_param("ip=1&a=2", "ip", None) == "a=2"


def test_base64_in_both_alphabets_padding_optional() -> None:
    assert b64decode("eyJhIjoiPz8_In0", "x") == b'{"a":"??\x3f"}'
    assert b64decode("eyJhIjoiPz8/In0=", "x") == b'{"a":"??\x3f"}'
    with pytest.raises(Undecodable, match="x is not base64"):
        b64decode("not base64!", "x")


def test_gunzip_is_bounded() -> None:
    assert gunzip(gzip_bytes(b"hello"), 5) == b"hello"
    assert gzip.decompress(gzip_bytes(b"hello")) == b"hello"
    with pytest.raises(TooLarge):
        gunzip(gzip_bytes(b"x" * 100), 99)
    with pytest.raises(Undecodable, match="cut short"):
        gunzip(gzip_bytes(b"hello world")[:-8], 100)
