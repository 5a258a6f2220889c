"""The helpers the product-analytics destinations share, and their secrets kept out of the
rules page (``GET /rules``, ``relay check``)."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import yaml

from relay.destinations import analytics as a
from relay.destinations.base import sha256_hex
from relay.registry import load_rules
from relay.rules.secrets import masked_tree
from tests.conftest import SHIPPED_RULES

SECRETS: dict[str, dict[str, object]] = {
    "posthog": {"api_key": "phc_secretProjectKey123"},
    "mixpanel": {"token": "mp-token-secret-1", "api_secret": None,
                 "service_account_username": "sa.user", "service_account_secret": "sa-secret-2",
                 "project_id": "42"},
    "matomo": {"site_id": 1, "endpoint": "https://matomo.example", "token_auth": "tok-secret-3"},
}


def test_every_credential_is_masked_on_the_rules_page(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(SHIPPED_RULES, rules)
    destinations = {kind: {"type": kind, "purpose": "analytics", "events": "*",
                           "settings": {k: v for k, v in settings.items() if v is not None}}
                    for kind, settings in SECRETS.items()}
    (rules / "zz.yaml").write_text(yaml.safe_dump({"destinations": destinations}))
    shown = masked_tree(load_rules(rules, {}))["destinations"]
    assert shown["posthog"]["settings"]["api_key"] == "***"
    assert shown["mixpanel"]["settings"]["token"] == "***"
    assert shown["mixpanel"]["settings"]["service_account_secret"] == "***"
    assert shown["matomo"]["settings"]["token_auth"] == "***"
    assert shown["mixpanel"]["settings"]["service_account_username"] == "sa.user"
    text = json.dumps(shown)
    for secret in ("phc_secretProjectKey123", "mp-token-secret-1", "sa-secret-2",
                   "tok-secret-3"):
        assert secret not in text


def test_stable_uuid() -> None:
    first = a.stable_uuid("posthog", "evt_1")
    assert first == a.stable_uuid("posthog", "evt_1")
    assert uuid.UUID(first).version == 5
    assert first != a.stable_uuid("mixpanel", "evt_1") != a.stable_uuid("posthog", "evt_2")


def test_distinct_id_order() -> None:
    assert a.distinct_id({"user": {"id": 42}, "anonymous_id": "a"}) == ("user.id", "42")
    assert a.distinct_id({"user": {"id": " "}, "anonymous_id": "a"}) == ("anonymous_id", "a")
    assert a.distinct_id({"correlation_id": "c"}) == ("correlation_id", "c")
    assert a.distinct_id({"user": {"id": True}}) is None


def test_hashed_identifier_never_returns_the_raw_value() -> None:
    hashed = a.hashed_identifier({"user": {"email": " Ann@Example.com "}}, "user.email")
    assert hashed == "71d4f55f72fa128dfb468a1a3901507c804b74316488744d769d7f4b16696476"
    assert a.hashed_identifier({"user": {"email": hashed}}, "user.email") == hashed
    assert a.hashed_identifier({"user": {"phone": "+1 (555) 010-0000"}}, "user.phone") == (
        sha256_hex("+15550100000"))
    assert a.hashed_identifier({"user": {"email": ["x"]}}, "user.email") is None


def test_event_time_prefers_the_event_time() -> None:
    when = a.event_time({"time": "2026-11-28T12:00:00.000Z", "received_at": "x"})
    assert when is not None and when.timestamp() == 1_795_867_200
    late = a.event_time({"received_at": "2026-11-28T12:00:01.000Z"})
    assert late is not None and late.timestamp() == 1_795_867_201
    assert a.event_time({}) is None


def test_the_debug_view_masks_what_each_vendor_type_receives() -> None:
    """A vendor copy names ids and the user agent in the vendor's words (``distinct_id``,
    ``$raw_user_agent``, ``uid``); the masker tags them as it tags ``user.id``."""
    from relay.destinations import matomo, mixpanel, posthog
    from relay.observe.mask import Masker
    from relay.types import StepContext

    from .helpers import parse

    masker = Masker(b"test-masking-key-0123456789")
    ua = "Mozilla/5.0 (X11; Linux x86_64) ProbeBrowser/1.0"
    event = {"event": "signup", "event_id": "e1", "time": "2026-11-28T12:00:00.000Z",
             "received_at": "2026-11-28T12:00:00.000Z", "anonymous_id": "anon-probe-77",
             "correlation_id": "cid-probe-88", "user": {"id": "user-probe-99"},
             "context": {"ip": "203.0.113.77", "user_agent": ua}}
    kinds = {
        "posthog": (posthog, {"api_key": "phc_x"}),
        "mixpanel": (mixpanel, {"token": "t"}),
        "matomo": (matomo, {"site_id": 1, "endpoint": "https://m.example",
                            "token_auth": "x"}),
    }
    for name, (module, raw) in kinds.items():
        settings, errors = parse(module.parse_settings, raw)
        assert errors == []
        item = module.prepare(dict(event), settings, StepContext(name))
        assert item is not None
        shown = json.dumps(masker.event(item))
        for raw_value in ("anon-probe-77", "cid-probe-88", "user-probe-99", ua, "ProbeBrowser",
                          "203.0.113.77"):
            assert raw_value not in shown, (name, raw_value, shown)
