"""The datamap: computed from contracts, pipelines and each destination's mapping."""

from __future__ import annotations

import json
from pathlib import Path

from relay.datamap import datamap
from relay.datamap.envelope import envelope
from relay.datamap.render import to_json
from relay.engine.envelope import ENVELOPE_KEYS, RELAY_CONTEXT_KEYS
from relay.registry import load_rules
from relay.rules.model import Contract, FieldSpec
from tests.conftest import SHIPPED_RULES

from .rulesets import ACCEPT, dmap, entry

GA4 = """\
pipelines:
  google:
    - ip: truncate
    - user_agent: device
    - hash: [user.email]
destinations:
  ga4:
    type: ga4
    purpose: analytics
    events: [purchase, page_view]
    pipeline: google
    settings: {measurement_id: G-TEST1234, api_secret: mp-secret-1, properties: {}}
    legal_basis: consent
    retention: 14 months
"""
KEYS = ["name", "type", "vendor", "purpose", "legal_basis", "retention", "events", "fields",
        "hashed", "transforms", "consent"]


def test_the_json_shape_of_the_shipped_rules() -> None:
    rules = load_rules(SHIPPED_RULES, {})
    data = json.loads(to_json(datamap(rules)))
    assert list(data) == ["rules_version", "destinations"]
    assert data["rules_version"] == rules.version
    names = [d["name"] for d in data["destinations"]]
    assert names == sorted(rules.destinations)
    for d in data["destinations"]:
        assert list(d) == KEYS
        dest = rules.destinations[d["name"]]
        assert d["type"] == dest.type and d["purpose"] == (dest.purpose or "")
        assert (d["legal_basis"], d["retention"]) == (dest.legal_basis, dest.retention)
        assert d["fields"] == sorted(set(d["fields"])) and set(d["hashed"]) <= set(d["fields"])
        assert d["hashed"] == sorted(d["hashed"])
        purpose = rules.purposes[d["purpose"]]
        assert d["consent"] == {"gpc": purpose.gpc, "defaults": dict(purpose.defaults)}
        steps = rules.pipelines[dest.pipeline].steps if dest.pipeline else ()
        assert d["transforms"] == [s.kind for s in steps]
    assert datamap(rules) == datamap(load_rules(SHIPPED_RULES, {}))  # stable


def test_the_shipped_archive_gets_the_minimized_envelope() -> None:
    [archive] = datamap(load_rules(SHIPPED_RULES, {})).destinations
    assert archive.events == ("page_view", "purchase", "signup")
    assert archive.hashed == ("user.email", "user.phone")
    fields = set(archive.fields)
    assert {"context.ip", "context.device.browser", "context.campaign.source",
            "properties.*", "properties.order_id", "user.*"} <= fields
    assert "context.user_agent" not in fields  # user_agent: device
    assert archive.transforms == ("ip", "user_agent", "url", "utm", "click_ids", "hash",
                                  "redact")


def test_a_vendor_gets_its_own_names_through_the_pipeline(tmp_path: Path) -> None:
    ga4 = entry(tmp_path, GA4, "ga4")
    assert ga4.vendor == "Google Analytics 4 (Google LLC)"
    assert ga4.events == ("page_view", "purchase")
    fields = set(ga4.fields)
    assert {"ip_override", "device.category", "events[].name", "user_id",
            "user_data.sha256_email_address[]", "consent.ad_user_data"} <= fields
    assert "user_agent" not in fields  # the device step replaced the raw string
    # purchase is closed (additional_properties: drop): its declared properties, by name
    assert {"events[].params.order_id", "events[].params.value"} <= fields
    assert "events[].params.*" not in fields and "events[].params.plan" not in fields
    assert "user_data.sha256_email_address[]" in ga4.hashed
    assert "client_id" in fields and "client_id" not in ga4.hashed  # anonymous_id: raw


def test_a_step_that_removes_a_field_removes_the_vendors_field(tmp_path: Path) -> None:
    text = GA4.replace("- ip: truncate", "- ip: strip").replace(
        "- user_agent: device", "- drop: [user.id]")
    fields = set(entry(tmp_path, text, "ga4").fields)
    assert "ip_override" not in fields and "user_id" not in fields
    assert "user_agent" in fields  # no device step now: the raw user agent reaches GA4


def test_an_open_contract_reaches_a_vendor_as_a_wildcard(tmp_path: Path) -> None:
    text = ("events:\n  signup: {properties: {plan: {type: string}}}\n"
            + GA4.replace("[purchase, page_view]", "[signup]"))
    fields = set(entry(tmp_path, text, "ga4").fields)
    assert {"events[].params.plan", "events[].params.*"} <= fields


def test_only_what_an_allow_step_keeps_reaches_a_webhook(tmp_path: Path) -> None:
    hook = entry(tmp_path, """\
events:
  signup: {}
pipelines:
  narrow:
    - allow: [properties.plan, context.page.url]
destinations:
  crm:
    type: webhook
    purpose: analytics
    events: [signup]
    pipeline: narrow
    settings: {url: "https://crm.example/hook"}
    legal_basis: contract
    retention: 6 years
""", "crm")
    assert hook.vendor == "the receiver at settings.url"
    assert set(hook.fields) == {"consent.*", "context.page.url", "event", "event_id",
                                "properties.plan", "received_at", "schema", "source", "time"}


def test_settings_fields_and_events_without_a_contract(tmp_path: Path) -> None:
    plausible = entry(tmp_path, """\
destinations:
  web:
    type: plausible
    purpose: analytics
    settings: {domain: shop.example}
    legal_basis: consent
    retention: 24 months
""", "web", base=ACCEPT)
    assert plausible.events == ("page_view", "purchase", "*")
    assert "body.domain" in plausible.fields  # from the settings, always
    assert "body.props.*" in plausible.fields  # events without a contract: any property


def test_an_ungated_log_destination(tmp_path: Path) -> None:
    log = entry(tmp_path, """\
destinations:
  debug:
    type: log
    events: [purchase]
    pipeline: minimize
""", "debug")
    assert (log.purpose, log.legal_basis, log.retention) == ("", None, None)
    assert log.consent.gpc is None and log.consent.defaults == {}
    assert log.vendor.startswith("none: the relay's own log")
    assert log.to_json()["consent"] == {"gpc": None, "defaults": {}}


def test_the_destinations_are_sorted_by_name(tmp_path: Path) -> None:
    text = GA4 + """\
  aaa:
    type: log
    events: [purchase]
    pipeline: minimize
    legal_basis: consent
    retention: 1 day
"""
    assert [e.name for e in dmap(tmp_path, text).destinations] == ["aaa", "archive", "ga4"]


def test_the_envelope_model_knows_every_envelope_key() -> None:
    fields = envelope(None)
    for key in ENVELOPE_KEYS:
        assert fields.has(key), key
    for key in RELAY_CONTEXT_KEYS:
        assert fields.has(f"context.{key}"), key
    closed = envelope(Contract("e", properties={"v": FieldSpec()}, additional_properties="drop"))
    assert [p for p, _ in closed.paths() if p.startswith("properties")] == ["properties.v"]
    opened = envelope(Contract("e", properties={"v": FieldSpec()}))
    assert [p for p, _ in opened.paths() if p.startswith("properties")] == [
        "properties.*", "properties.v"]
