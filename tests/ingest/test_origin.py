from __future__ import annotations

import pytest

from relay.ingest.origin import Origin, is_loopback, parse_origin, refused
from relay.rules.intake import origin_pattern

SHOP = ("https://shop.example", "https://*.shop.example", "http://localhost:*")


@pytest.mark.parametrize(("text", "expected"), [
    ("https://Shop.example", Origin("https", "shop.example", None)),
    ("https://shop.example:443", Origin("https", "shop.example", None)),
    ("http://shop.example:8080/cart?x=1#top", Origin("http", "shop.example", "8080")),
    ("http://[::1]:8000", Origin("http", "[::1]", "8000")),
    ("https://user@shop.example/", Origin("https", "shop.example", None)),
    ("ftp://shop.example", None),
    ("shop.example", None),
    ("https://shop.example:x", None),
    ("https://", None),
])
def test_parse_origin(text: str, expected: Origin | None) -> None:
    assert parse_origin(text) == expected


@pytest.mark.parametrize(("origin", "referer", "expected"), [
    ("https://shop.example", None, None),
    ("https://www.shop.example", None, None),
    ("https://a.b.shop.example", None, None),
    ("http://localhost:5173", None, None),
    ("http://shop.example", None, "http://shop.example"),  # another scheme, another origin
    ("https://evil.example", None, "https://evil.example"),
    ("https://evilshop.example", None, "https://evilshop.example"),  # not a subdomain
    ("https://shop.example.evil.example", None, "https://shop.example.evil.example"),
    ("https://shop.example:8443", None, "https://shop.example:8443"),
    (None, "https://www.shop.example/cart?id=1", None),  # no Origin: the Referer's
    (None, "https://evil.example/page", "https://evil.example"),
    ("https://evil.example", "https://shop.example/", "https://evil.example"),  # Origin wins
    ("null", None, "null"),
    ("not an origin", None, "not an origin"),
    (None, None, None),  # not a browser: nothing to check
])
def test_an_allow_list(origin: str | None, referer: str | None, expected: str | None) -> None:
    assert refused(SHOP, origin, referer, "relay.internal", None) == expected


def test_star_allows_any_site_and_null_is_only_allowed_by_name() -> None:
    assert refused(("*",), "https://evil.example", None, None, None) is None
    assert refused(("*",), "null", None, None, None) is None
    assert refused(("null",), "null", None, None, None) is None
    assert refused((), "https://shop.example", None, "shop.example", None) == \
        "https://shop.example"  # an empty list: no page may post


@pytest.mark.parametrize(("origin", "host", "forwarded", "expected"), [
    ("https://shop.example", "shop.example", None, None),  # TLS ends at the CDN: any scheme
    ("http://shop.example:8000", "shop.example:8000", None, None),
    ("https://shop.example", "shop.example:443", None, None),
    ("https://shop.example", "origin.internal", "shop.example", None),
    ("https://shop.example", "origin.internal", "cdn.example, shop.example", None),
    ("https://shop.example", "origin.internal", None, "https://shop.example"),
    ("http://localhost:5173", "relay.internal", None, None),
    ("http://127.0.0.1:9000", "relay.internal", None, None),
    ("http://[::1]:9000", "relay.internal", None, None),
    ("http://app.localhost:3000", "relay.internal", None, None),
    ("https://evil.example", "shop.example", None, "https://evil.example"),
    ("https://127.0.0.1.evil.example", "shop.example", None, "https://127.0.0.1.evil.example"),
])
def test_without_a_list_the_relays_own_host_and_loopback(
    origin: str, host: str, forwarded: str | None, expected: str | None
) -> None:
    assert refused(None, origin, None, host, forwarded) == expected


def test_loopback() -> None:
    assert is_loopback("127.1.2.3") and is_loopback("localhost") and is_loopback("[::1]")
    assert not is_loopback("127.0.0.1.nip.io") and not is_loopback("localhost.example")


@pytest.mark.parametrize(("text", "expected"), [
    ("HTTPS://Shop.example:443/", "https://shop.example"),
    ("http://shop.example:80", "http://shop.example"),
    ("http://localhost:*", "http://localhost:*"),
    ("https://*.shop.example", "https://*.shop.example"),
    ("http://[::1]:8000", "http://[::1]:8000"),
    ("*", "*"),
    ("NULL", "null"),
    ("https://shop.example/cart", None),
    ("shop.example", None),
    ("https://shop.*.example", None),
    ("https://*", None),
])
def test_origin_patterns(text: str, expected: str | None) -> None:
    assert origin_pattern(text) == expected
