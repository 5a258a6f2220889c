"""``posthog``: settings, the mapping (checked against posthog-python's own payload), the
request, every kind of answer, limits, and the engine path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from relay.destinations import posthog
from relay.destinations.analytics import stable_uuid
from relay.dispatch import by_size
from relay.spool.base import Claimed
from relay.types import Event, StepContext

from .engine_path import check_errors, engine_with, run
from .fieldcheck import uncovered
from .helpers import parse

KEY = "phc_0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
UUID = "9d5c3f71-8a0b-5d4f-b2c1-3e7a9f0c1d22"


def settings(**kw: Any) -> posthog.PostHogSettings:
    parsed, errors = parse(posthog.parse_settings, {"api_key": KEY, **kw})
    assert errors == []
    assert isinstance(parsed, posthog.PostHogSettings)
    return parsed


def event(**kw: Any) -> Event:
    ev: Event = {
        "event": "purchase", "event_id": "evt_8f14e45f", "time": "2026-11-28T12:00:00.000Z",
        "received_at": "2026-11-28T12:00:01.000Z", "source": "backend",
        "user": {"id": "u_42", "email": " Ann@Example.com "},
        "context": {"ip": "203.0.113.0", "country": "US",
                    "page": {"url": "https://shop.example/p/1?utm_source=x",
                             "referrer": "https://search.example/", "title": "Shoes"},
                    "device": {"type": "desktop", "os": "Windows", "browser": "Chrome"},
                    "campaign": {"source": "news", "name": "spring"},
                    "click_ids": {"gclid": "abc"}},
        "properties": {"order_id": "ORD-1", "value": 149.0, "currency": "USD"},
    }
    ev.update(kw)
    return ev


def prepare(ev: Event, s: posthog.PostHogSettings | None = None,
            ctx: StepContext | None = None) -> Event | None:
    return posthog.prepare(ev, s or settings(), ctx or StepContext("ph"))


# -- settings ---------------------------------------------------------------------------


def test_settings_defaults_and_overrides() -> None:
    s = settings()
    assert (s.endpoint, s.event_names, s.person_profiles) == (
        "https://us.i.posthog.com", {"page_view": "$pageview"}, "identified_only")
    eu = settings(endpoint="https://eu.i.posthog.com/", event_names={"signup": "Signed Up"},
                  properties={"value": "revenue"}, person_profiles="always")
    assert eu.endpoint == "https://eu.i.posthog.com"
    assert eu.event_names == {"page_view": "$pageview", "signup": "Signed Up"}
    assert (eu.properties, eu.person_profiles) == ({"value": "revenue"}, "always")
    assert KEY not in repr(s)


def test_settings_mistakes_are_reported_with_their_path() -> None:
    parsed, errors = parse(posthog.parse_settings, {
        "api_key": "phx_personal", "endpoint": "eu.i.posthog.com", "person_profile": "always",
        "person_profiles": "sometimes", "event_names": {"page_view": ""}})
    assert parsed is None
    assert errors == [
        "R101 destinations.d.settings.person_profile: unknown key 'person_profile'",
        "R104 destinations.d.settings.api_key: this is a personal API key, which capture "
        "refuses",
        "R104 destinations.d.settings.endpoint: expected an http or https URL with a host",
        "R104 destinations.d.settings.event_names.page_view: must not be empty",
        "R105 destinations.d.settings.person_profiles: unknown value 'sometimes'",
    ]
    assert parse(posthog.parse_settings, {})[1] == [
        "R103 destinations.d.settings: missing required key 'api_key'"]


def test_settings_errors_point_at_file_line_and_column(tmp_path: Path) -> None:
    errors = check_errors(tmp_path, (
        "destinations:\n"
        "  ph:\n"
        "    type: posthog\n"
        "    purpose: analytics\n"
        "    settings:\n"
        "      api_key: phx_personal_key\n"
        "      person_profiles: identified\n"))
    assert errors == [
        "zz-test.yaml:6:16: R104 destinations.ph.settings.api_key: this is a personal API key, "
        "which capture refuses (use the project API key (phc_...) from the project's settings)",
        "zz-test.yaml:7:24: R105 destinations.ph.settings.person_profiles: unknown value "
        "'identified' (did you mean 'identified_only'?)",
    ]


def test_the_api_key_is_masked_in_the_rules_page() -> None:
    from relay.rules.secrets import is_secret_key

    assert is_secret_key("api_key")


# -- the mapping ------------------------------------------------------------------------


def test_an_identified_purchase() -> None:
    item = prepare(event())
    assert item == {
        "event": "purchase",
        "distinct_id": "u_42",
        "timestamp": "2026-11-28T12:00:00.000Z",
        "uuid": stable_uuid("posthog", "evt_8f14e45f"),
        "properties": {
            "order_id": "ORD-1", "value": 149.0, "currency": "USD",
            "$current_url": "https://shop.example/p/1?utm_source=x",
            "$host": "shop.example", "$pathname": "/p/1",
            "$referrer": "https://search.example/", "title": "Shoes",
            "$browser": "Chrome", "$os": "Windows", "$device_type": "Desktop",
            "utm_source": "news", "utm_campaign": "spring", "gclid": "abc",
            "$ip": "203.0.113.0",
            # the email only as its SHA-256, of the normalized address
            "$set": {"email_sha256":
                     "71d4f55f72fa128dfb468a1a3901507c804b74316488744d769d7f4b16696476"},
        },
    }
    assert "Ann@Example.com" not in json.dumps(item)


def test_a_page_view_of_an_anonymous_visitor() -> None:
    ev = event(event="page_view", user=None, anonymous_id="anon-7", properties={})
    del ev["context"]["ip"]
    item = prepare(ev)
    assert item is not None
    assert (item["event"], item["distinct_id"]) == ("$pageview", "anon-7")
    props = item["properties"]
    # No IP kept: PostHog must not geolocate the relay's own address instead.
    assert "$ip" not in props and props["$geoip_disable"] is True
    assert props["$process_person_profile"] is False and "$set" not in props


def test_distinct_id_falls_back_to_the_correlation_id_then_drops_with_a_reason() -> None:
    item = prepare(event(user={}, correlation_id="cid-9"))
    assert item is not None and item["distinct_id"] == "cid-9"
    assert item["properties"]["$process_person_profile"] is False
    ctx = StepContext("ph")
    assert prepare(event(user={}), ctx=ctx) is None
    assert ctx.notes == ["posthog: no user.id, anonymous_id or correlation id for distinct_id"]


def test_person_profiles_setting() -> None:
    anon = event(user=None, anonymous_id="a1")
    always = prepare(anon, settings(person_profiles="always"))
    assert always is not None and "$process_person_profile" not in always["properties"]
    never = prepare(event(), settings(person_profiles="never"))
    assert never is not None
    assert never["properties"]["$process_person_profile"] is False
    assert "$set" not in never["properties"]


def test_names_and_properties_are_mapped() -> None:
    s = settings(event_names={"purchase": "Order Completed"}, properties={"value": "revenue"})
    item = prepare(event(), s)
    assert item is not None and item["event"] == "Order Completed"
    assert item["properties"]["revenue"] == 149.0 and "value" not in item["properties"]


def test_the_uuid_is_stable_and_valid() -> None:
    import uuid

    first, again = prepare(event()), prepare(event())
    assert first is not None and again is not None
    assert first["uuid"] == again["uuid"]
    assert uuid.UUID(first["uuid"]).version == 5
    other = prepare(event(event_id="evt_other"))
    assert other is not None and other["uuid"] != first["uuid"]


def test_an_event_over_one_megabyte_is_dropped_with_a_reason() -> None:
    big = event(properties={f"p{i}": "x" * 2048 for i in range(500)})
    ctx = StepContext("ph")
    assert prepare(big, ctx=ctx) is None
    assert ctx.notes == ["posthog: the event is over PostHog's 1 MB per event"]


def test_fields_cover_every_path_prepare_can_send() -> None:
    s = settings(properties={"value": "revenue"})
    for ev in (event(), event(event="page_view", user=None, anonymous_id="a"),
               event(context={"user_agent": "UA/1"}, correlation_id="c"),
               event(properties={"items": [{"sku": "s", "price": 1}], "nested": {"a": 1}})):
        item = prepare(ev, s)
        assert item is not None
        assert uncovered(item, posthog.fields(s), ev) == []
    # the check itself catches an invented field
    item = prepare(event(), s)
    assert item is not None
    item["properties"]["$invented"] = 1
    assert uncovered(item, posthog.fields(s), event()) == ["properties.$invented"]


# -- posthog-python as the oracle -------------------------------------------------------


class _Answer:
    status_code = 200
    text = '{"status": 1}'

    def json(self) -> Any:
        return {"status": 1}


def _sdk_batch(monkeypatch: pytest.MonkeyPatch, **capture: Any) -> dict[str, Any]:
    """What posthog-python posts for one ``capture(...)``: its own transport (the requests
    session in ``posthog.request``) replaced, so nothing leaves the process."""
    import posthog.request as sdk_request
    from posthog.client import Client

    sent: list[tuple[str, dict[str, Any]]] = []

    class Session:
        def post(self, url: str, data: Any = None, **_: Any) -> _Answer:
            sent.append((url, json.loads(data)))
            return _Answer()

    monkeypatch.setattr(sdk_request, "_session", Session())
    client = Client(KEY, host="https://eu.i.posthog.com", sync_mode=True)
    client.capture(**capture)
    [(url, body)] = sent
    assert url == "https://eu.i.posthog.com/batch/"
    return body


# What the SDK adds about itself (the Python process it runs in), not about the event.
SDK_ONLY = {"$lib", "$lib_version", "$python_runtime", "$python_version", "$os",
            "$os_version", "$os_distro", "$is_server"}


def test_the_item_has_the_shape_posthog_python_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    ev = event(event="page_view", user=None, anonymous_id="anon-7", properties={"plan": "pro"})
    del ev["context"]["ip"]
    del ev["context"]["device"]
    ours = prepare(ev, settings(endpoint="https://eu.i.posthog.com"))
    assert ours is not None
    theirs = _sdk_batch(monkeypatch, event="$pageview", distinct_id="anon-7",
                        properties={**{k: v for k, v in ours["properties"].items()
                                       if k != "$process_person_profile"}},
                        timestamp=ours["timestamp"], uuid=ours["uuid"])
    [sdk_item] = theirs["batch"]
    assert set(sdk_item) == set(ours)  # event, distinct_id, properties, timestamp, uuid
    assert sdk_item["uuid"] == ours["uuid"]  # the SDK keeps a valid uuid as given
    assert sdk_item["distinct_id"] == ours["distinct_id"]
    assert _instant(sdk_item["timestamp"]) == _instant(ours["timestamp"])
    sdk_props = {k: v for k, v in sdk_item["properties"].items() if k not in SDK_ONLY}
    # The SDK marks events without an IP with $geoip_disable, as we do.
    assert sdk_props == {k: v for k, v in ours["properties"].items()
                         if k != "$process_person_profile"}
    # the request wraps items the way the SDK's does
    request = posthog.build_request([ours], settings(endpoint="https://eu.i.posthog.com"))
    body = orjson.loads(request.content)
    assert set(body) <= set(theirs) and body["api_key"] == theirs["api_key"] == KEY
    assert str(request.url) == "https://eu.i.posthog.com/batch/"
    assert request.headers["content-type"] == "application/json"


def test_a_personless_event_is_marked_as_the_sdk_marks_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """posthog-python sends ``$process_person_profile: false`` for events it cannot tie to a
    person; ours are those without ``user.id``."""
    ours = prepare(event(user=None, anonymous_id="a1"))
    assert ours is not None
    theirs = _sdk_batch(monkeypatch, event="purchase", properties={})
    assert theirs["batch"][0]["properties"]["$process_person_profile"] is False
    assert ours["properties"]["$process_person_profile"] is False


def _instant(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


# -- the request and the answers --------------------------------------------------------


def test_build_request() -> None:
    items = [prepare(event()), prepare(event(event_id="e2"))]
    request = posthog.build_request([i for i in items if i], settings())
    assert request.method == "POST" and str(request.url) == "https://us.i.posthog.com/batch/"
    body = orjson.loads(request.content)
    assert body == {"api_key": KEY, "batch": items}
    assert request.headers["user-agent"].startswith("relay/")


def _answer(status: int, body: Any = b"", **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, content=content, headers=headers,
                          request=httpx.Request("POST", "https://us.i.posthog.com/batch/"))


def test_classify_every_answer() -> None:
    assert posthog.classify(_answer(200, {"status": 1})).kind == "ok"
    auth = posthog.classify(_answer(401, b"API key is not valid: personal_api_key"))
    assert (auth.kind, auth.status) == ("permanent", 401)
    assert "settings.api_key" in auth.detail and "personal_api_key" in auth.detail
    bad = posthog.classify(_answer(400, b"event submitted without a distinct_id"))
    assert (bad.kind, bad.status) == ("permanent", 400)
    assert posthog.classify(_answer(413, b"")).kind == "permanent"
    limited = posthog.classify(_answer(429, b"rate limited", **{"Retry-After": "7"}))
    assert (limited.kind, limited.retry_after) == ("retry", 7.0)
    assert posthog.classify(_answer(503, b"transient error, please retry")).kind == "retry"


def test_batches_are_cut_at_the_body_limit() -> None:
    assert posthog.DESTINATION.max_batch == posthog.MAX_BATCH
    limit = posthog.DESTINATION.max_bytes
    assert limit is not None and limit <= posthog.MAX_BODY - len(KEY) - 100
    row = orjson.dumps({"x": "y" * 900_000})
    rows = [Claimed(i, "ph", f"e{i}", row, 0, 0) for i in range(30)]
    parts = by_size(rows, limit)
    assert [len(p.rows) for p in parts] == [22, 8]
    for part in parts:
        request = posthog.build_request([orjson.loads(r.payload) for r in part.rows],
                                        settings())
        assert len(request.content) <= posthog.MAX_BODY


# -- the engine path (what the spool holds, what the debug view says) --------------------


def _destination(**kw: Any) -> dict[str, Any]:
    return {"type": "posthog", "purpose": "analytics", "events": "*", "pipeline": "minimize",
            "settings": {"api_key": KEY, **kw}}


async def test_through_the_engine_the_spool_holds_the_vendor_item(tmp_path: Path) -> None:
    engine = engine_with(tmp_path, "ph", _destination())
    copy, item = await run(engine, "ph", {
        "event": "page_view", "event_id": "pv-1", "user": {"email": "Ann@Example.com"},
        "context": {"page": {"url": "https://shop.example/?gclid=x&session=1"}}})
    assert copy.outcome == "delivered"
    assert item["distinct_id"] == "cid-1"  # the correlation id: no user.id, no anonymous id
    props = item["properties"]
    assert props["$ip"] == "203.0.113.0"  # truncated by the pipeline, as kept
    assert props["$browser"] == "Chrome" and "$raw_user_agent" not in props
    assert "Ann@Example.com" not in json.dumps(item) and "$set" not in props


async def test_a_copy_the_vendor_cannot_take_is_dropped_with_the_reason(
        tmp_path: Path) -> None:
    engine = engine_with(tmp_path, "ph", _destination())
    copy, item = await run(engine, "ph", {"event": "page_view", "event_id": "pv-2"}, cid=None)
    assert item is None
    assert (copy.outcome, copy.detail) == (
        "dropped", "posthog: no user.id, anonymous_id or correlation id for distinct_id")
