"""``ga4``: settings, the mapping to Measurement Protocol bodies (names, e-commerce, hashing
against Google's vectors, consent), requests, answers, and what the vendor can receive."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from relay.destinations import DESTINATIONS, ga4, google_data
from relay.engine.results import Meta, debug_entry
from relay.rules.diagnostics import Reporter
from relay.rules.fields import At
from relay.rules.secrets import masked_tree
from relay.types import OK, StepContext, Verdict

from .helpers import parse
from .vendor import MASKER, engine, rules_with, uncovered

GOOGLE_PHONE_VECTOR = "1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8"
# sha256("john_smith@gmail.com"): no dot in the local part, so Google's gmail rule keeps it
JOHN_SMITH = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
NOW = "2026-11-28T12:00:00.000Z"
NOW_MICROS = 1_795_867_200_000_000


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def settings(**kw: Any) -> ga4.Ga4Settings:
    value = {"measurement_id": "G-TEST1234", "api_secret": "mp-secret-1", **kw}
    parsed, errors = parse(ga4.parse_settings, value)
    assert errors == []
    assert isinstance(parsed, ga4.Ga4Settings)
    return parsed


def event(name: str = "page_view", **kw: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {"event": name, "event_id": "e1", "time": NOW, "received_at": NOW,
                          "source": "backend", "context": {}, "properties": {},
                          "correlation_id": "cid-test"}
    ev.update(kw)
    return ev


def prepare(ev: dict[str, Any], s: ga4.Ga4Settings | None = None,
            granted: frozenset[str] = frozenset({"analytics", "ads"})
            ) -> tuple[dict[str, Any] | None, list[str]]:
    ctx = StepContext("ga4", granted)
    item = ga4.prepare(copy.deepcopy(ev), s or settings(), ctx)
    return item, ctx.notes


def one(ev: dict[str, Any], **kw: Any) -> dict[str, Any]:
    item, notes = prepare(ev, **kw)
    assert item is not None, notes
    return item


def params(item: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = item["events"][0]["params"]
    return result


# -- settings ------------------------------------------------------------------------------


def test_settings_defaults_url_and_secret_out_of_reprs() -> None:
    s = settings()
    assert (s.endpoint, s.debug, s.ad_consent) == ("https://www.google-analytics.com", False,
                                                   "ads")
    assert s.url == ("https://www.google-analytics.com/mp/collect"
                     "?measurement_id=G-TEST1234&api_secret=mp-secret-1")
    assert "mp-secret-1" not in repr(s)
    eu = settings(endpoint="https://region1.google-analytics.com/", debug=True)
    assert eu.url.startswith("https://region1.google-analytics.com/debug/mp/collect?")
    names = settings(event_names={"lead_form": "generate_lead"}).event_names
    assert (names["lead_form"], names["signup"]) == ("generate_lead", "sign_up")  # merged


def test_settings_mistakes_are_reported_at_file_line_col(tmp_path: Path) -> None:
    _, lines = rules_with(tmp_path, """\
destinations:
  ga4:
    type: ga4
    purpose: analytics
    settings:
      measurement_id: UA-12345-1
      endpoint: ftp://google.example
      event_names: {purchase: "order completed", signup: first_open}
      properties: {order_id: _txn}
      api_secret: mp-secret-1
      api_key: oops
""")
    hint = "(at most 40 letters, digits and _, starting with a letter)"
    assert lines == [
        "dest.yaml:6:23: R104 destinations.ga4.settings.measurement_id: 'UA-12345-1' is not a "
        "GA4 measurement id (G- then letters and digits) (a Universal Analytics id: Universal "
        "Analytics takes no data any more; use the measurement id of a GA4 web stream (G-...))",
        "dest.yaml:7:17: R104 destinations.ga4.settings.endpoint: expected an http or https URL "
        "with a host (like https://hooks.example/relay)",
        "dest.yaml:8:31: R104 destinations.ga4.settings.event_names.purchase: 'order completed' "
        f"is not a GA4 event name: it has characters other than letters, digits and _ {hint}",
        "dest.yaml:8:58: R104 destinations.ga4.settings.event_names.signup: 'first_open' is "
        f"not a GA4 event name: it is a name GA4 reserves for its own events {hint}",
        "dest.yaml:9:30: R104 destinations.ga4.settings.properties.order_id: '_txn' is not a "
        f"GA4 parameter name: it does not start with a letter {hint}",
        "dest.yaml:11:7: R101 destinations.ga4.settings.api_key: unknown key 'api_key' "
        "(expected one of: ad_consent, api_secret, debug, endpoint, event_names, "
        "measurement_id, properties)",
    ]


def test_ad_consent_must_name_a_purpose_of_the_rules(tmp_path: Path) -> None:
    _, lines = rules_with(tmp_path, """\
destinations:
  ga4:
    type: ga4
    purpose: analytics
    settings: {measurement_id: G-TEST1234, api_secret: s3cret, ad_consent: add}
""")
    assert lines == ["dest.yaml:5:76: R204 destinations.ga4.settings.ad_consent: unknown "
                     "purpose 'add' (did you mean 'ads'?)"]
    rules, lines = rules_with(tmp_path, """\
destinations:
  ga4:
    type: ga4
    purpose: analytics
    settings: {measurement_id: G-TEST1234, api_secret: s3cret, ad_consent: analytics}
    legal_basis: consent
    retention: 14 months
""")
    # Valid, and the destination keeps its name; the privacy lint warns: GA4's user_data is
    # for Google Ads, and analytics is no ads purpose.
    assert rules is not None and set(rules.destinations) == {"archive", "ga4"}
    assert [line.split(": ")[1] for line in lines] == [
        "R302 destinations.ga4.settings.ad_consent"]
    assert lines[0].startswith("dest.yaml:5:76: ")


@pytest.mark.parametrize(("given", "hint"), [
    ("g-test1234", "in capitals: G-TEST1234"),
    ("AW-123456789", "a Google Ads, Floodlight or Tag Manager id; GA4 measurement ids start "
                     "with G-"),
    ("1234567", "like G-PSW1MY7HB4: Admin > Data streams > your web stream > Measurement ID"),
])
def test_a_wrong_measurement_id_says_what_to_use(given: str, hint: str) -> None:
    parsed, errors = parse(ga4.parse_settings, {"measurement_id": given, "api_secret": "s"})
    assert parsed is None
    assert errors == [f"R104 destinations.d.settings.measurement_id: '{given}' is not a GA4 "
                      "measurement id (G- then letters and digits)"]
    rep = Reporter()
    ga4.parse_settings(At({"measurement_id": given, "api_secret": "s"}, ("s",), rep))
    assert [d.hint for d in rep.errors] == [hint]


def test_a_missing_or_empty_secret_is_an_error() -> None:
    assert parse(ga4.parse_settings, {"measurement_id": "G-TEST1234"})[1] == [
        "R103 destinations.d.settings: missing required key 'api_secret'"]
    assert parse(ga4.parse_settings, {"measurement_id": "G-TEST1234", "api_secret": ""})[1] == [
        "R104 destinations.d.settings.api_secret: must not be empty"]


def test_the_api_secret_is_masked_in_the_rules_view(tmp_path: Path) -> None:
    rules, lines = rules_with(tmp_path, """\
destinations:
  ga4:
    type: ga4
    purpose: analytics
    settings: {measurement_id: G-TEST1234, api_secret: plain-written-mp-secret}
    legal_basis: consent
    retention: 14 months
""")
    assert lines == [] and rules is not None
    shown = masked_tree(rules)["destinations"]["ga4"]["settings"]
    assert shown == {"measurement_id": "G-TEST1234", "api_secret": "***"}
    assert "plain-written-mp-secret" not in orjson.dumps(masked_tree(rules)).decode()


def test_registered() -> None:
    assert DESTINATIONS["ga4"] is ga4.DESTINATION
    d = ga4.DESTINATION
    assert (d.max_batch, d.max_bytes, d.vendor) == (25, 130_000, "Google Analytics 4 (Google LLC)")
    assert d.prepare is ga4.prepare and d.group is ga4.group and d.fields is ga4.fields


# -- events and parameters -----------------------------------------------------------------


@pytest.mark.parametrize(("ours", "theirs"), [
    ("page_view", "page_view"), ("product_view", "view_item"), ("Product Viewed", "view_item"),
    ("Product List Viewed", "view_item_list"), ("Product Clicked", "select_item"),
    ("Product Added", "add_to_cart"), ("Product Removed", "remove_from_cart"),
    ("Cart Viewed", "view_cart"), ("Checkout Started", "begin_checkout"),
    ("Payment Info Entered", "add_payment_info"), ("Order Completed", "purchase"),
    ("purchase", "purchase"), ("Order Refunded", "refund"), ("signup", "sign_up"),
    ("Signed Up", "sign_up"), ("Signed In", "login"), ("Products Searched", "search"),
    ("add_to_cart", "add_to_cart"), ("view_item", "view_item"), ("login", "login"),
])
def test_standard_ecommerce_events_get_ga4_names(ours: str, theirs: str) -> None:
    ev = event(ours, properties={"order_id": "O-7", "value": 25.0, "currency": "usd",
                                 "products": [{"product_id": "sku-1", "name": "Tee",
                                               "price": 12.5, "quantity": 2}]})
    item = one(ev)
    assert item["events"][0]["name"] == theirs
    p = params(item)
    assert (p["transaction_id"], p["value"], p["currency"]) == ("O-7", 25.0, "USD")
    assert p["items"] == [{"item_id": "sku-1", "item_name": "Tee", "price": 12.5,
                           "quantity": 2}]


def test_a_purchase_without_order_id_is_deduplicated_by_its_event_id() -> None:
    item = one(event("purchase", event_id="evt_8f14e45f",
                     properties={"value": 1, "currency": "EUR"}))
    assert params(item)["transaction_id"] == "evt_8f14e45f"
    item2 = one(event("page_view", event_id="evt_2"))
    assert "transaction_id" not in params(item2)


def test_a_refund_without_its_order_is_dropped_with_the_reason() -> None:
    item, notes = prepare(event("Order Refunded", properties={"value": 5, "currency": "EUR"}))
    assert item is None
    assert notes == ["a refund needs properties.order_id, the transaction it refunds: GA4 "
                     "cannot take it"]


def test_value_and_currency_rules() -> None:
    item, notes = prepare(event("purchase", properties={"value": "12", "currency": "euro"}))
    assert item is not None
    assert "value" not in params(item) and "currency" not in params(item)
    assert notes == ["properties.value: not a number, not sent as value",
                     "properties.currency: not a 3-letter ISO 4217 code, not sent"]
    _, notes = prepare(event("purchase", properties={"value": 12}))
    assert notes == ["value without currency: GA4 computes no revenue from it"]


def test_ga_shaped_items_pass_and_segment_products_are_mapped() -> None:
    ev = event("view_item_list", properties={"items": [
        {"item_id": 42, "item_name": "Mug", "item_category": "Kitchen", "index": 0},
        "not an item", {"bad key!": 1}]})
    item, notes = prepare(ev)
    assert item is not None
    assert params(item)["items"] == [{"item_id": "42", "item_name": "Mug",
                                      "item_category": "Kitchen", "index": 0},
                                     {"bad_key": 1}]
    assert notes == ["properties.items[1]: not an object, not sent"]


def test_page_params_and_their_limits() -> None:
    long_url = "https://shop.example/" + "p" * 1100
    item, notes = prepare(event(context={"page": {"url": long_url, "referrer": "https://r/",
                                                  "title": "T" * 301}}))
    assert item is not None
    p = params(item)
    assert len(p["page_location"]) == 1000 and p["page_referrer"] == "https://r/"
    assert len(p["page_title"]) == 300
    assert notes == ["context.page.url: cut to the 1000 characters GA4 keeps",
                     "context.page.title: cut to the 300 characters GA4 keeps"]


def test_custom_properties_follow_the_parameter_rules() -> None:
    props: dict[str, Any] = {"plan": "pro", "note": "x" * 150, "flags": ["a"], "ok": True,
                             "step-name": "two", "ga_hidden": 1, "n": None}
    item, notes = prepare(event("signup", properties=props))
    assert item is not None
    p = params(item)
    assert p["plan"] == "pro" and len(p["note"]) == 100 and p["ok"] == "true"
    assert p["step_name"] == "two"
    assert "flags" not in p and "ga_hidden" not in p and "n" not in p
    assert notes == [
        "properties.note: cut to the 100 characters GA4 keeps",
        "properties.flags: a list or an object, not sent (GA4 takes numbers and text)",
        "properties.ga_hidden: parameter name starts with a prefix GA4 reserves (_, "
        "firebase_, ga_, google_), not sent (map it with settings.properties)",
    ]


def test_at_most_25_parameters_the_standard_ones_first() -> None:
    props = {"order_id": "O1", "value": 3, "currency": "EUR"} | {
        f"p{i:02d}": i for i in range(30)}
    item, notes = prepare(event("purchase", properties=props, correlation_id="cid-1",
                                context={"page": {"url": "https://shop.example/"}}))
    assert item is not None
    p = params(item)
    assert len(p) == 25
    assert list(p)[:6] == ["transaction_id", "value", "currency", "session_id",
                           "page_location", "p00"]
    assert notes == ["10 parameter(s) over GA4's 25 not sent: " +
                     ", ".join(f"p{i:02d}" for i in range(20, 30))]


def test_event_names_ga4_cannot_take_are_mapped_or_dropped_with_the_reason() -> None:
    item, notes = prepare(event("checkout:step/2"))
    assert item is not None and item["events"][0]["name"] == "checkout_step_2"
    assert notes == ["event name 'checkout:step/2' sent as 'checkout_step_2'"]
    for name, why in (("session_start", "is a name GA4 reserves for its own events"),
                      ("a" * 41, "longer than 40 characters"),
                      ("2fa_enabled", "does not start with a letter"),
                      ("firebase_thing", "starts with a prefix GA4 reserves (_, firebase_, "
                                         "ga_, google_)")):
        item, notes = prepare(event(name))
        assert item is None
        assert notes == [f"event name '{name}' {why}: GA4 would discard it (map it with "
                         "settings.event_names)"]
    mapped = settings(event_names={"session_start": "visit_start"})
    assert one(event("session_start"), s=mapped)["events"][0]["name"] == "visit_start"


def test_session_id_and_engagement_time() -> None:
    p = params(one(event(properties={"session_id": "1718000000",
                                     "engagement_time_msec": 1200.7})))
    assert (p["session_id"], p["engagement_time_msec"]) == ("1718000000", 1200)
    derived = params(one(event(correlation_id="cid-xyz")))["session_id"]
    assert derived.isdigit() and derived == params(one(event(correlation_id="cid-xyz")))[
        "session_id"]
    assert derived != params(one(event(correlation_id="cid-other")))["session_id"]
    p = params(one(event(properties={"session_id": "abc"}, correlation_id=None)))
    assert "session_id" not in p and "engagement_time_msec" not in p


# -- time ----------------------------------------------------------------------------------


def test_timestamps_in_microseconds_and_the_72_hour_window() -> None:
    assert one(event())["events"][0]["timestamp_micros"] == NOW_MICROS
    old = event(time="2026-11-25T11:00:00.000Z")  # 73 hours before NOW
    item, notes = prepare(old)
    assert item is None
    assert notes == ["time is 73 hours before the event was received: GA4 takes events up "
                     "to 72 hours old"]
    edge = one(event(time="2026-11-25T12:00:01.000Z"))
    assert edge["events"][0]["timestamp_micros"] == NOW_MICROS - (72 * 3600 - 1) * 1_000_000
    item, notes = prepare(event(time="2026-11-28T13:00:00.000Z"))
    assert item is not None and item["events"][0]["timestamp_micros"] == NOW_MICROS
    assert notes == ["time is after the event was received: sent as received_at"]


# -- identity, consent, user data ----------------------------------------------------------


def test_client_id_sources_in_order() -> None:
    assert one(event(anonymous_id="GA1.1.123.456", correlation_id="c"))["client_id"] == \
        "GA1.1.123.456"
    from_cid = one(event(correlation_id="c"))["client_id"]
    first, second = from_cid.split(".")
    assert first.isdigit() and second.isdigit() and int(first) > 0 and int(second) > 0
    assert one(event(correlation_id="c", event_id="other"))["client_id"] == from_cid
    by_user = one(event(user={"id": "u_42"}))["client_id"]
    assert by_user not in (from_cid, "u_42")
    item, notes = prepare(event(event_id="e-lonely", correlation_id=None))
    assert item is not None and item["client_id"] not in (from_cid, by_user)
    assert notes == ["client_id derived from the event id (no anonymous_id, correlation id "
                     "or user id): GA4 counts a new user"]


def test_google_hashing_vectors() -> None:
    assert google_data.phone("+1 (650) 555-1212") == GOOGLE_PHONE_VECTOR
    assert google_data.phone("16505551212") == GOOGLE_PHONE_VECTOR  # E.164 gets its +
    assert google_data.phone("0016505551212") == GOOGLE_PHONE_VECTOR  # 00: the call prefix
    assert google_data.email("john_smith@gmail.com") == JOHN_SMITH
    assert google_data.email(" John.Smith@GoogleMail.com ") == sha("johnsmith@googlemail.com")
    assert google_data.email("John.Smith@Example.com") == sha("john.smith@example.com")
    assert google_data.name(" Anne-Marie ") == sha("annemarie")
    assert google_data.name("Valéry") == sha("valéry")
    assert google_data.street("1600 Amphitheatre Pkwy.") == sha("1600 amphitheatre pkwy")
    assert google_data.place("Mountain View 2") == "mountain view"
    assert google_data.postal_code(" 94.043~ ") == "94043"
    assert (google_data.country("us"), google_data.country("USA")) == ("US", None)
    for junk in ("[email]", "ann", "a@b", 12):
        assert google_data.email(junk) is None
    assert google_data.phone("[phone]") is None and google_data.phone("555") is None


def user() -> dict[str, Any]:
    return {"id": "u_42", "email": "John.Smith@Gmail.com ", "phone": "+1 (650) 555-1212",
            "first_name": "Ann", "last_name": "O'Lee",
            "address": {"street": "1 Rue X", "city": "Paris", "region": "IDF",
                        "postal_code": "75001", "country": "fr"}}


def test_user_data_with_ad_consent_hashed_the_google_way() -> None:
    item = one(event("purchase", user=user()))
    assert item["user_id"] == "u_42"
    assert item["consent"] == {"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"}
    assert item["user_data"] == {
        "sha256_email_address": [sha("johnsmith@gmail.com")],
        "sha256_phone_number": [GOOGLE_PHONE_VECTOR],
        "address": [{"sha256_first_name": sha("ann"), "sha256_last_name": sha("olee"),
                     "sha256_street": sha("1 rue x"), "city": "paris", "region": "idf",
                     "postal_code": "75001", "country": "FR"}],
    }
    raw = orjson.dumps(item).decode().lower()
    assert "john" not in raw and "650" not in raw and "ann" not in raw


def test_already_hashed_identifiers_pass_and_junk_is_not_sent() -> None:
    hashed = sha("someone@example.com")
    item, notes = prepare(event(user={"id": "u", "email": hashed.upper(), "phone": "[phone]"}))
    assert item is not None
    assert item["user_data"] == {"sha256_email_address": [hashed]}
    assert notes == ["user.phone: not usable as Google user-provided data, not sent"]


@pytest.mark.parametrize(("granted", "ctx", "why"), [
    (frozenset({"analytics"}), {}, "no 'ads' consent"),
    (frozenset({"analytics", "ads"}), {"gpc": True}, "Global Privacy Control"),
])
def test_without_ad_consent_no_user_data_and_denied(
        granted: frozenset[str], ctx: dict[str, Any], why: str) -> None:
    item, notes = prepare(event(user=user(), context=ctx), granted=granted)
    assert item is not None
    assert item["consent"] == {"ad_user_data": "DENIED", "ad_personalization": "DENIED"}
    assert "user_data" not in item and item["user_id"] == "u_42"
    assert notes == [f"user_data not sent: {why}"]


def test_the_ad_purpose_is_named_by_the_settings() -> None:
    s = settings(ad_consent="marketing")
    item = one(event(user=user()), s=s, granted=frozenset({"analytics", "marketing"}))
    assert item["consent"]["ad_user_data"] == "GRANTED" and "user_data" in item
    item = one(event(user=user()), s=s, granted=frozenset({"analytics", "ads"}))
    assert item["consent"]["ad_user_data"] == "DENIED" and "user_data" not in item


def test_user_data_needs_a_user_id() -> None:
    u = user()
    del u["id"]
    item, notes = prepare(event(user=u))
    assert item is not None and "user_data" not in item and "user_id" not in item
    assert notes == ["user_data not sent: Google takes it only with a user_id (user.id)"]


def test_only_what_the_pipeline_kept_is_sent() -> None:
    bare = one(event(context={"country": "de"}))
    assert "ip_override" not in bare and "user_agent" not in bare and "device" not in bare
    assert bare["user_location"] == {"country_id": "DE"}
    full = one(event(context={"ip": "203.0.113.0", "user_agent": "Mozilla/5.0 X",
                              "country": "DE",
                              "device": {"type": "mobile", "os": "iOS", "browser": "Other"}}))
    assert full["ip_override"] == "203.0.113.0" and full["user_agent"] == "Mozilla/5.0 X"
    assert full["device"] == {"category": "mobile", "operating_system": "iOS"}
    assert "user_location" not in full  # GA4 locates by the address
    item, notes = prepare(event(context={"ip": "not-an-ip"}))
    assert item is not None and "ip_override" not in item
    assert notes == ["context.ip: not an IP address, not sent"]


def test_the_same_event_maps_to_the_same_item_and_request_every_time() -> None:
    """The dedup key (transaction_id) and every id are stable: a retried request (built again
    from the spooled item) is byte for byte the first one."""
    ev = event("purchase", user=user(), correlation_id="c1")
    first, second = one(ev), one(ev)
    assert first == second
    s = settings()
    assert ga4.build_request([first], s).content == ga4.build_request([second], s).content
    assert params(first)["transaction_id"] == "e1"


# -- requests ------------------------------------------------------------------------------


def test_a_request_merges_the_events_of_one_client() -> None:
    s = settings()
    a = one(event("page_view", correlation_id="c1", time="2026-11-28T11:59:00.000Z"))
    b = one(event("add_to_cart", event_id="e2", correlation_id="c1"))
    assert ga4.group(a) == ga4.group(b)
    request = ga4.build_request([a, b], s)
    assert request.method == "POST" and str(request.url) == s.url
    assert request.headers["content-type"] == "application/json"
    body = orjson.loads(request.content)
    assert body["client_id"] == a["client_id"] and body["consent"] == a["consent"]
    assert [e["name"] for e in body["events"]] == ["page_view", "add_to_cart"]
    assert body["timestamp_micros"] == NOW_MICROS - 60_000_000  # the earliest
    assert "validation_behavior" not in body
    debug = orjson.loads(ga4.build_request([a], settings(debug=True)).content)
    assert debug["validation_behavior"] == "ENFORCE_RECOMMENDATIONS"


def test_items_of_different_clients_or_consent_are_never_merged() -> None:
    s = settings()
    a = one(event(correlation_id="c1"))
    other_user = one(event(correlation_id="c2"))
    other_consent = one(event(correlation_id="c1"), granted=frozenset({"analytics"}))
    assert len({ga4.group(a), ga4.group(other_user), ga4.group(other_consent)}) == 3
    with pytest.raises(ValueError, match="more than one client"):
        ga4.build_request([a, other_user], s)
    with pytest.raises(ValueError, match="at most 25"):
        ga4.build_request([a] * 26, s)
    full = ga4.build_request([a] * 25, s)
    assert len(orjson.loads(full.content)["events"]) == 25


def test_max_bytes_bounds_the_body() -> None:
    """``by_size`` sums the items' JSON; a merged body holds the shared fields once, so it is
    never larger than that sum."""
    s = settings()
    big = one(event("purchase", correlation_id="c1", user=user(), properties={
        "order_id": "O1", "value": 1, "currency": "EUR",
        "items": [{"item_id": f"sku-{i}", "item_name": "n" * 90} for i in range(40)]}))
    items = [big] * 25
    total = sum(len(orjson.dumps(i)) + 1 for i in items)
    assert len(ga4.build_request(items, s).content) <= total


# -- answers -------------------------------------------------------------------------------


def answer(status: int, body: Any = b"", *, debug: bool = False,
           headers: dict[str, str] | None = None) -> httpx.Response:
    request = ga4.build_request([one(event())], settings(debug=debug))
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.Response(status, content=content, headers=headers, request=request)


def test_classify_every_answer() -> None:
    assert ga4.classify(answer(204)) == OK
    assert ga4.classify(answer(200, b"<html>anything</html>")) == OK  # /mp/collect: always 2xx
    assert ga4.classify(answer(200, {"validationMessages": []}, debug=True)) == OK
    bad = ga4.classify(answer(200, {"validationMessages": [
        {"fieldPath": "events", "description": "Event at index: [0] has invalid name "
         "[_badEventName]. Names must start with an alphabetic character.",
         "validationCode": "NAME_INVALID"}]}, debug=True))
    assert bad == Verdict("permanent", "GA4 validation: events: Event at index: [0] has "
                          "invalid name [_badEventName]. Names must start with an alphabetic "
                          "character. (NAME_INVALID)", 200)
    odd = ga4.classify(answer(200, b"ok", debug=True))
    assert (odd.kind, odd.detail) == ("permanent", "not a validation server's answer: HTTP "
                                      "200: ok")
    busy = ga4.classify(answer(429, b"slow", headers={"Retry-After": "7"}))
    assert (busy.kind, busy.retry_after, busy.status) == ("retry", 7.0, 429)
    assert ga4.classify(answer(503)).kind == "retry"
    for status in (401, 403):
        auth = ga4.classify(answer(status, b"denied"))
        assert auth.kind == "permanent" and auth.status == status
        assert "check settings.api_secret and settings.measurement_id" in auth.detail
    lost = ga4.classify(answer(404, b"nope"))
    assert lost.kind == "permanent" and "check settings.endpoint" in lost.detail
    assert ga4.classify(answer(400, b"bad")).kind == "permanent"
    assert ga4.classify(httpx.Response(204)) == OK  # no request attached: not the debug path


# -- what the vendor can receive -----------------------------------------------------------


def variants() -> list[tuple[dict[str, Any], frozenset[str]]]:
    rich = event("purchase", anonymous_id="GA1.1.1.2", correlation_id="c", user=user(),
                 context={"ip": "203.0.113.0", "user_agent": "UA", "country": "FR",
                          "device": {"type": "desktop", "os": "Linux", "browser": "Firefox"},
                          "page": {"url": "https://s/", "referrer": "https://r/",
                                   "title": "t"}},
                 properties={"order_id": "O", "value": 2, "currency": "EUR", "coupon": "C",
                             "session_id": "17", "engagement_time_msec": 5,
                             "items": [{"item_id": "a", "price": 1}],
                             "products": [{"sku": "b", "brand": "B", "position": 1}]})
    return [
        (rich, frozenset({"analytics", "ads"})),
        (rich, frozenset({"analytics"})),
        (event(context={"country": "DE"}), frozenset()),
        (event("Order Completed", user={"id": 7}), frozenset({"ads"})),
    ]


def test_fields_cover_every_path_prepare_can_produce() -> None:
    s = settings(properties={"plan": "plan_name", "basket": "items"})
    mapped = event(properties={"plan": "pro", "basket": [{"name": "n"}]})
    for ev, granted in [*variants(), (mapped, frozenset())]:
        item = one(ev, s=s, granted=granted)
        assert uncovered(item, ga4.fields(s)) == set(), ev
    body = orjson.loads(ga4.build_request([one(variants()[0][0])], settings(debug=True)).content)
    assert uncovered(body, ga4.fields(settings())) == {"validation_behavior"}  # the check bites


def test_fields_name_the_hashed_ones() -> None:
    hashed = {f.theirs for f in ga4.fields(settings()) if f.hashed}
    assert {"user_data.sha256_email_address[]", "user_data.sha256_phone_number[]",
            "user_data.address[].sha256_first_name", "user_data.address[].sha256_last_name",
            "user_data.address[].sha256_street"} <= hashed


# -- through the engine: the spool row and the debug view ----------------------------------


GA4_RULES = """\
pipelines:
  ga4_min:
    - ip: truncate
    - user_agent: device
destinations:
  ga4:
    type: ga4
    purpose: analytics
    pipeline: ga4_min
    settings: {measurement_id: G-TEST1234, api_secret: mp-secret-1}
    legal_basis: consent
    retention: 14 months
"""


async def test_the_spool_holds_the_vendor_item_and_the_debug_view_masks_it(
        tmp_path: Path) -> None:
    rules, lines = rules_with(tmp_path, GA4_RULES)
    assert lines == [] and rules is not None
    eng = engine(rules)
    meta = Meta(rules.sources["browser"], 1_795_867_200_000, ip="203.0.113.77",
                user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0", country="US",
                correlation_id="cid-debug-1")
    batch = await eng.process([{"event": "page_view", "event_id": "p1",
                                "user": {"id": "u_42", "email": "Ann.Lee@gmail.com"}}], meta)
    [row] = [r for r in batch.rows if r.destination == "ga4"]
    item = orjson.loads(row.payload)
    assert item["ip_override"] == "203.0.113.0"
    assert item["user_data"] == {"sha256_email_address": [sha("annlee@gmail.com")]}
    assert b"Ann.Lee" not in row.payload and b"203.0.113.77" not in row.payload
    entry = debug_entry(batch.results[0], MASKER)
    [shown] = [c for c in entry["copies"] if c["destination"] == "ga4"]
    text = orjson.dumps(shown).decode()
    assert item["client_id"] not in text and "u_42" not in text
    assert shown["sent"]["client_id"].startswith("[client_id #")
    assert shown["sent"]["ip_override"].startswith("203.0.113.0 #")


async def test_a_copy_ga4_cannot_take_is_dropped_with_the_reason_in_the_debug_view(
        tmp_path: Path) -> None:
    rules, _ = rules_with(tmp_path, GA4_RULES)
    assert rules is not None
    eng = engine(rules)
    meta = Meta(rules.sources["backend"], 1_795_867_200_000)
    batch = await eng.process([{"event": "page_view", "event_id": "old",
                                "time": "2026-11-20T00:00:00Z"}], meta)
    assert [r.destination for r in batch.rows] == ["archive"]
    entry = debug_entry(batch.results[0], MASKER)
    [shown] = [c for c in entry["copies"] if c["destination"] == "ga4"]
    assert (shown["outcome"], shown["detail"]) == (
        "dropped", "time is 204 hours before the event was received: GA4 takes events up to "
                   "72 hours old")
