"""``matomo``: settings, the tracking parameters of each kind of event, the bulk request
(token_auth in the body only), every kind of answer, and the engine path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson

from relay.destinations import matomo
from relay.dispatch import by_size
from relay.spool.base import Claimed
from relay.types import Event, StepContext

from .engine_path import check_errors, engine_with, run
from .fieldcheck import uncovered
from .helpers import parse

TOKEN = "33dc3f2536d3025974cccb4b4d2d98f4"
BASE = "https://matomo.example"


def settings(**kw: Any) -> matomo.MatomoSettings:
    parsed, errors = parse(matomo.parse_settings, {"site_id": 7, "endpoint": BASE, **kw})
    assert errors == []
    assert isinstance(parsed, matomo.MatomoSettings)
    return parsed


def event(**kw: Any) -> Event:
    ev: Event = {
        "event": "page_view", "event_id": "evt_1", "time": "2026-11-28T12:00:00.000Z",
        "received_at": "2026-11-28T12:00:01.000Z", "source": "browser",
        "anonymous_id": "anon-7", "user": {"id": "u_42", "email": "ann@example.com"},
        "context": {"ip": "203.0.113.0", "user_agent": "Mozilla/5.0 (X11) Firefox/126.0",
                    "page": {"url": "https://shop.example/pricing?plan=pro",
                             "referrer": "https://search.example/", "title": "Pricing"}},
        "properties": {},
    }
    ev.update(kw)
    return ev


def prepare(ev: Event, s: matomo.MatomoSettings | None = None,
            ctx: StepContext | None = None) -> Event | None:
    return matomo.prepare(ev, s or settings(), ctx or StepContext("mt"))


# -- settings ---------------------------------------------------------------------------


def test_settings() -> None:
    s = settings(token_auth=TOKEN, debug=True, event_names={"signup": "Sign up"})
    assert (s.site_id, s.endpoint, s.debug, s.event_names) == (
        7, BASE, True, {"signup": "Sign up"})
    assert TOKEN not in repr(s)
    # the tracker's own URL is taken as its base
    assert settings(endpoint=f"{BASE}/analytics/matomo.php").endpoint == f"{BASE}/analytics"


def test_settings_mistakes() -> None:
    parsed, errors = parse(matomo.parse_settings, {"site_id": "one", "endpoint": "matomo",
                                                   "idsite": 1})
    assert parsed is None
    assert errors == [
        "R101 destinations.d.settings.idsite: unknown key 'idsite'",
        "R102 destinations.d.settings.site_id: expected a whole number, got a string",
        "R104 destinations.d.settings.endpoint: expected an http or https URL with a host",
    ]
    assert parse(matomo.parse_settings, {"site_id": 0, "endpoint": BASE})[1] == [
        "R104 destinations.d.settings.site_id: must be at least 1, got 0"]
    assert parse(matomo.parse_settings, {})[1] == [
        "R103 destinations.d.settings: missing required key 'site_id'",
        "R103 destinations.d.settings: missing required key 'endpoint'"]


def test_settings_errors_point_at_file_line_and_column(tmp_path: Path) -> None:
    errors = check_errors(tmp_path, (
        "destinations:\n"
        "  mt:\n"
        "    type: matomo\n"
        "    purpose: analytics\n"
        "    settings:\n"
        "      site_id: 1.5\n"
        "      endpoint: https://matomo.example\n"
        "      debgu: true\n"))
    assert errors == [
        "zz-test.yaml:6:16: R102 destinations.mt.settings.site_id: expected a whole number, "
        "got a number",
        "zz-test.yaml:8:7: R101 destinations.mt.settings.debgu: unknown key 'debgu' "
        "(did you mean 'debug'?)",
    ]


def test_token_auth_is_masked() -> None:
    from relay.rules.secrets import is_secret_key

    assert is_secret_key("token_auth")


# -- the mapping ------------------------------------------------------------------------


def test_a_page_view() -> None:
    assert prepare(event()) == {
        "idsite": 7, "rec": 1, "apiv": 1, "_id": matomo.visitor_id("anonymous_id:anon-7"),
        "uid": "u_42", "url": "https://shop.example/pricing?plan=pro",
        "urlref": "https://search.example/", "action_name": "Pricing",
        "cdt": 1_795_867_200, "ua": "Mozilla/5.0 (X11) Firefox/126.0", "send_image": 0,
    }  # no cip: without token_auth Matomo would not take it; never the email


def test_cip_only_with_token_auth_and_a_kept_ip() -> None:
    item = prepare(event(), settings(token_auth=TOKEN))
    assert item is not None and item["cip"] == "203.0.113.0"
    ev = event()
    del ev["context"]["ip"], ev["context"]["user_agent"]
    item = prepare(ev, settings(token_auth=TOKEN))
    assert item is not None and "cip" not in item and "ua" not in item


def test_the_visitor_id_is_16_hex_and_stable() -> None:
    ids = {matomo.visitor_id(v) for v in ("a", "b", "anonymous_id:anon-7")}
    assert len(ids) == 3 and all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
    first = prepare(event(event_id="e1"))
    again = prepare(event(event_id="e2"))
    assert first is not None and again is not None and first["_id"] == again["_id"]
    visit = prepare(event(anonymous_id=None, correlation_id="cid-1"))
    assert visit is not None and visit["_id"] == matomo.visitor_id("correlation_id:cid-1")


def test_a_custom_event() -> None:
    item = prepare(event(event="signup", properties={"label": "pro plan", "value": 3,
                                                     "category": "account"}),
                   settings(event_names={"signup": "Sign up"}))
    assert item is not None
    assert {k: item[k] for k in ("e_c", "e_a", "e_n", "e_v", "ca")} == {
        "e_c": "account", "e_a": "Sign up", "e_n": "pro plan", "e_v": 3, "ca": 1}
    assert "action_name" not in item
    plain = prepare(event(event="newsletter"))
    assert plain is not None and (plain["e_c"], plain["e_a"]) == ("relay", "newsletter")


def test_a_purchase_is_an_ecommerce_order() -> None:
    item = prepare(event(event="purchase", properties={
        "order_id": "ORD-1", "value": 149.5, "currency": "USD", "tax": 10, "shipping": 5,
        "items": [{"sku": "SKU-1", "name": "Shoe", "category": "Shoes", "price": 69.75,
                   "quantity": 2}, {"item_id": "SKU-2"}]}))
    assert item is not None
    assert (item["idgoal"], item["ec_id"], item["revenue"], item["ec_tx"], item["ec_sh"]) == (
        0, "ORD-1", 149.5, 10, 5)
    assert json.loads(item["ec_items"]) == [["SKU-1", "Shoe", "Shoes", 69.75, 2],
                                            ["SKU-2", "", "", 0, 1]]
    ctx = StepContext("mt")
    assert prepare(event(event="purchase", properties={"value": 1}), ctx=ctx) is None
    assert ctx.notes == ["matomo: an ecommerce order needs properties.order_id and "
                         "properties.value"]


def test_old_events_need_token_auth() -> None:
    old = event(time="2026-11-26T12:00:00.000Z")
    ctx = StepContext("mt")
    assert prepare(old, ctx=ctx) is None
    assert ctx.notes == ["matomo: the event is more than 24 h old, which Matomo takes only "
                         "with settings.token_auth"]
    item = prepare(old, settings(token_auth=TOKEN))
    assert item is not None and item["cdt"] == 1_795_867_200 - 2 * 86400


def test_no_visitor_is_dropped_with_a_reason() -> None:
    ctx = StepContext("mt")
    assert prepare(event(anonymous_id=None, user=None), ctx=ctx) is None
    assert ctx.notes[0].startswith("matomo: no anonymous_id, correlation id or user.id")
    only_user = prepare(event(anonymous_id=None))
    assert only_user is not None and only_user["uid"] == "u_42"
    assert only_user["_id"] == matomo.visitor_id("user.id:u_42")


def test_fields_cover_every_parameter() -> None:
    s = settings(token_auth=TOKEN)
    for ev in (event(), event(event="signup", properties={"label": "x", "value": 1}),
               event(event="purchase", properties={"order_id": "O", "value": 1,
                                                   "items": [{"sku": "s"}], "discount": 2})):
        item = prepare(ev, s)
        assert item is not None
        assert uncovered(item, matomo.fields(s), ev, matomo.CONSTANT_PARAMS) == []


# -- the bulk request -------------------------------------------------------------------


def test_the_bulk_request() -> None:
    s = settings(token_auth=TOKEN)
    items = [prepare(event(), s), prepare(event(event="signup", properties={"label": "a b&c"}))]
    request = matomo.build_request([i for i in items if i], s)
    assert request.method == "POST" and str(request.url) == f"{BASE}/matomo.php"
    assert TOKEN not in str(request.url)  # the token travels in the body only
    body = orjson.loads(request.content)
    assert set(body) == {"requests", "token_auth"} and body["token_auth"] == TOKEN
    assert "send_image" not in body  # at the top it would turn Matomo's answer into a 204
    first, second = body["requests"]
    assert first.startswith("?idsite=7&rec=1&apiv=1&_id=")
    params = {k: v[0] for k, v in parse_qs(urlsplit(first).query).items()}
    assert params["url"] == "https://shop.example/pricing?plan=pro"
    assert params["cip"] == "203.0.113.0" and params["send_image"] == "0"
    assert "%20" in second and "a%20b%26c" in second


def test_without_token_auth_no_token_and_no_cip_go_out() -> None:
    item = prepare(event(), settings(token_auth=TOKEN))  # spooled while a token was set
    assert item is not None
    request = matomo.build_request([item], settings())
    body = orjson.loads(request.content)
    assert set(body) == {"requests"} and "cip=" not in body["requests"][0]


def test_debug_asks_matomo_for_its_tracker_log() -> None:
    item = prepare(event())
    assert item is not None
    assert str(matomo.build_request([item], settings(debug=True)).url) == (
        f"{BASE}/matomo.php?debug=1")


def test_batches_stay_under_the_byte_limit() -> None:
    item = prepare(event(properties={}))
    assert item is not None
    row = orjson.dumps({**item, "url": "https://shop.example/" + "x" * 2000})
    rows = [Claimed(i, "mt", f"e{i}", row, 0, 0) for i in range(matomo.MAX_BATCH)]
    for part in by_size(rows, matomo.DESTINATION.max_bytes):
        request = matomo.build_request([orjson.loads(r.payload) for r in part.rows],
                                       settings())
        assert len(request.content) <= matomo.MAX_BYTES * 1.2  # encoded, about as long


# -- the answers ------------------------------------------------------------------------


def _answer(status: int, body: Any, sent: int = 3) -> httpx.Response:
    request = httpx.Request("POST", f"{BASE}/matomo.php", content=orjson.dumps(
        {"requests": ["?idsite=7&rec=1"] * sent}))
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, content=content, request=request)


def test_classify_every_answer() -> None:
    ok = matomo.classify(_answer(200, {"status": "success", "tracked": 3, "invalid": 0}))
    assert ok.kind == "ok" and ok.failed == ()
    named = matomo.classify(_answer(200, {"status": "success", "tracked": 2, "invalid": 1,
                                          "invalid_indices": [1]}))
    assert named.kind == "ok" and [i for i, _ in named.failed] == [1]
    everything = matomo.classify(_answer(200, {"status": "success", "tracked": 0,
                                               "invalid": 3}))
    assert everything.kind == "ok" and [i for i, _ in everything.failed] == [0, 1, 2]
    unnamed = matomo.classify(_answer(200, {"status": "success", "tracked": 2, "invalid": 1}))
    assert unnamed.kind == "permanent" and "without naming them" in unnamed.detail
    assert "batch_size: 1" in unnamed.detail
    auth = matomo.classify(_answer(401, b"token_auth is invalid"))
    assert auth.kind == "permanent" and "settings.token_auth" in auth.detail
    bad = matomo.classify(_answer(400, {"status": "error", "tracked": 0, "invalid": 0}))
    assert bad.kind == "permanent" and "settings.site_id" in bad.detail
    assert matomo.classify(_answer(500, {"status": "error", "tracked": 0,
                                         "invalid": 0})).kind == "retry"
    assert matomo.classify(_answer(503, b"")).kind == "retry"
    assert matomo.classify(_answer(429, b"")).kind == "retry"
    page = matomo.classify(_answer(200, b"<html>Matomo login</html>"))
    assert page.kind == "permanent" and "settings.endpoint" in page.detail
    gif = matomo.classify(_answer(204, b""))
    assert gif.kind == "permanent" and "settings.endpoint" in gif.detail


# -- the engine path --------------------------------------------------------------------


async def test_through_the_engine(tmp_path: Path) -> None:
    engine = engine_with(tmp_path, "mt", {
        "type": "matomo", "purpose": "analytics", "events": "*", "pipeline": "minimize",
        "settings": {"site_id": 7, "endpoint": BASE, "token_auth": TOKEN}})
    copy, item = await run(engine, "mt", {
        "event": "page_view", "event_id": "pv-1", "user": {"email": "Ann@Example.com"},
        "context": {"page": {"url": "https://shop.example/?gclid=x", "title": "Home"}}})
    assert copy.outcome == "delivered"
    assert item["cip"] == "203.0.113.0"  # truncated by the pipeline
    assert "ua" not in item  # the pipeline kept only the device, not the user agent
    assert item["_id"] == matomo.visitor_id("correlation_id:cid-1")
    assert "Ann@Example.com" not in json.dumps(item) and "email" not in json.dumps(item)
