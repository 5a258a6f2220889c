from __future__ import annotations

from email.utils import formatdate

import httpx
import pytest

from relay.destinations import DESTINATIONS
from relay.destinations.base import http_classify, parse_retry_after
from relay.signature import sign, verify
from relay.types import OK, Verdict

NOW = 1_795_867_200.0  # 2026-11-28 12:00:00 UTC


def test_registry_is_explicit() -> None:
    assert set(DESTINATIONS) >= {"file", "log", "webhook"}
    for definition in DESTINATIONS.values():
        assert definition.max_batch >= 1
        assert definition.write is not None or (
            definition.build_request is not None and definition.classify is not None)


@pytest.mark.parametrize(("value", "expected"), [
    ("120", 120.0),
    (" 1.5 ", 1.5),
    ("-3", 0.0),
    (formatdate(NOW + 60, usegmt=True), 60.0),
    (formatdate(NOW - 60, usegmt=True), 0.0),
    ("Sat, 28 Nov 2026 12:02:00 GMT", 120.0),
    ("soon", None),
    ("", None),
    (None, None),
    ("nan", None),
])
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def response(
    status: int, body: bytes = b"", headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers)


def test_classify_success() -> None:
    assert http_classify(response(200)) == OK
    assert http_classify(response(204)) == OK


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_classify_retry(status: int) -> None:
    verdict = http_classify(response(status, b"busy"))
    assert verdict == Verdict("retry", f"HTTP {status}: busy", status, None)


def test_classify_honours_retry_after_seconds_and_dates() -> None:
    assert http_classify(response(429, headers={"Retry-After": "7"})).retry_after == 7.0
    dated = response(503, headers={
        "Date": formatdate(NOW, usegmt=True),
        "Retry-After": formatdate(NOW + 90, usegmt=True),  # measured on the vendor's clock
    })
    assert http_classify(dated).retry_after == 90.0


@pytest.mark.parametrize("status", [301, 400, 401, 403, 404, 413, 422])
def test_classify_permanent_keeps_the_answer(status: int) -> None:
    body = b'{"error": "invalid measurement_id"}' + b"." * 1000
    verdict = http_classify(response(status, body))
    assert verdict.kind == "permanent" and verdict.status == status
    assert verdict.detail.startswith(f'HTTP {status}: {{"error": "invalid measurement_id"}}')
    assert len(verdict.detail) == len(f"HTTP {status}: ") + 500


def test_sign_verify_round_trip() -> None:
    body = b'{"event":"purchase"}'
    header = sign("s3cret", body, int(NOW))
    assert header.startswith(f"t={int(NOW)},v1=")
    assert verify(["s3cret"], header, body, NOW, 300)
    assert verify("s3cret", header, body, NOW + 299, 300)  # a lone secret works too
    assert verify(["old", "s3cret"], header, body, NOW - 299, 300)  # rotation


def test_verify_rejects() -> None:
    body = b'{"event":"purchase"}'
    header = sign("s3cret", body, int(NOW))
    assert not verify(["s3cret"], header, body, NOW + 301, 300)  # stale
    assert not verify(["s3cret"], header, body, NOW - 301, 300)  # from the future
    assert not verify(["other"], header, body, NOW, 300)
    assert not verify(["s3cret"], header, body + b" ", NOW, 300)
    assert not verify(["s3cret"], None, body, NOW, 300)
    assert not verify(["s3cret"], "t=abc,v1=00", body, NOW, 300)
    assert not verify(["s3cret"], f"t={int(NOW)}", body, NOW, 300)
    assert not verify([], header, body, NOW, 300)


def test_verify_accepts_any_of_several_signatures() -> None:
    body = b"{}"
    t = int(NOW)
    new = sign("new", body, t).split("v1=")[1]
    header = f"t={t},v1={'0' * 64},v1={new}"
    assert verify(["new"], header, body, NOW, 300)
