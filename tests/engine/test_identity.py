from __future__ import annotations

import time

import pytest
from itsdangerous import TimestampSigner

from relay.engine.identity import CLOCK_SKEW, CookieSigner, client_ip
from relay.rules.model import ClientIP, Cookie


def test_cookie_round_trip_and_rotation() -> None:
    old = CookieSigner(Cookie(), ["old"])
    issued = old.issue(None)
    assert issued.fresh
    assert old.verify(issued.value) == issued.id
    rotated = CookieSigner(Cookie(), ["old", "new"])
    assert rotated.verify(issued.value) == issued.id  # old cookies still verify
    again = rotated.issue(issued.value)
    assert not again.fresh and again.id == issued.id  # sliding: same id, new signature
    assert CookieSigner(Cookie(), ["new"]).verify(again.value) == issued.id


@pytest.mark.parametrize("value", ["", "x", "abc.def.ghi", "a" * 300])
def test_tampered_cookie_is_not_trusted(value: str) -> None:
    signer = CookieSigner(Cookie(), ["s"])
    assert signer.verify(value) is None
    assert signer.issue(value).fresh


def test_tampered_signature_is_replaced() -> None:
    signer = CookieSigner(Cookie(), ["s"])
    good = signer.issue(None).value
    bad = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    assert signer.verify(bad) is None
    replaced = signer.issue(bad)
    assert replaced.fresh and replaced.value != bad


def test_expired_cookie_is_not_trusted() -> None:
    signer = CookieSigner(Cookie(max_age=30), ["s"])
    value = signer.issue(None).value
    assert signer.verify(value, max_age=-1) is None


def test_a_verified_cookie_is_refused_once_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verified values are remembered, with their signing time: the cache never answers for
    a cookie past its Max-Age, nor for a tampered copy of a value it knows."""
    signer = CookieSigner(Cookie(max_age=30), ["s"])
    value = signer.issue(None).value
    cid = signer.verify(value)
    assert cid is not None and not signer.issue(value).fresh  # now in the cache
    # Not the last character: its low bits are padding, so some changes to it decode alike.
    assert signer.verify(value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1]) is None
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 31)
    assert signer.verify(value) is None
    renewed = signer.issue(value)
    assert renewed.fresh and renewed.id != cid


def test_a_cookie_signed_in_the_future_is_replaced() -> None:
    """Only the relay's own clock signs; past the replicas' skew, a future time is forged
    or broken, never a visit to keep."""

    class Later(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time() + 3600)

    signer = CookieSigner(Cookie(max_age=1800), ["s"])
    value = Later("s", salt="relay.correlation").sign("visit").decode()
    assert signer.verify(value) is None
    assert signer.issue(value).fresh
    near = Later("s", salt="relay.correlation")
    near.get_timestamp = lambda: int(time.time() + CLOCK_SKEW / 2)  # type: ignore[method-assign]
    value = near.sign("visit").decode()
    assert signer.verify(value) == "visit" and not signer.issue(value).fresh


def test_cookie_header_attributes() -> None:
    signer = CookieSigner(Cookie(max_age=1800, same_site="lax"), ["s"])
    header = signer.header("v", "shop.example")
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Max-Age=1800" in header
    assert "Path=/" in header and "Secure" in header
    assert "Secure" not in signer.header("v", "localhost:8000")
    assert "Secure" not in signer.header("v", "127.0.0.1:8000")


def test_cookie_header_is_exact() -> None:
    """The attributes are built once per signer: the header stays byte for byte what it was,
    for each setting and for local and public hosts."""
    plain = CookieSigner(Cookie(max_age=1800.5, same_site="strict", secure=False), ["s"])
    assert plain.header("a.b.c", "shop.example") == (
        "rid=a.b.c; Max-Age=1800; Path=/; HttpOnly; SameSite=Strict"
    ).replace("rid", Cookie().name)
    full = CookieSigner(Cookie(name="c", path="/t", domain="shop.example", same_site="none"),
                        ["s"])
    assert full.header("v", "shop.example:443") == (
        "c=v; Max-Age=31536000; Path=/t; HttpOnly; SameSite=None; Domain=shop.example; Secure"
    ).replace("31536000", str(int(Cookie().max_age)))
    assert full.header("v", "[::1]") == (
        f"c=v; Max-Age={int(Cookie().max_age)}; Path=/t; HttpOnly; SameSite=None; "
        "Domain=shop.example"
    )
    assert full.header("w", None).startswith("c=w; ") and full.header("w", None).endswith(
        "; Secure")


@pytest.mark.parametrize(
    ("config", "headers", "expected"),
    [
        (ClientIP(), {"x-forwarded-for": "6.6.6.6"}, "10.0.0.1"),
        (ClientIP("X-Forwarded-For", 1), {"x-forwarded-for": "6.6.6.6, 1.2.3.4"}, "1.2.3.4"),
        (
            ClientIP("X-Forwarded-For", 2),
            {"x-forwarded-for": "6.6.6.6, 1.2.3.4, 5.5.5.5"},
            "1.2.3.4",
        ),
        (ClientIP("X-Forwarded-For", 3), {"x-forwarded-for": "1.2.3.4"}, "10.0.0.1"),
        (ClientIP("X-Forwarded-For", 1), {"x-forwarded-for": "garbage"}, "10.0.0.1"),
        (ClientIP("CF-Connecting-IP"), {"cf-connecting-ip": "2001:db8::7"}, "2001:db8::7"),
        (ClientIP("True-Client-IP"), {"true-client-ip": "1.2.3.4"}, "1.2.3.4"),
        (ClientIP("Fastly-Client-IP"), {"fastly-client-ip": "1.2.3.4"}, "1.2.3.4"),
        (
            ClientIP("CloudFront-Viewer-Address"),
            {"cloudfront-viewer-address": "1.2.3.4:443"},
            "1.2.3.4",
        ),
        (
            ClientIP("CloudFront-Viewer-Address"),
            {"cloudfront-viewer-address": "2001:db8::1:443"},
            "2001:db8::1",
        ),
        (ClientIP("CF-Connecting-IP"), {}, "10.0.0.1"),
    ],
)
def test_client_ip(config: ClientIP, headers: dict[str, str], expected: str) -> None:
    assert client_ip(config, headers, "10.0.0.1") == expected
