from __future__ import annotations

import copy
import timeit
from typing import Any

import pytest

from relay.engine.envelope import (
    EnvelopeError,
    click_ids,
    format_ms,
    normalize,
    parse_time,
)
from relay.pipeline.params import CLICK_ID_PARAMS
from relay.rules.model import DEFAULT_CONSENT_MAP, Limits
from relay.types import Event

NOW_MS = 1_795_867_200_000  # 2026-11-28T12:00:00Z


def norm(raw: Any, *, trusted: bool = False, limits: Limits | None = None) -> Event:
    out = normalize(
        raw,
        trusted=trusted,
        limits=limits or Limits(),
        consent_map=DEFAULT_CONSENT_MAP,
        now_ms=NOW_MS,
    )
    assert not isinstance(out, EnvelopeError), str(out)
    return out


def error(raw: Any, *, trusted: bool = False, limits: Limits | None = None) -> str:
    out = normalize(
        raw,
        trusted=trusted,
        limits=limits or Limits(),
        consent_map=DEFAULT_CONSENT_MAP,
        now_ms=NOW_MS,
    )
    assert isinstance(out, EnvelopeError), out
    return str(out)


SPEC_EVENT: dict[str, Any] = {
    "event": "purchase",
    "event_id": "evt_8f14e45f",
    "time": "2026-11-28T12:00:00Z",
    "consent": {"analytics": "granted", "ads": "denied"},
    "user": {"id": "u_42", "email": "Ann@Example.com ", "phone": "+1 (555) 010-0000"},
    "context": {
        "page": {
            "url": "https://shop.example/p?utm_source=x&gclid=abc",
            "referrer": "https://search.example/",
            "title": "Shop",
        }
    },
    "properties": {"order_id": "ORD-8472", "value": 149.0, "currency": "USD"},
    "schema": 2,
}


def test_spec_example() -> None:
    ev = norm(SPEC_EVENT)
    assert ev["event"] == "purchase"
    assert ev["event_id"] == "evt_8f14e45f"
    assert ev["time"] == "2026-11-28T12:00:00.000Z"
    assert ev["consent"] == {"analytics": "granted", "ads": "denied"}
    assert ev["properties"] == SPEC_EVENT["properties"]
    assert ev["context"]["click_ids"] == {"gclid": "abc"}
    assert ev["schema"] == 2


def test_returns_a_new_event_and_never_mutates_the_input() -> None:
    raw = copy.deepcopy(SPEC_EVENT)
    raw["context"]["ip"] = "1.2.3.4"
    before = copy.deepcopy(raw)
    ev = norm(raw)
    assert raw == before
    ev["properties"]["value"] = 0
    ev["context"]["page"]["url"] = "x"
    ev["user"]["email"] = "x"
    assert raw == before


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([1], "expected a JSON object, got an array"),
        ("x", "expected a JSON object, got a string"),
        ({}, "event: required"),
        ({"event": 3}, "event: expected a string, got a number"),
        ({"event": ""}, "event: must not be empty"),
        ({"event": "   "}, "event: must not be empty"),
        ({"event": "a" * 129}, "event: longer than 128 characters"),
        ({"event": "buy<script>"}, "event: may contain only letters, digits, spaces and _ . : / -"),
        ({"event": "e", "event_id": ""}, "event_id: must not be empty"),
        ({"event": "e", "event_id": "x" * 129}, "event_id: longer than 128 characters"),
        ({"event": "e", "event_id": ["a"]}, "event_id: expected a string, got an array"),
        # An id the webhook destination's Idempotency-Key header could never carry.
        ({"event": "e", "event_id": " x1"}, "event_id: must not start or end with whitespace"),
        ({"event": "e", "event_id": "x1 "}, "event_id: must not start or end with whitespace"),
        ({"event": "e", "event_id": "\u3000x1"},
         "event_id: may contain only printable characters (no tab, newline or other control "
         "character)"),
        *(
            ({"event": "e", "event_id": f"x{c}1"},
             "event_id: may contain only printable characters (no tab, newline or other "
             "control character)")
            for c in ("\t", "\n", "\r", "\x00", "\x01", "\x7f", "\x85", "\u2028", "\u200b")
        ),
        (
            {"event": "e", "time": "yesterday"},
            "time: expected an ISO-8601 time or epoch milliseconds",
        ),
        ({"event": "e", "time": True}, "time: expected an ISO-8601 time or epoch milliseconds"),
        ({"event": "e", "user": "u1"}, "user: expected an object, got a string"),
        ({"event": "e", "context": []}, "context: expected an object, got an array"),
        ({"event": "e", "properties": 1}, "properties: expected an object, got a number"),
        ({"event": "e", "consent": "yes"}, "consent: expected an object, got a string"),
        (
            {"event": "e", "consent": {"ads": "maybe"}},
            "consent.ads: expected 'granted', 'denied' or a boolean",
        ),
        ({"event": "e", "schema": [2]}, "schema: expected a number or a string, got an array"),
        (
            {"event": "e", "consent": {f"p{i}": True for i in range(101)}},
            "consent: more than 100 keys",
        ),
        (
            {"event": "e", "consent": {"p" * 65: True}},
            "consent: a key is longer than 64 characters",
        ),
    ],
)
def test_envelope_errors(raw: Any, message: str) -> None:
    assert error(raw) == message


def test_error_renders_field_and_message() -> None:
    err = EnvelopeError("properties.value", "required")
    assert str(err) == "properties.value: required"
    assert err.field == "properties.value"


@pytest.mark.parametrize(
    "name", ["Order Completed", "checkout:step/2", "page.view", "a-b_c", "käufe", "x" * 128]
)
def test_event_names(name: str) -> None:
    assert norm({"event": name})["event"] == name


def test_event_ids_with_inner_spaces_and_letters_of_any_script_are_kept() -> None:
    for eid in ("order 42", "commande-é-1", "注文-7", "a:b/c.d_e"):
        assert norm({"event": "e", "event_id": eid})["event_id"] == eid


def test_integer_event_id_becomes_a_string() -> None:
    assert norm({"event": "e", "event_id": 42})["event_id"] == "42"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-28T12:00:00Z", "2026-11-28T12:00:00.000Z"),
        ("2026-11-28T13:30:00+01:30", "2026-11-28T12:00:00.000Z"),
        ("2026-11-28T12:00:00.123456Z", "2026-11-28T12:00:00.123Z"),
        ("2026-11-28T12:00:00", "2026-11-28T12:00:00.000Z"),  # no offset: UTC
        (NOW_MS, "2026-11-28T12:00:00.000Z"),
        (NOW_MS + 0.9, "2026-11-28T12:00:00.000Z"),
        (NOW_MS + 5, "2026-11-28T12:00:00.005Z"),
        (0, "1970-01-01T00:00:00.000Z"),
    ],
)
def test_time_forms(value: Any, expected: str) -> None:
    assert norm({"event": "e", "time": value})["time"] == expected


@pytest.mark.parametrize("value", ["", "nope", float("nan"), float("inf"), 10**20, False, None, {}])
def test_parse_time_rejects(value: Any) -> None:
    assert parse_time(value) is None


def test_time_defaults_to_now() -> None:
    assert norm({"event": "e"})["time"] == "2026-11-28T12:00:00.000Z"
    assert norm({"event": "e", "time": None})["time"] == "2026-11-28T12:00:00.000Z"


def test_consent_values_and_consent_mode() -> None:
    ev = norm({"event": "e", "consent": {"analytics": True, "ads": False, "x": "GRANTED"}})
    assert ev["consent"] == {"analytics": "granted", "ads": "denied", "x": "granted"}

    cm = {"analytics_storage": "granted", "ad_storage": "granted", "ad_user_data": "granted"}
    assert norm({"event": "e", "consent": cm})["consent"] == {
        "analytics": "granted",
        "ads": "granted",
    }
    # All present Consent Mode keys of a purpose must be granted.
    cm["ad_personalization"] = "denied"
    assert norm({"event": "e", "consent": cm})["consent"]["ads"] == "denied"
    cm2 = {"ad_storage": False, "ad_user_data": True}
    assert norm({"event": "e", "consent": cm2})["consent"] == {"ads": "denied"}


def test_explicit_purpose_beats_consent_mode() -> None:
    consent = {"ad_storage": "denied", "ads": "granted", "analytics_storage": "granted"}
    assert norm({"event": "e", "consent": consent})["consent"] == {
        "ads": "granted",
        "analytics": "granted",
    }
    consent = {"ads": "denied", "ad_storage": "granted"}
    assert norm({"event": "e", "consent": consent})["consent"] == {"ads": "denied"}


def test_custom_consent_map() -> None:
    out = normalize(
        {"event": "e", "consent": {"marketing": "granted"}},
        trusted=False,
        limits=Limits(),
        consent_map={"marketing": "ads"},
        now_ms=0,
    )
    assert not isinstance(out, EnvelopeError)
    assert out["consent"] == {"ads": "granted"}


def test_flat_datalayer_form() -> None:
    ev = norm({"event": "purchase", "event_id": "e1", "order_id": "O1", "value": 149})
    assert ev["properties"] == {"order_id": "O1", "value": 149}
    assert "order_id" not in ev


def test_flat_keys_merge_into_properties_without_overriding() -> None:
    ev = norm({"event": "e", "value": 1, "extra": "x", "properties": {"value": 2}})
    assert ev["properties"] == {"value": 2, "extra": "x"}
    ev = norm({"event": "e", "value": 1}, trusted=True)
    assert ev["properties"] == {"value": 1}


def test_browser_cannot_set_relay_fields() -> None:
    raw = {
        "event": "e",
        "source": "backend",
        "received_at": "2020-01-01T00:00:00Z",
        "correlation_id": "forged",
        "context": {
            "ip": "1.2.3.4",
            "user_agent": "forged",
            "country": "US",
            "gpc": False,
            "page": {"url": "https://a.example/"},
            "locale": "de-DE",
        },
    }
    ev = norm(raw)
    for key in ("source", "received_at", "correlation_id"):
        assert key not in ev
        assert key not in ev.get("properties", {})
    assert ev["context"] == {"page": {"url": "https://a.example/"}, "locale": "de-DE"}


def test_trusted_sources_keep_their_context() -> None:
    context = {"ip": "1.2.3.4", "user_agent": "UA", "country": "DE", "gpc": True}
    ev = norm({"event": "e", "context": context, "correlation_id": "c1"}, trusted=True)
    assert ev["context"] == context
    assert ev["correlation_id"] == "c1"


def test_null_optional_fields_are_absent() -> None:
    ev = norm({"event": "e", "user": None, "context": None, "properties": None, "event_id": None})
    assert ev == {"event": "e", "time": "2026-11-28T12:00:00.000Z"}


def test_property_count_limit() -> None:
    lim = Limits(properties=3)
    norm({"event": "e", "properties": {"a": 1, "b": 2, "c": 3}}, limits=lim)
    assert error({"event": "e", "properties": {"a": 1, "b": 2, "c": 3, "d": 4}}, limits=lim) == (
        "properties: more than 3 properties"
    )
    # flat keys count too
    assert error({"event": "e", "a": 1, "b": 2, "properties": {"c": 3, "d": 4}}, limits=lim)


def test_depth_limit() -> None:
    lim = Limits(depth=2)
    norm({"event": "e", "properties": {"a": {"b": 1}}}, limits=lim)
    norm({"event": "e", "context": {"page": {"url": "u"}}}, limits=lim)
    assert error({"event": "e", "properties": {"a": {"b": {"c": 1}}}}, limits=lim) == (
        "properties.a.b: nested deeper than 2 levels"
    )
    assert error({"event": "e", "user": {"x": [[1]]}}, limits=lim) == (
        "user.x[0]: nested deeper than 2 levels"
    )
    assert error({"event": "e", "a": {"b": {"c": 1}}}, limits=lim).startswith("properties.a.b:")


def test_default_depth_is_five() -> None:
    deep: Any = 1
    for key in "edcb":
        deep = {key: deep}
    norm({"event": "e", "properties": {"a": deep}})  # properties.a.b.c.d.e: depth 5
    assert "nested deeper than 5" in error({"event": "e", "properties": {"a": {"z": deep}}})


def test_string_limit_names_the_offender() -> None:
    lim = Limits(string_chars=10)
    assert error({"event": "e", "properties": {"items": [{"n": "x" * 11}]}}, limits=lim) == (
        "properties.items[0].n: longer than 10 characters"
    )
    assert error({"event": "e", "context": {"page": {"title": "x" * 11}}}, limits=lim) == (
        "context.page.title: longer than 10 characters"
    )
    assert error({"event": "e", "anonymous_id": "x" * 11}, limits=lim) == (
        "anonymous_id: longer than 10 characters"
    )
    assert error({"event": "e", "properties": {"k" * 11: 1}}, limits=lim) == (
        "properties: a key is longer than 10 characters"
    )
    norm({"event": "e", "properties": {"n": "x" * 10}}, limits=lim)


def test_click_ids_are_extracted_with_their_case() -> None:
    url = "https://shop.example/p?gclid=AbC-12_x&FBCLID=Fb.1%2B2&msclkid=&x=1#gclid=frag"
    ev = norm({"event": "e", "context": {"page": {"url": url}}})
    assert ev["context"]["click_ids"] == {"gclid": "AbC-12_x", "fbclid": "Fb.1+2"}
    assert ev["context"]["page"]["url"] == url  # the url step removes them, per destination


def test_click_ids_already_present_are_kept() -> None:
    ctx = {"page": {"url": "https://a.example/?gclid=new"}, "click_ids": {"gclid": "old"}}
    assert norm({"event": "e", "context": ctx})["context"]["click_ids"] == {"gclid": "old"}


def test_click_id_list() -> None:
    for name in ("gclid", "fbclid", "msclkid", "ttclid", "wbraid", "gbraid", "dclid", "li_fat_id"):
        assert name in CLICK_ID_PARAMS
    assert click_ids("https://a.example/") == {}
    assert click_ids("https://a.example/?ttclid=1&ttclid=2") == {"ttclid": "1"}


def test_typical_event_is_fast() -> None:
    raw = copy.deepcopy(SPEC_EVENT)
    lim = Limits()
    n = 2000
    seconds = timeit.timeit(
        lambda: normalize(
            raw, trusted=False, limits=lim, consent_map=DEFAULT_CONSENT_MAP, now_ms=NOW_MS
        ),
        number=n,
    )
    assert seconds / n < 200e-6  # about 6 µs here; generous for slow CI machines


@pytest.mark.parametrize(
    ("ms", "expected"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (999, "1970-01-01T00:00:00.999Z"),
        (1000, "1970-01-01T00:00:01.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (NOW_MS + 5, "2026-11-28T12:00:00.005Z"),
        (NOW_MS + 1999, "2026-11-28T12:00:01.999Z"),
    ],
)
def test_format_ms(ms: int, expected: str) -> None:
    assert format_ms(ms) == expected


def test_click_id_values_are_decoded_only_when_encoded() -> None:
    url = "https://a.example/?gclid=a+b&fbclid=%41%2b&msclkid=Cj0KCQjw-_.~"
    assert click_ids(url) == {"gclid": "a b", "fbclid": "A+", "msclkid": "Cj0KCQjw-_.~"}


@pytest.mark.parametrize("value", [1, 0, 1.0, "yes", "", None, ["granted"], {"x": 1}])
def test_consent_accepts_only_states_and_booleans(value: Any) -> None:
    # 1 == True in Python: a number must not pass for a boolean.
    assert error({"event": "e", "consent": {"ads": value}}) == (
        "consent.ads: expected 'granted', 'denied' or a boolean"
    )


def test_consent_states_ignore_case() -> None:
    consent = {"analytics": "Granted", "ads": "DENIED"}
    assert norm({"event": "e", "consent": consent})["consent"] == {
        "analytics": "granted",
        "ads": "denied",
    }


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (" " * 128, "must not be empty"),  # matches the pattern, but is only spaces
        (" " * 129, "must not be empty"),
        ("\t", "must not be empty"),
        ("a" * 128 + "<", "longer than 128 characters"),
        ("a<", "may contain only letters, digits, spaces and _ . : / -"),
    ],
)
def test_event_name_errors_say_what_is_wrong(name: str, message: str) -> None:
    assert error({"event": name}) == f"event: {message}"


def test_first_problem_in_document_order_is_reported() -> None:
    lim = Limits(string_chars=3)
    assert error({"event": "e", "properties": {"a": "long", "long": 1}}, limits=lim) == (
        "properties.a: longer than 3 characters"
    )
    assert error({"event": "e", "properties": {"long": 1, "a": "long"}}, limits=lim) == (
        "properties: a key is longer than 3 characters"
    )
    assert error({"event": "e", "user": {"a": "long"}, "context": {"b": "long"}}, limits=lim) == (
        "user.a: longer than 3 characters"
    )


def _containers(value: Any, found: set[int]) -> set[int]:
    if isinstance(value, dict | list):
        found.add(id(value))
        for item in value.values() if isinstance(value, dict) else value:
            _containers(item, found)
    return found


@pytest.mark.parametrize("trusted", [False, True])
def test_the_event_shares_no_container_with_the_input(trusted: bool) -> None:
    # The engine writes into the event (context.gpc, merged fields, pipeline steps) and then
    # reads the payload's own context.gpc: no dict or list may be shared.
    raw = copy.deepcopy(SPEC_EVENT)
    raw["context"]["gpc"] = True
    raw["properties"]["items"] = [{"sku": "S1", "tags": ["a", ["b"]]}, [1, [2]]]
    raw["coupon"] = {"code": "C1", "codes": ["C1"]}  # dataLayer form
    ev = norm(raw, trusted=trusted)
    assert not _containers(raw, set()) & _containers(ev, set())
    ev["context"]["gpc"] = False
    assert raw["context"]["gpc"] is True
