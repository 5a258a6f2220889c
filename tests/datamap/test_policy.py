"""The privacy lint (R302-R308): each warning fires on a bad example, at the place to fix,
and not on the fixed one; ``--strict`` makes them errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.cli import main
from relay.datamap.policy import is_ads_purpose
from relay.rules.model import Purpose

from .rulesets import ACCEPT, lint, rules_with

META = """\
pipelines:
  ads_min:
    - ip: truncate
    - user_agent: keep
    - allow: [user, context, properties.value, properties.currency]
destinations:
  meta:
    type: meta_capi
    purpose: ads
    events: [purchase]
    pipeline: ads_min
    settings: {pixel_id: "1234567890", access_token: meta-token-0123456789}
    legal_basis: consent
    retention: 2 years
"""


def test_the_base_is_free_of_warnings(tmp_path: Path) -> None:
    rules, lines = rules_with(tmp_path, "")
    assert rules is not None and lines == []
    assert lint(tmp_path, META) == []


def test_r302_an_ad_platform_under_a_purpose_not_for_ads(tmp_path: Path) -> None:
    bad = META.replace("purpose: ads", "purpose: analytics")
    assert lint(tmp_path, bad) == ["dest.yaml:9:14: R302 destinations.meta.purpose"]
    assert lint(tmp_path, META) == []


def test_r302_ga4_user_data_under_a_purpose_not_for_ads(tmp_path: Path) -> None:
    ga4 = """\
purposes:
  stats: {description: Statistics, default: {EU: denied, "*": granted}}
destinations:
  ga4:
    type: ga4
    purpose: analytics
    pipeline: minimize
    settings: {measurement_id: G-TEST1234, api_secret: mp-secret-1, ad_consent: stats}
    legal_basis: consent
    retention: 14 months
"""
    assert lint(tmp_path, ga4) == ["dest.yaml:8:81: R302 destinations.ga4.settings.ad_consent"]
    assert lint(tmp_path, ga4.replace("ad_consent: stats", "ad_consent: ads")) == []
    # without user_data (the ad fields) GA4 is analytics only: nothing for ads is sent
    narrow = ga4.replace("pipeline: minimize", "pipeline: no_user").replace(
        "destinations:", "pipelines:\n  no_user:\n    - drop: [user]\ndestinations:")
    assert lint(tmp_path, narrow) == []


def test_what_an_ads_purpose_is() -> None:
    assert is_ads_purpose(Purpose("ads")) and is_ads_purpose(Purpose("paid_ads"))
    assert is_ads_purpose(Purpose("Marketing")) and is_ads_purpose(Purpose("advertising"))
    assert is_ads_purpose(Purpose("partners", gpc="denied"))
    assert not is_ads_purpose(Purpose("analytics")) and not is_ads_purpose(Purpose("loads"))
    assert not is_ads_purpose(Purpose("partners", gpc="granted"))


def test_r303_a_raw_email_or_phone_reaching_a_destination(tmp_path: Path) -> None:
    bad = """\
destinations:
  crm:
    type: webhook
    purpose: analytics
    events: [purchase]
    settings: {url: "https://crm.example/hook"}
    legal_basis: contract
    retention: 6 years
"""
    assert lint(tmp_path, bad) == ["dest.yaml:2:3: R303 destinations.crm",
                                   "dest.yaml:2:3: R303 destinations.crm"]
    _, lines = rules_with(tmp_path, bad)
    assert "receives user.email unhashed" in lines[0] and "user.phone" in lines[1]
    assert lint(tmp_path, bad.replace("    settings:", "    pipeline: minimize\n    settings:")
                ) == []


def test_r303_names_the_vendors_field_and_points_at_the_pipeline(tmp_path: Path) -> None:
    bad = """\
pipelines:
  light:
    - ip: truncate
destinations:
  segment:
    type: segment
    purpose: analytics
    events: [purchase]
    pipeline: light
    settings: {write_key: segment-write-key-0123}
    legal_basis: consent
    retention: 14 months
"""
    assert lint(tmp_path, bad) == ["dest.yaml:9:15: R303 destinations.segment.pipeline",
                                   "dest.yaml:9:15: R303 destinations.segment.pipeline"]
    _, lines = rules_with(tmp_path, bad)
    assert "(Segment) receives user.email unhashed (as context.traits.email, traits.email)" \
        in lines[0]
    fixed = bad.replace("- ip: truncate", "- ip: truncate\n    - hash: [user.email, user.phone]")
    assert lint(tmp_path, fixed) == []
    # a vendor that hashes the email itself is not warned about (Meta: em, ph)
    assert lint(tmp_path, META.replace("    - allow:", "    - drop: [properties]\n    - allow:")
                ) == []


def test_r304_the_whole_ip_reaching_an_ad_platform(tmp_path: Path) -> None:
    kept = META.replace("- ip: truncate", "- ip: keep")
    assert lint(tmp_path, kept) == ["dest.yaml:3:11: R304 pipelines.ads_min[0].ip"]
    no_step = META.replace("    - ip: truncate\n", "")
    assert lint(tmp_path, no_step) == ["dest.yaml:10:15: R304 destinations.meta.pipeline"]
    assert lint(tmp_path, META.replace("- ip: truncate", "- ip: strip")) == []
    assert lint(tmp_path, META) == []
    # GA4 sends the IP for analytics, not in its ad fields: no R304
    ga4 = """\
destinations:
  ga4:
    type: ga4
    purpose: analytics
    events: [purchase]
    settings: {measurement_id: G-TEST1234, api_secret: mp-secret-1}
    legal_basis: consent
    retention: 14 months
"""
    assert "R304" not in " ".join(lint(tmp_path, ga4))


@pytest.mark.parametrize(("missing", "code"), [("legal_basis", "R305"), ("retention", "R306")])
def test_r305_r306_the_record_needs_a_legal_basis_and_a_retention(
        tmp_path: Path, missing: str, code: str) -> None:
    line = "    legal_basis: consent\n" if missing == "legal_basis" else "    retention: 2 years\n"
    assert META.count(line) == 1
    assert lint(tmp_path, META.replace(line, "")) == [f"dest.yaml:7:3: {code} destinations.meta"]


def test_r307_granted_by_default_in_the_eea(tmp_path: Path) -> None:
    assert lint(tmp_path, "purposes:\n  stats: {description: Counts}\n") == [
        "dest.yaml:2:3: R307 purposes.stats"]
    assert lint(tmp_path, 'purposes:\n  stats: {default: {"*": granted}}\n') == [
        "dest.yaml:2:26: R307 purposes.stats.default.*"]
    assert lint(tmp_path, 'purposes:\n  stats: {default: {EU: granted, US: denied}}\n') == [
        "dest.yaml:2:25: R307 purposes.stats.default.EU"]
    assert lint(tmp_path, 'purposes:\n  stats: {default: {EU: denied, DE: granted}}\n') == [
        "dest.yaml:2:37: R307 purposes.stats.default.DE"]
    _, lines = rules_with(tmp_path, 'purposes:\n  stats: {default: {EU: denied, DE: granted}}\n')
    assert "granted by default in DE (by DE: granted)" in lines[0]
    assert lint(tmp_path, 'purposes:\n  stats: {default: {EU: denied, "*": granted}}\n') == []
    assert lint(tmp_path, 'purposes:\n  stats: {default: {EEA: denied, "*": granted}}\n') == []
    assert lint(tmp_path, "purposes:\n  security: {description: Fraud, essential: true}\n") == []


def test_essential_is_a_boolean(tmp_path: Path) -> None:
    rules, lines = rules_with(tmp_path, "purposes:\n  security: {essential: yes please}\n")
    assert rules is None and [line.split(" ")[1] for line in lines] == ["R102"]
    rules, _ = rules_with(tmp_path, "purposes:\n  security: {essential: true}\n")
    assert rules is not None and rules.purposes["security"].essential
    assert not rules.purposes["ads"].essential


def test_r308_an_open_contract_reaching_a_vendor(tmp_path: Path) -> None:
    ph = """\
events:
  signup: {properties: {plan: {type: string}}}
destinations:
  product:
    type: posthog
    purpose: analytics
    events: [signup]
    pipeline: minimize
    settings: {api_key: phc_0123456789abcdef}
    legal_basis: consent
    retention: 7 years
"""
    assert lint(tmp_path, ph) == ["dest.yaml:2:3: R308 events.signup"]
    _, lines = rules_with(tmp_path, ph)
    assert "reaches destination 'product' (PostHog) as properties.*" in lines[0]
    closed = ph.replace("{type: string}}}", "{type: string}}, additional_properties: drop}")
    assert lint(tmp_path, closed) == []
    allowed = ph.replace("pipeline: minimize", "pipeline: plan_only").replace(
        "destinations:", "pipelines:\n  plan_only:\n    - hash: [user.email, user.phone]\n"
        "    - allow: [properties.plan, user.email, user.phone]\ndestinations:")
    assert lint(tmp_path, allowed) == []
    # a webhook is not a vendor mapping: the receiver is the site's own
    hook = ph.replace("type: posthog", "type: webhook").replace(
        "{api_key: phc_0123456789abcdef}", '{url: "https://crm.example/hook"}')
    assert lint(tmp_path, hook) == []


def test_r308_events_without_a_contract(tmp_path: Path) -> None:
    ph = """\
destinations:
  product:
    type: posthog
    purpose: analytics
    pipeline: minimize
    settings: {api_key: phc_0123456789abcdef}
    legal_basis: consent
    retention: 7 years
"""
    assert lint(tmp_path, ph, base=ACCEPT) == ["base.yaml:33:3: R308 events.*"]


def test_strict_makes_the_privacy_warnings_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules_with(tmp_path, META.replace("purpose: ads", "purpose: analytics"))
    directory = str(tmp_path / "rules")
    assert main(["check", "--rules", directory]) == 0
    out = capsys.readouterr()
    assert "R302 destinations.meta.purpose" in out.out and out.err == ""
    assert main(["check", "--rules", directory, "--strict"]) == 1
    assert "R302 destinations.meta.purpose" in capsys.readouterr().err
