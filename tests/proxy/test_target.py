"""relay.proxy.target and relay.proxy.headers: the pure parts of the proxy."""

from __future__ import annotations

import pytest

from relay.engine.consent import decide
from relay.proxy.headers import (
    consent_event,
    gcs_consent,
    generalize_user_agent,
    request_cookies,
    request_headers,
    response_headers,
)
from relay.proxy.target import Refused, check_raw_path, clean_query, match, upstream_url
from relay.rules.model import DEFAULT_CONSENT_MAP, ProxyRoute, Purpose, SubPath

PH = ProxyRoute("ph", "/ph/", "https://eu.i.posthog.com", paths=(
    SubPath("static/js/", "https://js.example/v2/"),
    SubPath("static/", "https://eu-assets.i.posthog.com/static/"),
    SubPath("decide", "https://decide.example/decide?v=3"),
))
GTAG = ProxyRoute("gtag", "/lib/gtag.js", "https://www.googletagmanager.com/gtag/js?l=dl")
BASE = ProxyRoute("base", "/cdn/", "https://cdn.example:8443/lib")
ROUTES = {"ph": PH, "gtag": GTAG, "base": BASE}


@pytest.mark.parametrize(("path", "expected"), [
    ("/ph/e/", ("ph", "e/")),
    ("/ph/", ("ph", "")),
    ("/ph", None),
    ("/phx/e", None),
    ("/lib/gtag.js", ("gtag", "")),
    ("/lib/gtag.js/x", None),
    ("/cdn/a/b.js", ("base", "a/b.js")),
])
def test_match(path: str, expected: tuple[str, str] | None) -> None:
    found = match(ROUTES, path)
    assert (None if found is None else (found[0].name, found[1])) == expected


def test_longest_route_wins() -> None:
    exact = ProxyRoute("exact", "/ph/static/a.js", "https://a.example/a.js")
    deeper = ProxyRoute("deeper", "/ph/static/", "https://b.example/")
    routes = {"ph": PH, "exact": exact, "deeper": deeper}
    assert match(routes, "/ph/static/a.js") == (exact, "")
    assert match(routes, "/ph/static/b.js") == (deeper, "b.js")
    assert match(routes, "/ph/e") == (PH, "e")


@pytest.mark.parametrize(("route", "rest", "query", "url"), [
    (PH, "e/", b"ip=1", "https://eu.i.posthog.com/e/?ip=1"),
    (PH, "static/array.js", b"", "https://eu-assets.i.posthog.com/static/array.js"),
    (PH, "static/js/x.js", b"", "https://js.example/v2/x.js"),  # the longest sub-path
    (PH, "decide", b"ip=0", "https://decide.example/decide?v=3&ip=0"),
    (PH, "decide/x", b"", "https://eu.i.posthog.com/decide/x"),
    (PH, "", b"", "https://eu.i.posthog.com/"),
    (PH, "a b/ü.js", b"", "https://eu.i.posthog.com/a%20b/%C3%BC.js"),
    (PH, "pkg@1.2/x.js", b"", "https://eu.i.posthog.com/pkg@1.2/x.js"),
    (GTAG, "", b"id=G-1", "https://www.googletagmanager.com/gtag/js?l=dl&id=G-1"),
    (BASE, "a.js", b"", "https://cdn.example:8443/lib/a.js"),
])
def test_upstream_url(route: ProxyRoute, rest: str, query: bytes, url: str) -> None:
    assert str(upstream_url(route, rest, query)) == url


@pytest.mark.parametrize("rest", [
    "..", "../x", "a/../../x", ".", "a/./b", "/evil.example/x", "a//b", "a\\b", "\\\\evil",
    "a\r\nHost: evil", "a\x00",
])
def test_upstream_url_refuses(rest: str) -> None:
    with pytest.raises(Refused):
        upstream_url(PH, rest, b"")


@pytest.mark.parametrize("raw", [b"/ph/%2e%2e/x", b"/ph/a%2Fb", b"/ph/%5c", b"/ph/a\\b"])
def test_check_raw_path(raw: bytes) -> None:
    with pytest.raises(Refused):
        check_raw_path(raw)
    check_raw_path(b"/ph/static/array.js")
    check_raw_path(b"/ph/a%20b/%C3%BC.js")


def test_clean_query() -> None:
    q = b"v=2&gclid=G&FBCLID=F&tid=G-1&dl=https%3A%2F%2Fs.example%2F%3Fa%3D1&ud_em=x"
    assert clean_query(PH, q, False) == b"v=2&tid=G-1&dl=https%3A%2F%2Fs.example%2F%3Fa%3D1&ud_em=x"
    assert clean_query(PH, q, True) == q
    drop = ProxyRoute("d", "/d", "https://d.example/", drop_params=frozenset({"ud_em"}))
    assert clean_query(drop, q, True) == q.removesuffix(b"&ud_em=x")
    keep = ProxyRoute("k", "/k", "https://k.example/", keep_params=frozenset({"v", "gclid"}))
    assert clean_query(keep, q, False) == b"v=2&gclid=G"
    strip = ProxyRoute("s", "/s", "https://s.example/", strip_query=True)
    assert clean_query(strip, q, True) == b""


# -- headers ---------------------------------------------------------------------------


def test_request_cookies() -> None:
    header = "_ga=1; _ga_X=2; _gid=3; _rc=secret; other=4"
    assert request_cookies(header, ("_ga", "_ga_*"), "_rc") == "_ga=1; _ga_X=2"
    assert request_cookies(header, ("*",), "_rc") == "_ga=1; _ga_X=2; _gid=3; other=4"
    assert request_cookies(header, (), "_rc") is None
    assert request_cookies("_rc=x", ("*",), "_rc") is None


def test_request_headers_without_accept_encoding_ask_for_identity() -> None:
    out = dict(request_headers(PH, [("accept", "*/*")], client_ip=None, country=None,
                               own_cookie="_rc"))
    assert out["accept-encoding"] == "identity"
    assert "user-agent" not in out and "x-forwarded-for" not in out


@pytest.mark.parametrize(("mode", "ip", "expected"), [
    ("strip", "203.0.113.77", None),
    ("truncate", "203.0.113.77", "203.0.113.0"),
    ("truncate", "2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3::"),
    ("keep", "203.0.113.77", "203.0.113.77"),
])
def test_forward_ip(mode: str, ip: str, expected: str | None) -> None:
    route = ProxyRoute("r", "/r", "https://r.example/", forward_ip=mode)  # type: ignore[arg-type]
    out = dict(request_headers(route, [("x-forwarded-for", "6.6.6.6")], client_ip=ip,
                               country=None, own_cookie="_rc"))
    assert out.get("x-forwarded-for") == expected


def test_generalized_user_agents() -> None:
    iphone = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
              "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")
    assert generalize_user_agent(iphone) == "Mozilla/5.0 (iOS; Mobile) MobileSafari/17"
    assert generalize_user_agent("curl/8.0") == "Mozilla/5.0 (Other) curl/8"


def test_response_headers_keep_encoding_and_rewrite_cookies() -> None:
    route = ProxyRoute("r", "/r/", "https://r.example/", cookies=("ph_*",))
    out = response_headers(route, [
        ("Content-Encoding", "gzip"), ("Content-Length", "10"), ("Transfer-Encoding", "chunked"),
        ("Set-Cookie", "ph_x=1; Domain=.posthog.com; Path=/; HttpOnly"),
        ("Set-Cookie", "other=1; Path=/"), ("Proxy-Authenticate", "Basic"),
    ], "/t/r/")
    assert out == [("content-encoding", "gzip"), ("content-length", "10"),
                   ("set-cookie", "ph_x=1; HttpOnly; Path=/t/r/")]


# -- consent ---------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "expected"), [
    (b"gcs=G111", {"ads": "granted", "analytics": "granted"}),
    (b"v=2&gcs=G100", {"ads": "denied", "analytics": "denied"}),
    (b"gcs=G110", {"ads": "granted", "analytics": "denied"}),
    (b"gcs=G1-1", {"analytics": "granted"}),
    (b"gcs=X111", {}),
    (b"", {}),
])
def test_gcs_consent(query: bytes, expected: dict[str, str]) -> None:
    assert gcs_consent(query, DEFAULT_CONSENT_MAP) == expected


def test_consent_order() -> None:
    ads = Purpose("ads", defaults={"EU": "denied", "*": "granted"}, gpc="denied")
    assert decide(ads, consent_event(None, {}, False, "DE"))[0] == "denied"
    assert decide(ads, consent_event(None, {}, False, "US"))[0] == "granted"
    assert decide(ads, consent_event(None, {}, True, "US")) == ("denied", "gpc")
    assert decide(ads, consent_event(None, {"ads": "granted"}, True, "DE"))[0] == "granted"
    relay_says = {"ads": "denied"}
    assert decide(ads, consent_event(relay_says, {"ads": "granted"}, False, "US"))[0] == "denied"
