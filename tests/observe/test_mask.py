"""``Masker``: values masked by what they mean, with keyed tags."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from relay.observe.log import digest
from relay.observe.mask import Masker

MASKER = Masker.from_secrets(["old-cookie-secret", "test-cookie-secret"])
HASHED = hashlib.sha256(b"ann@example.com").hexdigest()
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/125.0.0.0 Safari/537.36"


def test_a_tag_is_keyed_by_the_newest_secret() -> None:
    tag = MASKER.tag("203.0.113.77")
    assert tag.startswith("#") and len(tag) == 9
    assert tag == Masker.from_secrets(["test-cookie-secret"]).tag("203.0.113.77")
    assert tag != Masker.from_secrets(["another-secret"]).tag("203.0.113.77")
    # Not the plain hash of the value: guessing values and hashing them finds nothing.
    assert tag[1:] != hashlib.sha256(b"203.0.113.77").hexdigest()[:8]
    assert tag[1:] != digest("203.0.113.77", 8)


def test_a_key_must_be_long_enough() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Masker(b"short")
    with pytest.raises(ValueError, match="at least one secret"):
        Masker.from_secrets([])


def test_addresses_are_truncated_and_tagged_by_their_whole_value() -> None:
    a, b = MASKER.ip("203.0.113.77"), MASKER.ip("203.0.113.78")
    assert a.startswith("203.0.113.0 #") and b.startswith("203.0.113.0 #")
    assert a != b  # two visitors of one network stay apart
    assert MASKER.ip("203.0.113.77") == a
    assert MASKER.ip("198.51.100.23") != a
    assert MASKER.ip("2001:db8:85a3:4c1d:8a2e:370:7334:1").startswith("2001:db8:85a3:: #")
    assert MASKER.ip("not an address").startswith("[ip #")


def test_an_event_is_masked_field_by_field() -> None:
    event: dict[str, Any] = {
        "event": "purchase",
        "event_id": "evt_8f14e45f",
        "time": "2026-11-28T19:20:17.188Z",
        "received_at": "2026-11-28T19:20:18.002Z",
        "source": "browser",
        "schema": 2,
        "consent": {"analytics": "granted"},
        "correlation_id": "Zr9Tq2LmW0xYb4cA",
        "anonymous_id": "anon-5f2c",
        "user": {"email": "Ann@Example.com ", "phone": "+1 (555) 010-0000", "id": "u_42",
                 "hashed_email": HASHED, "address": {"city": "Paris"}, "vip": True},
        "context": {
            "ip": "203.0.113.77",
            "user_agent": UA,
            "country": "US",
            "gpc": False,
            "page": {"url": "http://127.0.0.1:8080/p?utm_source=news", "title": "Shoes"},
            "device": {"type": "desktop", "os": "Linux", "browser": "Chrome"},
        },
        "properties": {"order_id": "ORD-8472", "value": 149.0, "count": 3,
                       "sku": "1234567890", "note": "call +1 555 010 4477, mail ann@example.com"},
    }
    out = MASKER.event(event)
    for kept in ("event", "event_id", "time", "received_at", "source", "schema", "consent"):
        assert out[kept] == event[kept], kept
    assert out["correlation_id"] == digest("Zr9Tq2LmW0xYb4cA")  # what ?cid= takes
    assert out["anonymous_id"] == f"[id {MASKER.tag('anon-5f2c')}]"
    assert out["user"] == {
        "email": f"[email {MASKER.tag('ann@example.com')}]",  # normalized first
        "phone": f"[phone {MASKER.tag('+15550100000')}]",
        "id": f"[id {MASKER.tag('u_42')}]",
        "hashed_email": HASHED,  # already a SHA-256: shown as it is
        "address": {"city": f"[city {MASKER.tag('Paris')}]"},
        "vip": True,
    }
    ctx = out["context"]
    assert ctx["ip"] == f"203.0.113.0 {MASKER.tag('203.0.113.77')}"
    assert ctx["user_agent"] == f"[user agent {MASKER.tag(UA)}]"
    assert ctx["page"] == event["context"]["page"]  # a URL with nothing personal stays whole
    assert (ctx["country"], ctx["gpc"], ctx["device"]) == ("US", False, event["context"]["device"])
    props = out["properties"]
    assert {k: props[k] for k in ("order_id", "value", "count", "sku")} == {
        "order_id": "ORD-8472", "value": 149.0, "count": 3, "sku": "1234567890"}
    assert props["note"] == "call [phone], mail [email]"
    assert event["user"]["email"] == "Ann@Example.com "  # the input is not changed


def test_the_same_email_has_the_same_tag_however_written() -> None:
    tags = {MASKER.event({"user": {"email": e}})["user"]["email"]
            for e in ("Ann@Example.com", " ann@example.com ", "ANN@EXAMPLE.COM")}
    assert len(tags) == 1
    assert MASKER.event({"user": {"email": "bob@example.com"}})["user"]["email"] not in tags


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28T19:20:17.188Z", "2026-11-28T19:20:17.188Z"),
        ("2026-11-28 19:20:17+01:00", "2026-11-28 19:20:17+01:00"),
        ("1795000000000", "1795000000000"),
        ("on 28/11/2026 at 12:00", "on 28/11/2026 at 12:00"),
        ("order ORD-123456789 of 149.00 USD", "order ORD-123456789 of 149.00 USD"),
        ("v1.2.3.4 build 77", "v1.2.3.4 build 77"),
        ("call +1 (555) 010-4477 now", "call [phone] now"),
        ("mail Ann@Example.com", "mail [email]"),
        ("card 4111 1111 1111 1111", "card [card]"),
    ],
)
def test_free_text(text: str, expected: str) -> None:
    assert MASKER.text(text) == expected


def test_addresses_inside_text_are_truncated_and_tagged() -> None:
    out = MASKER.text("peer 203.0.113.77:5000 then 203.0.113.78, via 2001:db8::1")
    assert out == (f"peer 203.0.113.0 {MASKER.tag('203.0.113.77')}:5000 then "
                   f"203.0.113.0 {MASKER.tag('203.0.113.78')}, via "
                   f"2001:db8:: {MASKER.tag('2001:db8::1')}")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/"),
        ("https://shop.example/p?utm_source=news&n=2#top", "https://shop.example/p?utm_source=news&n=2#top"),
        ("https://shop.example/account?email=privacy.probe%2Be2e%40example.org&phone=5550104477",
         "https://shop.example/account?email=[email]&phone=[phone]"),
        ("https://shop.example/?tel=%2B1%20555%20010%204477", "https://shop.example/?tel=[phone]"),
        ("https://ann:pw@shop.example:8443/u/ann@example.com",
         "https://[userinfo]@shop.example:8443/u/[email]"),
        ("https://mail.example/#to=ann@example.com", "https://mail.example/#to=[email]"),
        # An unencoded "+" in a query value: an email's own (all of it masked), or a space.
        ("https://mail.example/?from=Privacy.Probe+e2e@Example.org&n=a+b",
         "https://mail.example/?from=[email]&n=a+b"),
        ("https://s.example/?q=call+%2B1+555+010+4477&r=ring+555+010+4478",
         "https://s.example/?q=call [phone]&r=ring [phone]"),
        # Where "+" could be either, the longest email it can make is masked.
        ("https://s.example/?q=mail+ann+x@example.com", "https://s.example/?q=[email]"),
    ],
)
def test_urls_keep_their_shape_and_lose_personal_data(url: str, expected: str) -> None:
    assert MASKER.url(url) == expected
    assert MASKER.value({"context_url": url}) == {"context_url": expected}


def test_keys_are_free_text_too() -> None:
    assert MASKER.value({"ann@example.com": 1, "nested": [{"555 010 4477 x": "ok"}]}) == {
        "[email]": 1, "nested": [{"[phone] x": "ok"}]}


def test_fields_named_for_an_email_or_a_phone_are_identifiers_wherever_they_are() -> None:
    out = MASKER.value({"customer_email": "Ann@Example.com", "mobile": 5550104477,
                        "phone": "5550104477", "email_opt_in": True, "emails_sent": 3})
    assert out == {"customer_email": f"[customer_email {MASKER.tag('ann@example.com')}]",
                   "mobile": f"[mobile {MASKER.tag('5550104477')}]",
                   "phone": f"[phone {MASKER.tag('5550104477')}]",
                   "email_opt_in": True, "emails_sent": 3}


def test_fields_named_for_a_user_agent_are_tagged_wherever_they_are() -> None:
    tag = MASKER.tag(UA)
    assert MASKER.value({"userAgent": UA, "ua": UA, "browser": {"user_agent": UA},
                         "headers": {"User-Agent": UA}}) == {
        "userAgent": f"[user agent {tag}]", "ua": f"[user agent {tag}]",
        "browser": {"user_agent": f"[user agent {tag}]"},
        "headers": {"User-Agent": f"[user agent {tag}]"}}


def test_fields_named_for_an_id_are_tagged_wherever_they_are() -> None:
    """Vendor items (what the debug view shows a destination sends) carry the visitor's
    and user's ids under the vendor's names: a GA4 client_id is often the _ga cookie's."""
    out = MASKER.event({"client_id": "1234567890.1700000000", "user_id": "u_42",
                        "userId": 42, "order_id": "O-1",
                        "events": [{"params": {"anonymous_id": "anon-1"}}]})
    assert out == {"client_id": f"[client_id {MASKER.tag('1234567890.1700000000')}]",
                   "user_id": f"[user_id {MASKER.tag('u_42')}]",
                   "userId": f"[userId {MASKER.tag('42')}]", "order_id": "O-1",
                   "events": [{"params": {
                       "anonymous_id": f"[anonymous_id {MASKER.tag('anon-1')}]"}}]}


def test_vendor_items_and_forwarded_cookies_are_masked_by_meaning() -> None:
    fbc, fbp = "fb.1.1554763741205.IwAR2xYz", "fb.1.1558571054389.1098115397"
    meta_item = {"event_name": "Purchase", "event_id": "o1",
                 "user_data": {"em": [HASHED], "client_ip_address": "203.0.113.77",
                               "client_user_agent": UA, "fbc": fbc, "fbp": fbp}}
    masked = MASKER.event(meta_item)
    user = masked["user_data"]
    assert user["em"] == [HASHED]
    assert user["client_ip_address"] == f"203.0.113.0 {MASKER.tag('203.0.113.77')}"
    assert user["client_user_agent"] == f"[user agent {MASKER.tag(UA)}]"
    assert user["fbc"] == f"[cookie {MASKER.tag(fbc)}]"
    assert user["fbp"] == f"[cookie {MASKER.tag(fbp)}]"
    ev = {"context": {"cookies": {"_fbp": fbp, "_ttp": "ttp-value-123"}}}
    assert MASKER.event(ev)["context"]["cookies"] == {
        "_fbp": f"[cookie {MASKER.tag(fbp)}]", "_ttp": f"[cookie {MASKER.tag('ttp-value-123')}]"}
    tiktok_item = {"user": {"ttp": "ttp-value-123", "ip": "203.0.113.77", "user_agent": UA}}
    shown = str(MASKER.event(tiktok_item))
    assert "ttp-value-123" not in shown and "203.0.113.77" not in shown and UA not in shown
