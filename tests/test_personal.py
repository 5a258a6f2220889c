"""``relay.personal``: the finders of personal data the pipeline and the masking share."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from relay import personal


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail ann@example.com now", "mail [email] now"),
        ("https://a.example/?e=ann%40example.com", "https://a.example/?e=[email]"),
        ("call +1 555 010 0000", "call [phone]"),
        ("call (555) 010-0000.", "call [phone]."),
        ("tel 06 12 34 56 78", "tel [phone]"),
        ("card 4111 1111 1111 1111 ok", "card [card] ok"),
        ("card 4111-1111-1111-1111", "card [card]"),
        ("4111111111111111", "[card]"),
        # not personal data: kept
        ("order ORD-123456789", "order ORD-123456789"),
        ("1234567890", "1234567890"),  # a bare digit string is an id
        ("on 2026-11-28 12:00:00", "on 2026-11-28 12:00:00"),
        ("price 1.234.567,89", "price 1.234.567,89"),
        ("call 555 0100", "call 555 0100"),  # too short
        ("num 4111 1111 1111 1112", "num 4111 1111 1111 1112"),  # fails Luhn, too long for a phone
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert personal.redact_text(text)[0] == expected


def test_redact_emails_masks_emails_only() -> None:
    assert personal.redact_emails("to a+b@example.com, call 555 010 4477") == (
        "to [email], call 555 010 4477")
    assert personal.redact_emails("no address here") == "no address here"


def test_luhn() -> None:
    assert personal.luhn("4111111111111111")
    assert personal.luhn("79927398713")
    assert not personal.luhn("79927398710")


def test_digit_count() -> None:
    assert personal.digit_count("a1b2c3") == 3
    assert personal.digit_count("é 12 ١٢") == 2  # ASCII digits only, as the patterns match
    assert personal.digit_count("\ud800 123") == 3  # a lone surrogate does not raise


def test_truncate() -> None:
    assert personal.truncate("192.0.2.1") == "192.0.2.0"
    assert personal.truncate("2001:db8::1") == "2001:db8::"
    assert personal.truncate("x:y") is None


def test_identifiers_are_normalized_as_the_ad_platforms_match_them() -> None:
    assert personal.normalize_identifier(" Ann@Example.COM ", phone=False) == "ann@example.com"
    assert personal.normalize_identifier("+1 (555) 010-0000", phone=True) == "+15550100000"
    assert personal.is_phone_field("mobile") and personal.is_phone_field("work_phone")
    assert not personal.is_phone_field("email")


def test_subject_hashes_are_keyed_blake2b_of_the_derived_key() -> None:
    """The documented construction, computed from scratch: links written before a change
    of how the hash is computed must still be found."""

    def expected(secret: str, name: str) -> str:
        key = hmac.new(secret.encode(), b"relay.ledger.subject.v1", hashlib.sha256).digest()
        return hashlib.blake2b(name.encode(), key=key, digest_size=16).hexdigest()

    subjects = personal.Subjects(["older", "newer"])
    user = {"id": "u1", "email": " Ann@Example.com", "phone": "+1 (555) 010"}
    names = ["id:u1", "email:ann@example.com", "phone:+1555010"]
    assert subjects.of(user) == [expected("newer", n) for n in names]
    assert subjects.lookup(user) == [expected(s, n) for n in names for s in ("newer", "older")]
    assert subjects.of(user) == subjects.of(user)  # the keyed objects are copied, not used up
