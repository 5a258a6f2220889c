"""``tiktok``: settings, the mapping, requests and answers (HTTP 200 with a ``code``)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from relay.destinations import DESTINATIONS, tiktok
from relay.destinations.base import sha256_hex
from relay.registry import load_rules
from relay.rules import RulesError
from relay.rules.secrets import is_secret_key
from relay.types import StepContext

from .helpers import parse
from .vendorpaths import leaf_paths

TOKEN = "tt-access-token-1"
PIXEL = "C4ABCDEFGHIJKLMNOPQR"
T0 = "2026-11-28T12:00:00.000Z"
T0_S = 1_795_867_200
UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 Safari/604.1"


def settings(**kw: Any) -> tiktok.TikTokSettings:
    parsed, errors = parse(tiktok.parse_settings,
                           {"pixel_code": PIXEL, "access_token": TOKEN, **kw})
    assert errors == []
    assert isinstance(parsed, tiktok.TikTokSettings)
    return parsed


def event(name: str = "purchase", **kw: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event": name, "event_id": "evt-1", "time": T0, "received_at": T0,
        "context": {"ip": "203.0.113.7", "user_agent": UA, "locale": "en-US",
                    "page": {"url": "https://shop.example/thanks",
                             "referrer": "https://news.example/"}},
        "properties": {"order_id": "O1", "value": 10.0, "currency": "USD"},
    }
    ev.update(kw)
    return ev


def prepare(ev: dict[str, Any], s: tiktok.TikTokSettings | None = None) -> tuple[Any, StepContext]:
    ctx = StepContext("tt", frozenset({"ads"}))
    return tiktok.prepare(ev, s or settings(), ctx), ctx


def test_settings() -> None:
    s = settings()
    assert (s.pixel_code, s.endpoint, s.test_event_code) == (
        PIXEL, "https://business-api.tiktok.com", None)
    assert s.url == "https://business-api.tiktok.com/open_api/v1.3/event/track/"
    assert TOKEN not in repr(s)
    custom = settings(endpoint="http://127.0.0.1:9/tt", event_names={"purchase": "PlaceAnOrder"},
                      properties={"plan": "description"})
    assert custom.url == "http://127.0.0.1:9/tt/open_api/v1.3/event/track/"
    assert custom.event_names["purchase"] == "PlaceAnOrder"
    assert custom.event_names["add_to_cart"] == "AddToCart"
    assert custom.properties["plan"] == "description"
    assert is_secret_key("access_token") and not is_secret_key("pixel_code")


def test_settings_mistakes() -> None:
    parsed, errors = parse(tiktok.parse_settings, {
        "pixel_code": "c4-abc", "access_token": " tok\n", "endpoint": "https://x/?a=1",
        "test_event_code": ["T"], "pixelcode": 1})
    assert parsed is None
    assert errors == [
        "R101 destinations.d.settings.pixelcode: unknown key 'pixelcode'",
        "R104 destinations.d.settings.pixel_code: a pixel code is 10 to 40 capital letters and "
        "digits",
        "R104 destinations.d.settings.access_token: an access token is printable ASCII without "
        "spaces at either end",
        "R104 destinations.d.settings.endpoint: an endpoint is a base URL, without a query or a "
        "fragment",
        "R102 destinations.d.settings.test_event_code: expected a string, got a list",
    ]
    assert parse(tiktok.parse_settings, {"access_token": "t"})[1] == [
        "R103 destinations.d.settings: missing required key 'pixel_code'"]


def test_settings_errors_carry_file_line_and_column(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "d.yaml").write_text(
        "purposes:\n  ads: {default: {'*': granted}}\n"
        "destinations:\n"
        "  tt:\n"
        "    type: tiktok\n"
        "    purpose: ads\n"
        "    events: '*'\n"
        "    settings: {pixel_code: 'px'}\n")
    with pytest.raises(RulesError) as info:
        load_rules(rules, {})
    lines = [Path(d.render()).name for d in info.value.diagnostics]
    assert any(line.startswith("d.yaml:8:15: R103 destinations.tt.settings: missing required "
                               "key 'access_token'") for line in lines), lines
    assert any(line.startswith("d.yaml:8:28: R104 destinations.tt.settings.pixel_code: a pixel "
                               "code is") for line in lines), lines


def test_registered() -> None:
    d = DESTINATIONS["tiktok"]
    assert d is tiktok.DESTINATION and d.max_batch == 1000 and d.vendor


# -- hashing ------------------------------------------------------------------------------

def test_identifiers_are_hashed_the_tiktok_way() -> None:
    item, ctx = prepare(event(user={"email": " Ann@Example.com ", "phone": "+1 (650) 555-1212",
                                    "id": " U_42 "}))
    assert ctx.notes == []
    user = item["user"]
    assert user["email"] == [sha256_hex("ann@example.com")]
    # E.164 with its "+": the published vector for +16505551212.
    assert user["phone"] == ["1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8"]
    assert user["external_id"] == [sha256_hex("u_42")]
    for values in (user["email"], user["phone"], user["external_id"]):
        assert len(values[0]) == 64 and values[0] == values[0].lower()


def test_a_phone_without_plus_gets_one_and_hashed_values_pass() -> None:
    digest = hashlib.sha256(b"x@example.com").hexdigest()
    item, _ = prepare(event(user={"phone": "16505551212", "email": digest}))
    assert item["user"]["phone"] == [sha256_hex("+16505551212")]
    assert item["user"]["email"] == [digest]


def test_unusable_identifiers_are_left_out_with_a_note() -> None:
    item, ctx = prepare(event(user={"email": "nope", "phone": "12"}))
    assert "email" not in item["user"] and "phone" not in item["user"]
    assert ctx.notes == ["tiktok: user.email is not in a form TikTok takes; not sent",
                         "tiktok: user.phone is not in a form TikTok takes; not sent"]


def test_unhashed_fields_stay_unhashed() -> None:
    ev = event()
    ev["context"].update(click_ids={"ttclid": "E.C.P.AbC"}, cookies={"_ttp": "2Ab-ttp"})
    item, _ = prepare(ev)
    assert item["user"] == {"ttclid": "E.C.P.AbC", "ttp": "2Ab-ttp", "ip": "203.0.113.7",
                            "user_agent": UA, "locale": "en-US"}
    assert item["page"] == {"url": "https://shop.example/thanks",
                            "referrer": "https://news.example/"}


def test_only_what_the_pipeline_kept_is_sent() -> None:
    ev = event()
    ev["context"] = {"device": {"type": "mobile"}}
    item, _ = prepare(ev)
    assert item["user"] == {} and "page" not in item


# -- events -------------------------------------------------------------------------------

@pytest.mark.parametrize(("ours", "theirs", "properties", "expected"), [
    ("page_view", "Pageview", {}, None),
    ("product_view", "ViewContent", {"product_id": "mug", "price": 12, "currency": "EUR"},
     {"currency": "EUR", "contents": [{"content_id": "mug", "price": 12}],
      "content_type": "product"}),
    ("add_to_cart", "AddToCart",
     {"items": [{"item_id": "mug", "quantity": 2, "price": 12}], "value": 24, "currency": "EUR"},
     {"value": 24, "currency": "EUR", "content_type": "product",
      "contents": [{"content_id": "mug", "quantity": 2, "price": 12}]}),
    ("begin_checkout", "InitiateCheckout", {"value": 24, "currency": "EUR"},
     {"value": 24, "currency": "EUR"}),
    ("purchase", "CompletePayment",
     {"order_id": "O1", "value": 10, "currency": "USD",
      "products": [{"product_id": "a", "name": "A", "brand": "B", "category": "C",
                    "quantity": 1, "price": 10}]},
     {"order_id": "O1", "value": 10, "currency": "USD", "content_type": "product",
      "contents": [{"content_id": "a", "quantity": 1, "price": 10, "content_name": "A",
                    "brand": "B", "content_category": "C"}]}),
    ("signup", "CompleteRegistration", {"plan": "pro"}, None),
    ("search", "Search", {"query": "lamp"}, {"query": "lamp"}),
    ("custom_thing", "custom_thing", {}, None),
])
def test_standard_ecommerce_events(ours: str, theirs: str, properties: dict[str, Any],
                                   expected: dict[str, Any] | None) -> None:
    item, _ = prepare(event(ours, properties=properties))
    assert item["event"] == theirs
    assert item["event_time"] == T0_S and item["event_id"] == "evt-1"
    assert item.get("properties") == expected


def test_gpc_sets_limited_data_use() -> None:
    ev = event()
    assert prepare(ev)[0]["limited_data_use"] is False
    ev["context"]["gpc"] = True
    assert prepare(ev)[0]["limited_data_use"] is True


def test_the_dedup_key_is_the_event_id() -> None:
    a, _ = prepare(event(event_id="order-1"))
    b, _ = prepare(event(event_id="order-1"))
    assert a == b and a["event_id"] == "order-1"


def test_fields_cover_every_path_prepare_can_produce() -> None:
    s = settings(properties={"plan": "description"})
    ev = event(user={"email": "a@b.co", "phone": "+15550100000", "id": "u1"}, properties={
        "order_id": "O1", "value": 1, "currency": "USD", "plan": "pro", "query": "q",
        "num_items": 1, "shop_id": "s", "search_string": "x", "content_type": "product",
        "items": [{"item_id": "a", "quantity": 1, "price": 2, "item_name": "A",
                   "item_brand": "B", "item_category": "C"}]})
    ev["context"].update(click_ids={"ttclid": "t"}, cookies={"_ttp": "p"}, gpc=True)
    item, _ = prepare(ev, s)
    produced = leaf_paths(item)
    theirs = {f.theirs for f in tiktok.fields(s)}
    assert produced - theirs == set()
    assert {f.theirs for f in tiktok.fields(s) if f.hashed} == {
        "user.email[]", "user.phone[]", "user.external_id[]"}


# -- requests and answers -----------------------------------------------------------------

def test_request() -> None:
    item, _ = prepare(event())
    request = tiktok.build_request([item] * 1000, settings(test_event_code="TEST42"))
    assert request.method == "POST"
    assert str(request.url) == "https://business-api.tiktok.com/open_api/v1.3/event/track/"
    assert request.headers["access-token"] == TOKEN
    assert request.headers["content-type"] == "application/json"
    body = orjson.loads(request.content)
    assert body["event_source"] == "web" and body["event_source_id"] == PIXEL
    assert body["test_event_code"] == "TEST42" and len(body["data"]) == 1000
    assert TOKEN.encode() not in request.content
    plain = orjson.loads(tiktok.build_request([item], settings()).content)
    assert "test_event_code" not in plain


def answer(body: Any, status: int = 200,
           headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def test_classify_success_and_partial_success() -> None:
    assert tiktok.classify(answer({"code": 0, "message": "OK", "request_id": "r1",
                                   "data": {}})).kind == "ok"
    v = tiktok.classify(answer({"code": 20001, "message": "partial", "request_id": "r"}))
    assert v.kind == "ok" and "20001" in v.detail


@pytest.mark.parametrize("code", [40102, 40104, 40105])
def test_classify_auth_codes_name_the_setting(code: int) -> None:
    v = tiktok.classify(answer({"code": code, "message": "Access token is incorrect or has "
                                "been revoked.", "request_id": "r"}))
    assert v.kind == "permanent"
    assert v.detail == (f"tiktok: access_token refused (code {code}: Access token is incorrect "
                        "or has been revoked.): check settings.access_token")


def test_classify_permission_and_http_401() -> None:
    v = tiktok.classify(answer({"code": 40001, "message": "No permission to operate pixel"}))
    assert v.kind == "permanent" and v.detail.endswith(
        "check settings.access_token and settings.pixel_code")
    v = tiktok.classify(httpx.Response(401, text="unauthorized"))
    assert v.kind == "permanent" and v.detail.endswith("check settings.access_token")


@pytest.mark.parametrize("code", [40100, 40132, 61000, 50000, 50002, 51012, 60001])
def test_classify_rate_limits_and_system_errors_retry(code: int) -> None:
    v = tiktok.classify(answer({"code": code, "message": "Too many requests"},
                               headers={"Retry-After": "7"}))
    assert (v.kind, v.retry_after) == ("retry", 7.0)


def test_classify_other_codes_are_permanent_and_http_errors_as_usual() -> None:
    v = tiktok.classify(answer({"code": 40002, "message": "Invalid value for event_time"}))
    assert (v.kind, v.detail) == ("permanent", "tiktok: code 40002: Invalid value for event_time")
    assert tiktok.classify(answer({"code": 40062, "message": "PII not hashed"})).kind == (
        "permanent")
    v = tiktok.classify(httpx.Response(503, text="busy", headers={"Retry-After": "3"}))
    assert (v.kind, v.retry_after) == ("retry", 3.0)
    assert tiktok.classify(httpx.Response(429, text="")).kind == "retry"
    assert tiktok.classify(httpx.Response(200, text="<html>gateway</html>")).kind == "retry"
    assert tiktok.classify(httpx.Response(400, text="bad")).kind == "permanent"
