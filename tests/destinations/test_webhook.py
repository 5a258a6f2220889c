from __future__ import annotations

import httpx
import orjson

from relay.destinations import webhook
from relay.signature import verify

from .helpers import parse

NOW = 1_795_867_200.0
EVENTS = [{"event": "purchase", "event_id": "e1"}, {"event": "page_view", "event_id": "e2"}]


def settings(**kw: object) -> webhook.WebhookSettings:
    value = {"url": "https://hooks.example/relay", **kw}
    parsed, errors = parse(webhook.parse_settings, value)
    assert errors == []
    assert isinstance(parsed, webhook.WebhookSettings)
    return parsed


def test_parse_settings() -> None:
    s = settings(headers={"Authorization": "Bearer t"}, secret="k", batch=True)
    assert s == webhook.WebhookSettings(
        "https://hooks.example/relay", {"Authorization": "Bearer t"}, "k", True)
    assert "Bearer" not in repr(s) and "'k'" not in repr(s)  # secrets stay out of reprs
    assert s.batch_limit == webhook.MAX_BATCH
    assert settings().batch_limit == 1


def test_parse_settings_reports_mistakes() -> None:
    parsed, errors = parse(webhook.parse_settings, {
        "url": "ftp://x", "headers": {"X-Relay-Signature": "forged"}, "batch": "yes",
        "sekret": "k"})
    assert parsed is None
    assert errors == [
        "R101 destinations.d.settings.sekret: unknown key 'sekret'",
        "R104 destinations.d.settings.url: expected an http or https URL with a host",
        "R104 destinations.d.settings.headers.X-Relay-Signature: header 'X-Relay-Signature'"
        " is set by the relay",
        "R102 destinations.d.settings.batch: expected true or false, got a string",
    ]
    assert parse(webhook.parse_settings, {})[1] == [
        "R103 destinations.d.settings: missing required key 'url'"]


def test_a_header_http_cannot_carry_is_reported_without_its_value() -> None:
    _, errors = parse(webhook.parse_settings, {
        "url": "https://hooks.example/relay",
        "headers": {"X-Token": "tok-secret ", "X-Multi": "a\nb", "X-Accent": "café",
                    "Bad Name": "v", "X-Fine": "inner space ok"}})
    assert errors == [
        "R104 destinations.d.settings.headers.X-Token: a header value may not start or end "
        "with whitespace, nor hold a NUL, CR, LF or another character HTTP cannot carry",
        "R104 destinations.d.settings.headers.X-Multi: a header value may not start or end "
        "with whitespace, nor hold a NUL, CR, LF or another character HTTP cannot carry",
        "R104 destinations.d.settings.headers.X-Accent: a header value may contain only ASCII "
        "characters",
        "R104 destinations.d.settings.headers.Bad Name: a header name may contain only "
        "letters, digits and !#$%&'*+-.^_`|~",
    ]
    assert not any("tok-secret" in e for e in errors)


def test_single_event_request() -> None:
    request = webhook.build_request(EVENTS[:1], settings(headers={"X-Tenant": "shop"}), NOW)
    assert request.method == "POST" and str(request.url) == "https://hooks.example/relay"
    assert orjson.loads(request.content) == EVENTS[0]
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == "e1"
    assert request.headers["x-tenant"] == "shop"
    assert "x-relay-signature" not in request.headers


def test_batch_request() -> None:
    request = webhook.build_request(EVENTS, settings(batch=True), NOW)
    assert orjson.loads(request.content) == {"batch": EVENTS}
    assert "idempotency-key" not in request.headers


def test_signed_request_verifies() -> None:
    request = webhook.build_request(EVENTS[:1], settings(secret="k"), NOW)
    header = request.headers["x-relay-signature"]
    assert header.startswith(f"t={int(NOW)},v1=")
    assert verify(["k"], header, request.content, NOW + 10, 300)
    assert not verify(["k"], header, request.content, NOW + 301, 300)


def test_without_batch_more_than_one_event_is_refused() -> None:
    try:
        webhook.build_request(EVENTS, settings(), NOW)
    except ValueError as exc:
        assert "one event per request" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected ValueError")


def test_classify_is_the_http_default() -> None:
    assert webhook.DESTINATION.classify is not None
    verdict = webhook.DESTINATION.classify(httpx.Response(400, content=b"bad event"))
    assert (verdict.kind, verdict.detail) == ("permanent", "HTTP 400: bad event")
