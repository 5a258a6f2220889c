"""``meta_capi``: settings, the mapping (Meta's SDK as the oracle), requests and answers."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from facebook_business.adobjects.serverside.action_source import ActionSource
from facebook_business.adobjects.serverside.content import Content
from facebook_business.adobjects.serverside.custom_data import CustomData
from facebook_business.adobjects.serverside.event import Event as SdkEvent
from facebook_business.adobjects.serverside.event_request import EventRequest
from facebook_business.adobjects.serverside.gender import Gender
from facebook_business.adobjects.serverside.normalize import Normalize
from facebook_business.adobjects.serverside.user_data import UserData

from relay.destinations import DESTINATIONS, meta_capi
from relay.destinations.base import sha256_hex
from relay.registry import load_rules
from relay.rules import RulesError
from relay.rules.diagnostics import Reporter
from relay.rules.fields import At
from relay.types import StepContext

from .helpers import parse
from .vendorpaths import leaf_paths

TOKEN = "EAAB-test-token"
T0 = "2026-11-28T12:00:00.000Z"
T0_S = 1_795_867_200
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"


def settings(**kw: Any) -> meta_capi.MetaSettings:
    parsed, errors = parse(meta_capi.parse_settings,
                           {"pixel_id": "1234567890", "access_token": TOKEN, **kw})
    assert errors == []
    assert isinstance(parsed, meta_capi.MetaSettings)
    return parsed


def event(name: str = "purchase", **kw: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event": name, "event_id": "evt-1", "time": T0, "received_at": T0, "source": "backend",
        "context": {"user_agent": UA, "ip": "203.0.113.7",
                    "page": {"url": "https://shop.example/thanks",
                             "referrer": "https://news.example/"}},
        "properties": {"order_id": "O1", "value": 149.0, "currency": "USD"},
    }
    ev.update(kw)
    return ev


def prepare(ev: dict[str, Any], s: meta_capi.MetaSettings | None = None,
            granted: frozenset[str] = frozenset({"ads"})) -> tuple[Any, StepContext]:
    ctx = StepContext("meta", granted)
    return meta_capi.prepare(ev, s or settings(), ctx), ctx


# -- settings -----------------------------------------------------------------------------

def test_settings_defaults_and_secrets_out_of_repr() -> None:
    s = settings()
    assert (s.pixel_id, s.api_version, s.endpoint, s.action_source, s.test_event_code) == (
        "1234567890", meta_capi.DEFAULT_API_VERSION, "https://graph.facebook.com", "website",
        None)
    assert s.url == f"https://graph.facebook.com/{meta_capi.DEFAULT_API_VERSION}/1234567890/events"
    assert TOKEN not in repr(s)
    assert s.event_names["purchase"] == "Purchase"
    custom = settings(event_names={"purchase": "OrderPaid"}, properties={"plan": "plan"},
                      endpoint="https://gw.example/meta/", api_version="v24.0")
    assert custom.event_names["purchase"] == "OrderPaid"
    assert custom.event_names["add_to_cart"] == "AddToCart"  # merged over the defaults
    assert custom.properties["plan"] == "plan" and custom.properties["value"] == "value"
    assert custom.url == "https://gw.example/meta/v24.0/1234567890/events"


def test_settings_mistakes_are_reported_with_their_path() -> None:
    parsed, errors = parse(meta_capi.parse_settings, {
        "pixel_id": "px-12", "access_token": "", "api_version": "21.0",
        "action_source": "web", "endpoint": "ftp://x", "pixelid": 1})
    assert parsed is None
    assert errors == [
        "R101 destinations.d.settings.pixelid: unknown key 'pixelid'",
        "R104 destinations.d.settings.pixel_id: a pixel id is digits only",
        "R104 destinations.d.settings.access_token: must not be empty",
        "R104 destinations.d.settings.api_version: '21.0' is not a Graph API version",
        "R104 destinations.d.settings.endpoint: expected an http or https URL with a host",
        "R105 destinations.d.settings.action_source: unknown value 'web'",
    ]
    assert parse(meta_capi.parse_settings, {"pixel_id": 123})[1] == [
        "R103 destinations.d.settings: missing required key 'access_token'"]


def test_settings_errors_carry_file_line_and_column(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "d.yaml").write_text(
        "purposes:\n  ads: {default: {'*': granted}}\n"
        "destinations:\n"
        "  meta:\n"
        "    type: meta_capi\n"
        "    purpose: ads\n"
        "    events: '*'\n"
        "    settings:\n"
        "      pixel_id: 'px-1'\n"
        "      api_version: v21\n")
    with pytest.raises(RulesError) as info:
        load_rules(rules, {})
    lines = [Path(d.render()).name for d in info.value.diagnostics]
    assert "d.yaml:9:17: R104 destinations.meta.settings.pixel_id: a pixel id is digits only " \
           "(copy it from Events Manager > Data sources, like 1234567890123456)" in lines, lines
    assert "d.yaml:10:20: R104 destinations.meta.settings.api_version: 'v21' is not a Graph " \
           f"API version (like {meta_capi.DEFAULT_API_VERSION})" in lines, lines
    assert any(line.startswith("d.yaml:9:7: R103 destinations.meta.settings: missing required "
                               "key 'access_token'") for line in lines), lines


def test_the_type_is_registered() -> None:
    d = DESTINATIONS["meta_capi"]
    assert d is meta_capi.DESTINATION
    assert d.max_batch == 1000 and d.vendor and d.prepare is not None and d.fields is not None


# -- the mapping, against Meta's SDK ------------------------------------------------------

PERSON = {"id": "u_42", "email": " Ann@Example.com ", "phone": "+1 (650) 555-1212",
          "first_name": "Mary", "last_name": "Valéry", "date_of_birth": "1990-01-31",
          "gender": "female",
          "address": {"city": "New York", "region": "NY", "postal_code": "10001-2345",
                      "country": "US"}}


def sdk_user_data(**kw: Any) -> dict[str, Any]:
    normalized: dict[str, Any] = UserData(**kw).normalize()
    return normalized


def test_user_data_is_normalized_and_hashed_as_meta_s_sdk_does() -> None:
    item, ctx = prepare(event(user=PERSON))
    assert ctx.notes == []
    expected = sdk_user_data(
        emails=[PERSON["email"]], phones=[PERSON["phone"]], first_names=["Mary"],
        last_names=["Valéry"], dates_of_birth=["19900131"], genders=[Gender.FEMALE],
        cities=["New York"], states=["NY"], zip_codes=["10001-2345"], country_codes=["US"],
        external_ids=[Normalize.hash_sha_256("u_42")], client_ip_address="203.0.113.7",
        client_user_agent=UA)
    assert item["user_data"] == expected


@pytest.mark.parametrize(("field", "value", "sdk_field"), [
    ("email", "John_Smith@Gmail.com", "em"),
    ("phone", "0044 20 7946 0958", "ph"),
    ("phone", "16505551212", "ph"),
    ("first_name", " JOHN ", "fn"),
    ("last_name", "Smith", "ln"),
])
def test_each_identifier_matches_the_sdk(field: str, value: str, sdk_field: str) -> None:
    item, _ = prepare(event(user={field: value}))
    assert item["user_data"][sdk_field] == [Normalize.normalize_field(sdk_field, value)]


def test_published_vectors() -> None:
    # Meta's customer information parameters page: the documented inputs and their hashes.
    item, _ = prepare(event(user={"email": "john_smith@gmail.com", "phone": "16505551212",
                                  "first_name": "Mary", "last_name": "Valéry"}))
    user = item["user_data"]
    assert user["em"] == ["62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"]
    assert user["ph"] == ["e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"]
    assert user["fn"][0].startswith("6915771b") and user["fn"][0].endswith("49f4ec")
    assert user["ln"][0].startswith("08e1996b") and user["ln"][0].endswith("17149c")


def test_names_lose_their_punctuation_as_meta_s_docs_say() -> None:
    item, _ = prepare(event(user={"last_name": "O'Brien-Smith"}))
    assert item["user_data"]["ln"] == [sha256_hex("obriensmith")]


def test_a_value_already_hashed_passes_as_it_is() -> None:
    digest = hashlib.sha256(b"ann@example.com").hexdigest()
    item, _ = prepare(event(user={"email": digest.upper(), "id": digest}))
    assert item["user_data"]["em"] == [digest] and item["user_data"]["external_id"] == [digest]


def test_identifiers_meta_cannot_take_are_left_out_with_a_note() -> None:
    item, ctx = prepare(event(user={"email": "not-an-email", "phone": "012", "gender": "x",
                                    "date_of_birth": "31/01/1990",
                                    "address": {"country": "France"}}))
    assert "em" not in item["user_data"] and "ph" not in item["user_data"]
    assert {"ge", "db", "country"}.isdisjoint(item["user_data"])
    assert len(ctx.notes) == 5
    assert all("not-an-email" not in n and "France" not in n for n in ctx.notes)


def test_unhashed_fields_are_left_unhashed() -> None:
    ev = event()
    ev["context"]["cookies"] = {"_fbp": "fb.1.1558571054389.1098115397",
                                "_fbc": "fb.1.1554763741205.AbCdEf"}
    item, _ = prepare(ev)
    user = item["user_data"]
    assert user["client_ip_address"] == "203.0.113.7"
    assert user["client_user_agent"] == UA
    assert user["fbp"] == "fb.1.1558571054389.1098115397"
    assert user["fbc"] == "fb.1.1554763741205.AbCdEf"  # the cookie wins over the fbclid


def test_fbc_is_built_from_the_fbclid_with_its_case_and_the_event_time() -> None:
    ev = event()
    ev["context"]["click_ids"] = {"fbclid": "IwAR2xYz-AbC_dEf"}
    item, _ = prepare(ev)
    assert item["user_data"]["fbc"] == f"fb.1.{T0_S * 1000}.IwAR2xYz-AbC_dEf"
    again, _ = prepare(event(time="2026-11-28T12:00:00.250Z",
                             context={**ev["context"]}))
    assert again["user_data"]["fbc"] == f"fb.1.{T0_S * 1000 + 250}.IwAR2xYz-AbC_dEf"


def test_only_what_the_pipeline_kept_is_sent() -> None:
    ev = event(user=PERSON)
    del ev["context"]["ip"]
    ev["user"] = {"email": PERSON["email"]}
    item, _ = prepare(ev)
    assert set(item["user_data"]) == {"em", "client_user_agent"}


def test_a_website_event_without_user_agent_or_url_is_dropped_with_the_reason() -> None:
    ev = event()
    ev["context"] = {"device": {"type": "desktop"}, "page": {"url": "https://shop.example/"}}
    item, ctx = prepare(ev)
    assert item is None
    assert ctx.notes == [
        "meta_capi: Meta requires context.user_agent for website events; keep the user agent "
        "in this destination's pipeline (user_agent: keep) and send the page URL, or set "
        "settings.action_source"]
    ev["context"] = {"user_agent": UA}
    assert prepare(ev)[0] is None
    # Another action source does not need them.
    item, ctx = prepare(ev, settings(action_source="system_generated"))
    assert item is not None and item["action_source"] == "system_generated"
    # But Meta needs one customer information parameter, whatever the source.
    ev["context"] = {}
    item, ctx = prepare(ev, settings(action_source="system_generated"))
    assert item is None and ctx.notes[-1].startswith(
        "meta_capi: Meta requires at least one customer information parameter")


def test_events_older_than_seven_days_are_dropped_with_the_reason() -> None:
    old = event(time="2026-11-20T11:59:59.000Z", received_at="2026-11-27T12:00:00.000Z")
    item, ctx = prepare(old)
    assert item is None
    assert ctx.notes == ["meta_capi: the event is 7.0 days old; Meta takes website events up "
                         "to 7 days old"]
    recent = event(time="2026-11-20T12:00:01.000Z", received_at="2026-11-27T12:00:00.000Z")
    assert prepare(recent)[0] is not None
    store = settings(action_source="physical_store")
    assert prepare(old, store)[0] is not None


def sdk_event(item: dict[str, Any], custom: CustomData | None, **kw: Any) -> dict[str, Any]:
    normalized: dict[str, Any] = SdkEvent(
        event_time=item["event_time"], event_id=item["event_id"],
        event_source_url=item.get("event_source_url"), referrer_url=item.get("referrer_url"),
        action_source=ActionSource.WEBSITE,
        user_data=UserData(client_user_agent=UA, client_ip_address="203.0.113.7"),
        custom_data=custom, **kw).normalize()
    return normalized


ECOMMERCE = [
    ("page_view", "PageView", {}, None),
    ("product_view", "ViewContent",
     {"product_id": "mug", "name": "Mug", "price": 12.0, "currency": "EUR"},
     CustomData(currency="EUR", content_ids=["mug"], content_type="product",
                contents=[Content(product_id="mug", quantity=1, item_price=12.0, title="Mug")])),
    ("add_to_cart", "AddToCart",
     {"items": [{"item_id": "mug", "quantity": 2, "price": 12.0}], "value": 24.0,
      "currency": "EUR"},
     CustomData(value=24.0, currency="EUR", content_ids=["mug"], content_type="product",
                contents=[Content(product_id="mug", quantity=2, item_price=12.0)])),
    ("begin_checkout", "InitiateCheckout",
     {"products": [{"product_id": "a", "quantity": 1}, {"sku": "b", "quantity": 3}],
      "num_items": 4, "value": 30, "currency": "USD"},
     CustomData(value=30, currency="USD", num_items=4, content_ids=["a", "b"],
                content_type="product",
                contents=[Content(product_id="a", quantity=1),
                          Content(product_id="b", quantity=3)])),
    ("purchase", "Purchase",
     {"order_id": "O1", "value": 149.0, "currency": "USD",
      "items": [{"item_id": "sku1", "item_name": "Lamp", "item_brand": "Acme",
                 "item_category": "Home", "quantity": 1, "price": 149.0}]},
     CustomData(value=149.0, currency="USD", order_id="O1", content_ids=["sku1"],
                content_type="product",
                contents=[Content(product_id="sku1", quantity=1, item_price=149.0,
                                  title="Lamp", brand="Acme", category="Home")])),
    ("signup", "CompleteRegistration", {"plan": "pro"}, None),
    ("sign_up", "CompleteRegistration", {}, None),
    ("lead", "Lead", {"value": 5, "currency": "EUR"}, CustomData(value=5, currency="EUR")),
    ("search", "Search", {"query": "lamp"}, CustomData(search_string="lamp")),
    ("Order Completed", "Purchase", {"value": 1, "currency": "USD"},
     CustomData(value=1, currency="USD")),
]


@pytest.mark.parametrize(("ours", "theirs", "properties", "custom"), ECOMMERCE)
def test_standard_ecommerce_events(ours: str, theirs: str, properties: dict[str, Any],
                                   custom: CustomData | None) -> None:
    item, ctx = prepare(event(ours, properties=properties))
    assert ctx.notes == []
    expected = sdk_event(item, custom, event_name=theirs)
    assert item == expected


def test_unmapped_properties_are_not_sent_unless_the_settings_map_them() -> None:
    item, _ = prepare(event("signup", properties={"plan": "pro", "internal_note": "x"}))
    assert "custom_data" not in item
    item, _ = prepare(event("signup", properties={"plan": "pro"}),
                      settings(properties={"plan": "subscription_plan"}))
    assert item["custom_data"] == {"subscription_plan": "pro"}


def test_a_purchase_without_value_or_currency_is_dropped() -> None:
    item, ctx = prepare(event(properties={"order_id": "O1", "value": 3, "currency": "dollars"}))
    assert item is None
    assert ctx.notes[-1] == ("meta_capi: Meta requires properties.value and properties.currency "
                             "for a Purchase")


def test_gpc_turns_on_limited_data_use_with_meta_geolocating() -> None:
    ev = event()
    ev["context"]["gpc"] = True
    item, _ = prepare(ev)
    expected = sdk_event(item, CustomData(value=149.0, currency="USD", order_id="O1"),
                         event_name="Purchase", data_processing_options=["LDU"],
                         data_processing_options_country=0, data_processing_options_state=0)
    assert item == expected
    ev["context"]["gpc"] = False
    item, _ = prepare(ev)
    assert not {"data_processing_options", "data_processing_options_country",
                "data_processing_options_state"} & set(item)


def test_the_dedup_key_is_the_event_id_and_the_item_is_stable() -> None:
    first, _ = prepare(event(event_id="order-8472"))
    second, _ = prepare(event(event_id="order-8472"))
    assert first["event_id"] == "order-8472" and first == second
    # The spool keeps the item: every retry sends the same bytes for it.
    s = settings()
    body1 = orjson.loads(meta_capi.build_request([first], s).content)
    body2 = orjson.loads(meta_capi.build_request([second], s).content)
    assert body1 == body2 and body1["data"][0]["event_id"] == "order-8472"


def test_fields_cover_every_path_prepare_can_produce() -> None:
    s = settings(properties={"plan": "plan"})
    theirs = {f.theirs for f in meta_capi.fields(s)}
    ev = event(user=PERSON, properties={
        "order_id": "O1", "value": 1, "currency": "USD", "plan": "pro", "num_items": 1,
        "content_name": "n", "content_category": "c", "query": "q", "predicted_ltv": 3,
        "status": "s", "items": [{"item_id": "a", "quantity": 1, "price": 2, "item_name": "A",
                                  "item_brand": "B", "item_category": "C"}]})
    ev["context"].update(gpc=True, cookies={"_fbp": "fb.1.1.2", "_fbc": "fb.1.1.x"},
                         click_ids={"fbclid": "abc"})
    item, _ = prepare(ev, s)
    produced = leaf_paths(item)
    assert produced - theirs == set()
    # Hashed are exactly the customer information parameters Meta takes hashed.
    hashed = {f.theirs for f in meta_capi.fields(s) if f.hashed}
    assert hashed == {f"user_data.{k}[]" for k in
                      ("em", "ph", "fn", "ln", "db", "ge", "ct", "st", "zp", "country",
                       "external_id")}
    for f in meta_capi.fields(s):
        assert not f.hashed or f.theirs.startswith("user_data.")


# -- requests -----------------------------------------------------------------------------

def test_request_matches_the_sdk_s_event_request() -> None:
    item, _ = prepare(event())
    s = settings(test_event_code="TEST123")
    request = meta_capi.build_request([item, item], s)
    assert request.method == "POST"
    assert str(request.url) == (
        f"https://graph.facebook.com/{meta_capi.DEFAULT_API_VERSION}/1234567890/events")
    assert request.url.query == b""  # the token is never in the URL
    assert request.headers["content-type"] == "application/json"
    body = orjson.loads(request.content)
    assert body["access_token"] == TOKEN
    sdk = EventRequest(pixel_id="1234567890", test_event_code="TEST123",
                       events=[SdkEvent(event_name="Purchase", event_time=1)])
    assert set(sdk.get_params()) == {"data", "test_event_code"}
    assert body["test_event_code"] == "TEST123" and body["data"] == [item, item]
    plain = orjson.loads(meta_capi.build_request([item], settings()).content)
    assert "test_event_code" not in plain


def test_batches_of_a_thousand() -> None:
    item, _ = prepare(event())
    assert meta_capi.DESTINATION.max_batch == 1000
    body = orjson.loads(meta_capi.build_request([item] * 1000, settings()).content)
    assert len(body["data"]) == 1000


def test_the_access_token_is_masked_in_the_rules_tree() -> None:
    from relay.rules.secrets import is_secret_key

    assert is_secret_key("access_token")
    assert not is_secret_key("pixel_id") and not is_secret_key("test_event_code")


# -- answers ------------------------------------------------------------------------------

def answer(status: int, body: Any, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def graph_error(code: int, message: str = "boom", subcode: int | None = None,
                **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code,
                             "fbtrace_id": "AbCdEf", **extra}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


def test_classify_success() -> None:
    v = meta_capi.classify(answer(200, {"events_received": 2, "messages": [],
                                        "fbtrace_id": "A1"}))
    assert v.kind == "ok"


def test_classify_auth_errors_name_the_setting() -> None:
    v = meta_capi.classify(answer(400, graph_error(
        190, "Invalid OAuth access token - Cannot parse access token")))
    assert v.kind == "permanent" and v.status == 400
    assert v.detail == ("meta_capi: access_token refused (code 190: Invalid OAuth access token "
                        "- Cannot parse access token): check settings.access_token")
    assert meta_capi.classify(httpx.Response(401, text="")).detail.endswith(
        "check settings.access_token")
    v = meta_capi.classify(answer(403, graph_error(200, "Permissions error")))
    assert v.kind == "permanent"
    assert v.detail.endswith("check settings.access_token and settings.pixel_id")


def test_classify_rate_limits_and_transient_errors_retry() -> None:
    v = meta_capi.classify(answer(400, graph_error(17, "User request limit reached"),
                                  **{"Retry-After": "30"}))
    assert (v.kind, v.retry_after) == ("retry", 30.0)
    assert meta_capi.classify(answer(400, graph_error(80004))).kind == "retry"
    assert meta_capi.classify(answer(500, graph_error(2, "Service temporarily "
                                                         "unavailable"))).kind == "retry"
    assert meta_capi.classify(answer(400, graph_error(100, is_transient=True))).kind == "retry"
    v = meta_capi.classify(httpx.Response(503, text="down", headers={"Retry-After": "5"}))
    assert (v.kind, v.retry_after) == ("retry", 5.0)
    v = meta_capi.classify(httpx.Response(429, text=""))
    assert v.kind == "retry"


def test_classify_other_errors_are_permanent_with_meta_s_answer() -> None:
    v = meta_capi.classify(answer(400, graph_error(
        100, "Invalid parameter", 2804003, error_user_title="Event Timestamp Too Old")))
    assert v.kind == "permanent" and "Event Timestamp Too Old" in v.detail
    assert meta_capi.classify(httpx.Response(404, text="no")).kind == "permanent"


def test_settings_parse_through_at_directly() -> None:
    rep = Reporter()
    s = meta_capi.parse_settings(At({"pixel_id": 42, "access_token": "t"}, ("s",), rep))
    assert rep.errors == [] and s is not None and s.pixel_id == "42"


def test_tokens_are_masked_in_the_rules_get_rules_and_relay_check_show(tmp_path: Path) -> None:
    from relay.rules.secrets import masked_tree

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "d.yaml").write_text(
        "purposes:\n  ads: {default: {'*': granted}}\n"
        "destinations:\n"
        "  meta:\n"
        "    type: meta_capi\n"
        "    purpose: ads\n"
        "    events: '*'\n"
        "    settings: {pixel_id: '123', access_token: written-in-the-file}\n"
        "  tt:\n"
        "    type: tiktok\n"
        "    purpose: ads\n"
        "    events: '*'\n"
        "    settings: {pixel_code: C4ABCDEFGHIJKLMNOPQR, access_token: tt-written}\n")
    tree = masked_tree(load_rules(rules, {}))
    assert tree["destinations"]["meta"]["settings"] == {"pixel_id": "123",
                                                        "access_token": "***"}
    assert tree["destinations"]["tt"]["settings"] == {"pixel_code": "C4ABCDEFGHIJKLMNOPQR",
                                                      "access_token": "***"}
