"""``plausible``: settings, the mapping to Events API requests (names, url, props and their
limits, revenue, the visitor headers), answers, and what the vendor can receive."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from relay.destinations import DESTINATIONS, plausible
from relay.engine.results import Meta, debug_entry
from relay.types import OK, StepContext

from .helpers import parse
from .vendor import MASKER, engine, rules_with, uncovered

URL = "https://shop.example/p?utm_source=news"


def settings(**kw: Any) -> plausible.PlausibleSettings:
    parsed, errors = parse(plausible.parse_settings, {"domain": "shop.example", **kw})
    assert errors == []
    assert isinstance(parsed, plausible.PlausibleSettings)
    return parsed


def event(name: str = "page_view", **kw: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {"event": name, "event_id": "e1", "time": "2026-11-28T12:00:00.000Z",
                          "context": {"page": {"url": URL}}, "properties": {}}
    ev.update(kw)
    return ev


def prepare(ev: dict[str, Any], s: plausible.PlausibleSettings | None = None
            ) -> tuple[dict[str, Any] | None, list[str]]:
    ctx = StepContext("plausible", frozenset({"analytics"}))
    return plausible.prepare(copy.deepcopy(ev), s or settings(), ctx), ctx.notes


def body(ev: dict[str, Any], s: plausible.PlausibleSettings | None = None) -> dict[str, Any]:
    item, notes = prepare(ev, s)
    assert item is not None, notes
    result: dict[str, Any] = item["body"]
    return result


# -- settings ------------------------------------------------------------------------------


def test_settings() -> None:
    s = settings()
    assert (s.domain, s.endpoint, s.event_names["page_view"]) == (
        "shop.example", "https://plausible.io", "pageview")
    own = settings(endpoint="https://stats.example/", domain="a.example, b.example",
                   event_names={"signup": "Signup"}, properties={"plan": "Plan"})
    assert (own.endpoint, own.domain) == ("https://stats.example", "a.example,b.example")
    assert own.event_names == {"page_view": "pageview", "Page Viewed": "pageview",
                               "signup": "Signup"}


def test_settings_mistakes_are_reported_at_file_line_col(tmp_path: Path) -> None:
    _, lines = rules_with(tmp_path, """\
destinations:
  plausible:
    type: plausible
    purpose: analytics
    settings:
      domain: https://shop.example/
      endpoint: plausible.io
      event_names: {signup: engagement}
      site_id: 3
""")
    assert lines == [
        "dest.yaml:6:15: R104 destinations.plausible.settings.domain: 'https://shop.example/' "
        "is not a Plausible site domain (the domain as in the site's Plausible settings, "
        "without https:// or a path: shop.example)",
        "dest.yaml:7:17: R104 destinations.plausible.settings.endpoint: expected an http or "
        "https URL with a host (like https://hooks.example/relay)",
        "dest.yaml:8:29: R104 destinations.plausible.settings.event_names.signup: 'engagement' "
        "is the name of the Plausible tracker's own engagement events",
        "dest.yaml:9:7: R101 destinations.plausible.settings.site_id: unknown key 'site_id' "
        "(expected one of: domain, endpoint, event_names, properties)",
    ]
    _, lines = rules_with(tmp_path, """\
destinations:
  plausible: {type: plausible, purpose: analytics, settings: {endpoint: "https://p.example"}}
""")
    assert lines == ["dest.yaml:2:62: R103 destinations.plausible.settings: missing required "
                     "key 'domain'"]


def test_registered() -> None:
    d = DESTINATIONS["plausible"]
    assert d is plausible.DESTINATION
    assert (d.max_batch, d.max_bytes, d.group, d.vendor) == (
        1, None, None, "Plausible Analytics (Plausible Insights OÜ)")


# -- the mapping ---------------------------------------------------------------------------


@pytest.mark.parametrize(("ours", "theirs"), [
    ("page_view", "pageview"), ("Page Viewed", "pageview"), ("purchase", "purchase"),
    ("signup", "signup"), ("add_to_cart", "add_to_cart"), ("Order Completed", "Order Completed"),
])
def test_event_names(ours: str, theirs: str) -> None:
    assert body(event(ours))["name"] == theirs
    mapped = settings(event_names={"signup": "Signup"})
    assert body(event("signup"), mapped)["name"] == "Signup"


def test_a_page_view() -> None:
    b = body(event(context={"page": {"url": URL, "referrer": "https://www.google.com/",
                                     "title": "T"}}))
    assert b == {"name": "pageview", "url": URL, "domain": "shop.example",
                 "referrer": "https://www.google.com/"}


@pytest.mark.parametrize("name", ["purchase", "Order Completed"])
def test_a_purchase_carries_revenue(name: str) -> None:
    b = body(event(name, properties={"order_id": "O1", "value": 149.0, "currency": "usd",
                                     "coupon": "X"}))
    assert b["revenue"] == {"amount": 149.0, "currency": "USD"}
    assert b["props"] == {"order_id": "O1", "coupon": "X"}  # value and currency are revenue
    segment = body(event(name, properties={"revenue": 20, "currency": "EUR"}))
    assert segment["revenue"] == {"amount": 20, "currency": "EUR"}


def test_revenue_only_for_purchases_with_an_amount_and_a_currency() -> None:
    assert "revenue" not in body(event("add_to_cart", properties={"value": 5,
                                                                  "currency": "EUR"}))
    item, notes = prepare(event("purchase", properties={"value": 5, "currency": "euros"}))
    assert item is not None and "revenue" not in item["body"]
    assert item["body"]["props"] == {"value": 5, "currency": "euros"}
    assert notes == ["revenue not sent: properties.currency is not a 3-letter ISO 4217 code"]
    item, notes = prepare(event("purchase", properties={"value": "5", "currency": "EUR"}))
    assert item is not None and "revenue" not in item["body"]
    assert notes == ["revenue not sent: the purchase has no numeric value"]


def test_without_a_page_url_plausible_cannot_take_it() -> None:
    for ctx, why in (({}, "no context.page.url: Plausible needs the page's URL"),
                     ({"page": {"url": "https://s.example/" + "x" * 2000}},
                      "context.page.url: longer than the 2000 bytes Plausible takes"),
                     ({"page": {"url": "data:text/html,hi"}},
                      "context.page.url: a data: URL, which Plausible refuses")):
        item, notes = prepare(event(context=ctx))
        assert item is None and notes == [why]


def test_names_plausible_refuses_drop_the_copy_with_the_reason() -> None:
    item, notes = prepare(event("engagement"))
    assert item is None
    assert notes == ["event name 'engagement' is the name of the Plausible tracker's own "
                     "engagement events (map it with settings.event_names)"]
    item, notes = prepare(event("x" * 121))
    assert item is None and "longer than the 120 characters" in notes[0]


def test_props_within_plausibles_limits() -> None:
    props: dict[str, Any] = {
        "plan": "pro", "seats": 3, "trial": True, "blank": "  ", "none": None,
        "tags": ["a"], "meta": {"k": 1}, "long": "é" * 1500, "k" * 301: "v",
    } | {f"p{i:02d}": i for i in range(30)}
    item, notes = prepare(event("signup", properties=props))
    assert item is not None
    out = item["body"]["props"]
    assert len(out) == 30
    assert (out["plan"], out["seats"], out["trial"]) == ("pro", 3, True)
    assert len(out["long"].encode()) == 2000 and out["long"] == "é" * 1000
    assert "blank" not in out and "none" not in out and "tags" not in out
    assert list(out)[-1] == "p25"
    assert notes == [
        "properties.tags: a list or an object, not sent (Plausible keeps text, numbers and "
        "booleans)",
        "properties.meta: a list or an object, not sent (Plausible keeps text, numbers and "
        "booleans)",
        "properties.long: cut to the 2000 bytes Plausible keeps",
        f"properties.{'k' * 301}: a name longer than Plausible's 300 bytes, not sent",
        "4 properties over Plausible's 30 not sent",
    ]
    renamed = body(event(properties={"plan": "pro"}), settings(properties={"plan": "Plan"}))
    assert renamed["props"] == {"Plan": "pro"}


def test_the_visitors_headers_only_when_the_pipeline_kept_them() -> None:
    item, _ = prepare(event())
    assert item is not None and "headers" not in item
    item, _ = prepare(event(context={"page": {"url": URL}, "ip": "203.0.113.0",
                                     "user_agent": "Mozilla/5.0 (X11) Firefox/120.0"}))
    assert item is not None
    assert item["headers"] == {"User-Agent": "Mozilla/5.0 (X11) Firefox/120.0",
                               "X-Forwarded-For": "203.0.113.0"}
    item, notes = prepare(event(context={"page": {"url": URL}, "ip": "nope",
                                         "user_agent": "bad\nua"}))
    assert item is not None and "headers" not in item
    assert notes == ["context.user_agent: not a header value, not sent",
                     "context.ip: not an IP address, not sent"]


def test_the_request_and_the_same_request_on_every_retry() -> None:
    s = settings(endpoint="https://stats.example")
    item, _ = prepare(event(context={"page": {"url": URL}, "ip": "2001:db8::",
                                     "user_agent": "Mozilla/5.0"}))
    assert item is not None
    request = plausible.build_request([item], s)
    assert (request.method, str(request.url)) == ("POST", "https://stats.example/api/event")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "Mozilla/5.0"
    assert request.headers["x-forwarded-for"] == "2001:db8::"
    assert orjson.loads(request.content) == item["body"]
    assert plausible.build_request([item], s).content == request.content
    bare, _ = prepare(event())
    assert bare is not None
    assert "user-agent" not in plausible.build_request([bare], s).headers  # not the relay's
    with pytest.raises(ValueError, match="one event a request"):
        plausible.build_request([bare, bare], s)


# -- answers -------------------------------------------------------------------------------


def test_classify_every_answer() -> None:
    assert plausible.classify(httpx.Response(202, text="ok")) == OK
    assert plausible.classify(httpx.Response(202, json={})) == OK
    dropped = plausible.classify(httpx.Response(202, text="ok",
                                                headers={"x-plausible-dropped": "1"}))
    assert dropped.kind == "ok" and "check settings.domain" in dropped.detail
    bad = plausible.classify(httpx.Response(400, json={"errors": {"url": ["is required"]}}))
    assert bad.kind == "permanent" and bad.status == 400
    assert bad.detail == ('HTTP 400: {"errors":{"url":["is required"]}} (the event\'s '
                          "context.page.url)")
    domain = plausible.classify(httpx.Response(400, json={"errors": {"domain":
                                                                    ["can't be blank"]}}))
    assert domain.detail.endswith("(check settings.domain)")
    assert plausible.classify(httpx.Response(400, text="")).detail == "HTTP 400: "
    busy = plausible.classify(httpx.Response(429, headers={"Retry-After": "3"}))
    assert (busy.kind, busy.retry_after) == ("retry", 3.0)
    assert plausible.classify(httpx.Response(502)).kind == "retry"
    for status, hint in ((401, "takes no credentials"), (404, "check settings.endpoint")):
        verdict = plausible.classify(httpx.Response(status))
        assert verdict.kind == "permanent" and hint in verdict.detail


# -- what the vendor can receive -----------------------------------------------------------


def test_fields_cover_every_path_prepare_can_produce() -> None:
    s = settings(properties={"plan": "Plan"})
    rich = event("purchase", context={"page": {"url": URL, "referrer": "https://r/"},
                                      "ip": "203.0.113.0", "user_agent": "UA"},
                 properties={"order_id": "O", "value": 1, "currency": "EUR", "plan": "pro"})
    for ev in (rich, event(), event("signup", properties={"x": 1})):
        item, _ = prepare(ev, s)
        assert item is not None and uncovered(item, plausible.fields(s)) == set()
    assert uncovered({"body": {"interactive": False}}, plausible.fields(s)) == {
        "body.interactive"}  # the check bites


async def test_through_the_engine_the_debug_view_masks_the_visitors_headers(
        tmp_path: Path) -> None:
    rules, lines = rules_with(tmp_path, """\
pipelines:
  visitors:
    - ip: truncate
    - user_agent: keep
destinations:
  plausible:
    type: plausible
    purpose: analytics
    pipeline: visitors
    settings: {domain: shop.example}
    legal_basis: consent
    retention: 24 months
""")
    assert lines == [] and rules is not None
    ua = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"
    meta = Meta(rules.sources["browser"], 1_795_867_200_000, ip="203.0.113.77",
                user_agent=ua, country="US", correlation_id="c1")
    eng = engine(rules)
    batch = await eng.process([{"event": "page_view", "event_id": "p1",
                                "context": {"page": {"url": URL}}},
                               {"event": "page_view", "event_id": "p2"}], meta)
    [row] = [r for r in batch.rows if r.destination == "plausible"]
    assert orjson.loads(row.payload)["headers"] == {"User-Agent": ua,
                                                    "X-Forwarded-For": "203.0.113.0"}
    entry = debug_entry(batch.results[0], MASKER)
    [shown] = [c for c in entry["copies"] if c["destination"] == "plausible"]
    assert shown["sent"]["headers"]["User-Agent"].startswith("[user agent #")
    assert ua not in orjson.dumps(entry).decode()
    second = debug_entry(batch.results[1], MASKER)
    [dropped] = [c for c in second["copies"] if c["destination"] == "plausible"]
    assert (dropped["outcome"], dropped["detail"]) == (
        "dropped", "no context.page.url: Plausible needs the page's URL")
