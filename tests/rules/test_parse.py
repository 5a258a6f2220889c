"""parse_rules: the SPEC example types as documented; each section's mistakes get their code."""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from relay.registry import check_rules, load_rules, parse_rules
from relay.rules import Diagnostic, Rules
from relay.rules.diagnostics import Reporter, dotted
from relay.rules.model import (
    DEFAULT_CONSENT_MAP,
    BearerAuth,
    Bots,
    ClientIP,
    Expectation,
    HmacAuth,
    Matcher,
    SpoolWait,
)
from relay.rules.source import read_rules_dir
from tests.rules.conftest import BASE

CASES = Path(__file__).resolve().parent / "cases"
Check = Callable[..., tuple[Rules | None, list[Diagnostic]]]  # the `check` fixture (conftest)



def codes(diagnostics: list[Diagnostic]) -> list[tuple[str, str]]:
    """(code, dotted key path) of each diagnostic."""
    return [(d.code, dotted(d.path)) for d in diagnostics]


SPEC_ENV = {
    "RELAY_SECRET": "cookie-secret",
    "BACKEND_SIGNING_SECRET": "spec-backend-signing-secret",
    "SEGMENT_WRITE_KEY": "spec-segment-write-key",
}


def test_the_spec_example_parses() -> None:
    rules, diagnostics = check_rules(CASES / "spec", SPEC_ENV)
    # Only the privacy lint's warnings, about the example's unminimized archive, and that
    # its browser source, behind a CDN (client_ip), lists no allowed origins.
    assert codes(diagnostics) == [("R320", "sources.browser"),
                                  ("R305", "destinations.archive"),
                                  ("R306", "destinations.archive"),
                                  ("R303", "destinations.archive"),
                                  ("R303", "destinations.archive")]
    assert {d.severity for d in diagnostics} == {"warning"}
    assert rules is not None
    relay = rules.relay
    assert relay.prefix == "/t"
    assert relay.client_ip == ClientIP("X-Forwarded-For", 1)
    assert relay.country_header == "CF-IPCountry"
    assert (relay.cookie.name, relay.cookie.max_age, relay.cookie.path) == ("_rc", 1800.0, "/")
    assert (relay.cookie.same_site, relay.cookie.secure) == ("lax", True)
    assert relay.cookie.secrets == ("cookie-secret",)
    assert relay.dedup_window == 48 * 3600.0
    assert (relay.state, relay.spool) == ("memory", "sqlite:///var/spool.db")
    assert relay.consent_map == DEFAULT_CONSENT_MAP

    assert rules.purposes["analytics"].defaults == {"EU": "denied", "UK": "denied", "*": "granted"}
    assert rules.purposes["analytics"].gpc is None
    assert rules.purposes["ads"].gpc == "denied"
    assert rules.purposes["ads"].description == "Advertising attribution"

    assert rules.sources["browser"].type == "browser"
    assert rules.sources["backend"].auth == HmacAuth(("spec-backend-signing-secret",), 300.0)
    assert rules.sources["apps"].write_keys == ("spec-segment-write-key",)

    purchase = rules.events.contracts["purchase"]
    assert (purchase.version, purchase.authority, purchase.confirm_window) == (2, "backend", 1800.0)
    assert purchase.enrich_from_browser == (
        "context.page.url", "context.click_ids", "context.user_agent",
    )
    assert purchase.additional_properties == "drop"
    assert purchase.properties["value"].min == 0
    assert purchase.properties["value"].type == "number"
    assert purchase.properties["order_id"].required is True
    pattern = purchase.properties["currency"].pattern
    assert pattern is not None and pattern.pattern == "^[A-Z]{3}$"
    assert rules.events.contracts["page_view"].properties == {}
    assert rules.events.fallback == "reject"

    steps = rules.pipelines["minimize"].steps
    assert [s.kind for s in steps] == [
        "ip", "user_agent", "url", "utm", "click_ids", "hash", "redact", "drop",
    ]
    assert steps[5].path == ("pipelines", "minimize", 5)

    ga4 = rules.destinations["ga4"]
    assert (ga4.type, ga4.purpose, ga4.pipeline) == ("webhook", "analytics", "minimize")
    assert ga4.events == ("page_view", "purchase")
    assert ga4.when == (
        Matcher("properties.value", "gt", 0), Matcher("context.country", "in", ("US", "CA")),
    )
    assert (ga4.retry.attempts, ga4.retry.max_backoff, ga4.retry.max_age) == (10, 600.0, 86400.0)
    assert (ga4.legal_basis, ga4.retention) == ("consent", "14 months")
    assert ga4.settings is not None
    archive = rules.destinations["archive"]
    assert (archive.type, archive.events, archive.purpose) == ("file", None, "analytics")

    assert rules.proxy["gtag"].cache == 3600.0
    assert rules.proxy["gtag"].forward_ip == "strip"
    ga = rules.proxy["ga"]
    assert (ga.path, ga.purpose, ga.forward_ip) == ("/g/collect", "analytics", "truncate")
    assert ga.upstream == "https://region1.google-analytics.com/g/collect"
    assert ga.cookies == ("_ga", "_ga_*")

    (test,) = rules.tests
    assert test.given[0].source == "backend"
    assert test.given[0].headers == {"CF-IPCountry": "DE"}
    assert test.given[0].event["properties"]["order_id"] == "O1"
    assert test.expect == {
        "ga4": Expectation("suppressed"), "archive": Expectation("delivered"),
    }

    assert rules.version and rules.files == (str(CASES / "spec" / "rules.yaml"),)
    assert ("relay", "cookie", "secret") in rules.secret_paths
    assert rules.raw["relay"]["prefix"] == "/t"


def test_the_base_of_these_tests_is_valid(check: Check) -> None:
    rules, diagnostics = check()
    assert diagnostics == [] and rules is not None
    assert rules.purposes["analytics"].defaults == {"EU": "denied", "*": "granted"}
    assert rules.relay.cookie.secrets == ()


def test_the_redis_spool_settings(check: Check) -> None:
    rules, diagnostics = check(
        "relay: {spool: 'redis://127.0.0.1:6379/0?prefix=shop:', spool_claim_after: 15s,"
        " spool_wait: {replicas: 2, timeout: 250ms}}\n")
    assert diagnostics == [] and rules is not None
    assert rules.relay.spool == "redis://127.0.0.1:6379/0?prefix=shop:"
    assert rules.relay.spool_claim_after == 15.0
    assert rules.relay.spool_wait == SpoolWait(2, 0.25)
    rules, _ = check("relay: {spool_wait: {replicas: 1}}\n")
    assert rules is not None and rules.relay.spool_wait == SpoolWait(1, 0.1)
    rules, _ = check()
    assert rules is not None and rules.relay.spool_wait is None
    assert rules.relay.spool_claim_after == 30.0


@pytest.mark.parametrize(("snippet", "expected"), [
    # shared codes, as every section uses them
    ("relay: {spool_wait: 1}\n", [("R217", "relay.spool_wait")]),
    ("relay: {spool_wait: {replicas: 1, timeout: 1m}}\n",
     [("R217", "relay.spool_wait.timeout")]),
    ("relay: {spool_wait: {timeout: 1s}}\n", [("R103", "relay.spool_wait")]),
    ("relay: {spool_wait: {replicas: 0}}\n", [("R104", "relay.spool_wait.replicas")]),
    ("relay: {spool_claim_after: 0s}\n", [("R104", "relay.spool_claim_after")]),
    ("destinations:\n  d: {typ: log}\n", [("R103", "destinations.d"),
                                          ("R101", "destinations.d.typ")]),
    ("relay: {limits: {depth: deep}}\n", [("R102", "relay.limits.depth")]),
    ("relay: {admin: {port: 70000}}\n", [("R104", "relay.admin.port")]),
    ("relay: {spool: 'sqlite:///var/'}\n", [("R212", "relay.spool")]),
    ("relay: {cookie: {same_site: loose}}\n", [("R105", "relay.cookie.same_site")]),
    ("sources:\n  s: {type: webhook, auth: {hmac: long-enough-hmac-key, tolerance: soon}}\n",
     [("R106", "sources.s.auth.tolerance")]),
    ("events:\n  e: {properties: {f: {type: string, pattern: '('}}}\n",
     [("R107", "events.e.properties.f.pattern")]),
    # references
    ("destinaton:\n  d: {type: log}\n", [("R201", "destinaton")]),
    ("tests:\n  - {name: t, given: {source: nope, event: {event: page_view}},"
     " expect: {archive: delivered}}\n", [("R202", "tests[0].given.source")]),
    ("events:\n  e: {authority: nope}\n", [("R202", "events.e.authority")]),
    ("destinations:\n  d: {type: log, pipeline: clen}\n", [("R203", "destinations.d.pipeline")]),
    ("proxy:\n  p: {path: /p, upstream: 'https://x.example/', purpose: nope}\n",
     [("R204", "proxy.p.purpose")]),
    ("relay: {consent_map: {analytics_storage: stats}}\n",
     [("R204", "relay.consent_map.analytics_storage")]),
    ("destinations:\n  d: {type: log, events: [page_view, nope]}\n",
     [("R205", "destinations.d.events[1]")]),
    ("tests:\n  - {name: t, given: {source: browser, event: {event: page_view}},"
     " expect: {nope: delivered}}\n", [("R206", "tests[0].expect.nope")]),
    ("pipelines:\n  p: [{hsh: [user.email]}]\n", [("R207", "pipelines.p[0].hsh")]),
    ("destinations:\n  d: {type: ga5, purpose: analytics}\n", [("R208", "destinations.d.type")]),
    ("purposes:\n  bad name: {}\n", [("R209", "purposes.bad name")]),
    # relay
    ("relay: {prefix: t}\n", [("R210", "relay.prefix")]),
    ("relay: {prefix: /}\n", [("R210", "relay.prefix")]),
    ("relay: {state: 'postgres://db'}\n", [("R211", "relay.state")]),
    ("relay: {spool: 'sqlite://spool.db'}\n", [("R212", "relay.spool")]),
    ("relay: {spool: memory}\n", [("R212", "relay.spool")]),
    ("relay: {cookie: {same_site: none, secure: false}}\n", [("R213", "relay.cookie.same_site")]),
    ("relay: {country_header: CF IPCountry}\n", [("R215", "relay.country_header")]),
    ("relay: {client_ip: {header: 'X-Real-IP:'}}\n", [("R215", "relay.client_ip.header")]),
    ("relay: {spool_max_bytes: 2GB}\n", [("R218", "relay.spool_max_bytes")]),
    ("relay: {spool_max_bytes: 1000}\n", [("R218", "relay.spool_max_bytes")]),
    ("relay: {spool_max_bytes: true}\n", [("R218", "relay.spool_max_bytes")]),
    # purposes
    ("purposes:\n  p: {default: {XX: denied}}\n", [("R220", "purposes.p.default.XX")]),
    # sources
    ("sources:\n  web: {type: browser}\n", [("R224", "sources.web.type")]),
    ("sources:\n  s: {type: webhook}\n", [("R225", "sources.s")]),
    ("sources:\n  s: {type: segment}\n", [("R226", "sources.s")]),
    ("sources:\n  s: {type: webhook, auth: {hmac: a, bearer: b}}\n", [("R227", "sources.s.auth")]),
    ("sources:\n  s: {type: webhook, auth: {bearer: long-enough-token, tolerance: 5m}}\n",
     [("R227", "sources.s.auth.tolerance")]),
    ("sources:\n  s: {type: segment, write_keys: [long-enough-write-key], auth: {bearer: b}}\n",
     [("R228", "sources.s.auth")]),
    ("sources:\n  s: {type: webhook, auth: {bearer: long-enough-token}, write_keys: [k]}\n",
     [("R228", "sources.s.write_keys")]),
    ("sources:\n  s: {type: webhook, auth: {hmac: '${EMPTY:-}'}}\n",
     [("R229", "sources.s.auth.hmac")]),
    ("sources:\n  s: {type: segment, write_keys: ['${EMPTY:-}']}\n",
     [("R229", "sources.s.write_keys")]),
    # events
    ("events:\n  'bad!': {}\n", [("R230", "events.bad!")]),
    ("events:\n  e: {properties: {f: {type: float}}}\n", [("R231", "events.e.properties.f.type")]),
    ("events:\n  e: {properties: {f: {type: number, min: 5, max: 1}}}\n",
     [("R232", "events.e.properties.f.min")]),
    ("destinations:\n  d: {type: log, retry: {base_backoff: 10m, max_backoff: 1m}}\n",
     [("R232", "destinations.d.retry.base_backoff")]),
    ("events:\n  e: {properties: {f: {type: string, min: 1}}}\n",
     [("R233", "events.e.properties.f.min")]),
    ("events:\n  e: {properties: {f: {type: number, pattern: x}}}\n",
     [("R233", "events.e.properties.f.pattern")]),
    ("events:\n  e: {authority: browser}\n", [("R234", "events.e.authority")]),
    ("events:\n  e: {authority: backend, enrich_from_browser: [context..url]}\n",
     [("R235", "events.e.enrich_from_browser[0]")]),
    # pipelines
    ("pipelines:\n  p: [ip]\n", [("R240", "pipelines.p[0]")]),
    ("pipelines:\n  p: [{ip: strip, hash: [a]}]\n", [("R240", "pipelines.p[0]")]),
    # destinations
    ("destinations:\n  d: {type: webhook, settings: {url: 'https://x.example/h'}}\n",
     [("R250", "destinations.d")]),
    ("destinations:\n  d: {type: log, batch_size: 1000000000}\n",
     [("R251", "destinations.d.batch_size")]),
    # proxy
    ("proxy:\n  p: {path: lib/x.js, upstream: 'https://x.example/x'}\n",
     [("R260", "proxy.p.path")]),
    ("proxy:\n  p: {path: /x, upstream: 'ftp://x.example/x'}\n", [("R261", "proxy.p.upstream")]),
    ("proxy:\n  p: {path: /x, upstream: 'https://'}\n", [("R261", "proxy.p.upstream")]),
    ("proxy:\n  p: {path: /x, upstream: 'https://x.example/x', pin: md5-abc}\n",
     [("R262", "proxy.p.pin")]),
    ("proxy:\n  p: {path: /x, upstream: 'https://x.example/x', pin: 'sha256-YWJj'}\n",
     [("R262", "proxy.p.pin")]),
    ("proxy:\n  p: {path: /hook/x, upstream: 'https://x.example/x'}\n", [("R263", "proxy.p.path")]),
    ("proxy:\n  p: {path: /x, upstream: 'https://x.example/x'}\n"
     "  q: {path: /x, upstream: 'https://x.example/y'}\n", [("R263", "proxy.q.path")]),
    # tests
    ("tests:\n  - {name: t, given: {source: browser, event: {event: page_view}},"
     " expect: {archive: deliverd}}\n", [("R270", "tests[0].expect.archive")]),
    ("tests:\n  - {name: t, given: {source: browser, event: {event: page_view}},"
     " expect: {archive: delivered}}\n"
     "  - {name: t, given: {source: browser, event: {event: page_view}},"
     " expect: {archive: delivered}}\n", [("R271", "tests[1].name")]),
    ("tests:\n  - {name: t, given: {source: browser, event: {event: page_view}}, expect: {}}\n",
     [("R272", "tests[0].expect")]),
    ("tests:\n  - {name: t, given: {source: browser, event: {event: page_view}},"
     " expect: {archive: {outcome: suppressed, fields: {a.b: 1}}}}\n",
     [("R273", "tests[0].expect.archive.fields")]),
    ("tests:\n  - {name: t, given: {source: browser, event: {event: page_view}},"
     " expect: {archive: {outcome: delivered, fields: {a..b: 1}}}}\n",
     [("R235", "tests[0].expect.archive.fields.a..b")]),
    ("tests:\n  - {name: t, given: [], expect: {archive: delivered}}\n",
     [("R104", "tests[0].given")]),
    ("tests:\n  - {name: t, given: {source: browser, event: page_view},"
     " expect: {archive: delivered}}\n", [("R102", "tests[0].given.event")]),
])
def test_each_mistake_has_its_code(
    check: Check, snippet: str, expected: list[tuple[str, str]]
) -> None:
    rules, diagnostics = check(snippet)
    assert codes(diagnostics) == expected
    assert rules is None
    for d in diagnostics:
        assert d.mark.line > 0 and d.mark.col > 0, d.render()
        assert d.hint or d.code in ("R102", "R103", "R104", "R107"), d.render()


@pytest.mark.parametrize(("snippet", "expected"), [
    ("relay: {client_ip: {header: CF-Connecting-IP, trusted_hops: 2}}\n",
     [("R214", "relay.client_ip.trusted_hops")]),
    ("events:\n  e: {confirm_window: 5m}\n", [("R236", "events.e.confirm_window")]),
    # a Redis spool whose claims come before a destination's timeout: on the smaller setting
    ("relay: {spool: 'redis://127.0.0.1:6379/0', spool_claim_after: 5s}\n",
     [("R219", "relay.spool_claim_after")]),
    ("relay: {spool: 'redis://127.0.0.1:6379/0'}\n"
     "destinations:\n  slow: {type: file, pipeline: clean, settings: {path: var/y.jsonl},\n"
     "         timeout: 30s, legal_basis: consent, retention: 30 days}\n",
     [("R219", "destinations.slow.timeout")]),
])
def test_warnings_do_not_fail(check: Check, snippet: str, expected: list[tuple[str, str]]) -> None:
    rules, diagnostics = check(snippet)
    assert codes(diagnostics) == expected
    assert [d.severity for d in diagnostics] == ["warning"]
    assert rules is not None


def test_claim_after_is_only_checked_for_a_redis_spool(check: Check) -> None:
    """The SQLite spool has no claims: one process owns its copies."""
    rules, diagnostics = check("relay: {spool_claim_after: 5s}\n")
    assert diagnostics == [] and rules is not None
    rules, diagnostics = check("relay: {spool: 'redis://127.0.0.1:6379/0', "
                               "spool_claim_after: 11s}\n")
    assert diagnostics == [] and rules is not None


def test_a_bare_no_region_gets_a_quoting_hint(check: Check) -> None:
    _, diagnostics = check("purposes:\n  p: {default: {NO: denied}}\n")
    (d,) = diagnostics
    assert d.code == "R220" and 'quote it: "NO"' in (d.hint or "")
    snippet = 'purposes:\n  p: {default: {"NO": denied, GB: granted, EEA: denied}}\n'
    rules, diagnostics = check(snippet)
    assert diagnostics == [] and rules is not None
    assert rules.purposes["p"].defaults == {"NO": "denied", "GB": "granted", "EEA": "denied"}


def test_unknown_destination_type_lists_the_known_types(check: Check) -> None:
    _, diagnostics = check("destinations:\n  d: {type: filee, purpose: analytics}\n")
    (d,) = diagnostics
    assert d.hint is not None and d.hint.startswith("did you mean 'file'? known types: ")
    assert "log" in d.hint and "webhook" in d.hint


def test_a_broken_definition_does_not_make_its_users_errors(check: Check) -> None:
    # the destination's own type is wrong; the test that names it gets no second error
    snippet = (
        "destinations:\n  d: {type: nope, purpose: analytics}\n"
        "tests:\n  - {name: t, given: {source: browser, event: {event: page_view}},"
        " expect: {d: delivered}}\n"
    )
    _, diagnostics = check(snippet)
    assert codes(diagnostics) == [("R208", "destinations.d.type")]


def test_relay_settings(check: Check) -> None:
    rules, diagnostics = check(
        "relay:\n"
        "  prefix: /collect/v2\n"
        "  client_ip: {header: CF-Connecting-IP}\n"
        "  cookie: {name: rc, max_age: 1h, domain: shop.example, same_site: strict, secure: false,"
        " secret: [old, new]}\n"
        "  dedup_window: 1d\n"
        "  dedup_max_keys: 1000\n"
        "  state: 'redis://cache:6379/1'\n"
        "  spool: 'sqlite:////var/lib/relay/spool.db'\n"
        "  limits: {body_bytes: 1024, batch_events: 5, properties: 10, depth: 3,"
        " string_chars: 100}\n"
        "  admin: {host: 0.0.0.0, port: 9999, token: admin-token}\n"
        "  rate_limit: {per_second: 5, burst: 20}\n"
        "  consent_map: {analytics_storage: analytics, ad_personalization: null,"
        " functionality_storage: analytics}\n"
    )
    assert diagnostics == [] and rules is not None
    relay = rules.relay
    assert relay.prefix == "/collect/v2"
    assert relay.client_ip.header == "CF-Connecting-IP"
    assert relay.cookie.secrets == ("old", "new")  # rotation: newest last
    assert (relay.cookie.domain, relay.cookie.same_site, relay.cookie.secure) == (
        "shop.example", "strict", False,
    )
    assert (relay.dedup_window, relay.dedup_max_keys) == (86400.0, 1000)
    assert relay.state == "redis://cache:6379/1"
    assert relay.spool == "sqlite:////var/lib/relay/spool.db"
    assert (relay.limits.body_bytes, relay.limits.depth, relay.limits.string_chars) == (
        1024, 3, 100,
    )
    assert (relay.admin.host, relay.admin.port, relay.admin.token) == (
        "0.0.0.0", 9999, "admin-token",
    )
    assert (relay.rate_limit.per_second, relay.rate_limit.burst) == (5.0, 20)
    assert relay.consent_map == {
        "analytics_storage": "analytics", "ad_storage": "ads", "ad_user_data": "ads",
        "functionality_storage": "analytics",
    }


def test_without_a_purposes_section_there_are_none(check: Check) -> None:
    base = "sources:\n  browser: {type: browser}\n"
    rules, diagnostics = check("destinations:\n  a: {type: log, legal_basis: consent,"
                               " retention: 7 days}\n", base=base)
    assert diagnostics == [] and rules is not None
    assert rules.purposes == {}
    assert rules.destinations["a"].purpose is None


OLD, NEW = "old-secret-0123456789", "new-secret-0123456789"


def test_sources_auth_variants(check: Check) -> None:
    rules, diagnostics = check(
        "sources:\n"
        f"  h: {{type: webhook, auth: {{hmac: [{OLD}, {NEW}], tolerance: 2m}}}}\n"
        f"  b: {{type: webhook, auth: {{bearer: {NEW}}}}}\n"
        f"  s: {{type: segment, write_keys: [{OLD}, {NEW}]}}\n"
    )
    assert diagnostics == [] and rules is not None
    assert rules.sources["h"].auth == HmacAuth((OLD, NEW), 120.0)
    assert rules.sources["b"].auth == BearerAuth((NEW,))
    assert rules.sources["s"].write_keys == (OLD, NEW)


def test_contract_fields(check: Check) -> None:
    rules, diagnostics = check(
        "events:\n"
        "  Order Completed:\n"
        "    properties:\n"
        "      plan: {type: string, enum: [free, pro], max_length: 10}\n"
        "      count: {type: integer, min: 1, max: 9}\n"
        "      note:\n"
        "    additional_properties: reject\n"
        "  checkout:step/2: ~\n"
        "  '*': quarantine\n"
    )
    assert diagnostics == [] and rules is not None
    contract = rules.events.contracts["Order Completed"]
    assert contract.properties["plan"].enum == ("free", "pro")
    assert contract.properties["plan"].max_length == 10
    assert (contract.properties["count"].min, contract.properties["count"].max) == (1, 9)
    assert contract.properties["note"].type is None
    assert contract.additional_properties == "reject"
    assert "checkout:step/2" in rules.events.contracts
    assert rules.events.fallback == "quarantine"


def test_destination_events_forms(check: Check) -> None:
    rules, diagnostics = check(
        "destinations:\n"
        "  a: {type: log, events: page_view, pipeline: clean, legal_basis: consent,"
        " retention: 7 days}\n"
        "  b: {type: log, events: ['*'], pipeline: clean, legal_basis: consent,"
        " retention: 7 days}\n"
        "  c: {type: log, events: [page_view], timeout: 3s, concurrency: 4, batch_size: 10,"
        " circuit_breaker: {failures: 3, cooldown: 1m}, retry: {base_backoff: 2s},"
        " pipeline: clean, legal_basis: consent, retention: 7 days}\n"
    )
    assert diagnostics == [] and rules is not None
    assert rules.destinations["a"].events == ("page_view",)
    assert rules.destinations["b"].events is None
    c = rules.destinations["c"]
    assert (c.timeout, c.concurrency, c.batch_size) == (3.0, 4, 10)
    assert (c.breaker_failures, c.breaker_cooldown, c.retry.base_backoff) == (3, 60.0, 2.0)


def test_unknown_events_are_allowed_when_the_fallback_accepts(check: Check) -> None:
    rules, diagnostics = check(
        "events:\n  '*': accept\ndestinations:\n  d: {type: log, events: [anything],"
        " pipeline: clean, legal_basis: consent, retention: 7 days}\n"
    )
    assert diagnostics == [] and rules is not None
    assert rules.destinations["d"].events == ("anything",)


def test_tests_with_steps_and_fields(check: Check) -> None:
    rules, diagnostics = check(
        "tests:\n"
        "  - name: browser then backend\n"
        "    given:\n"
        "      - {source: browser, event: {event: page_view, event_id: e1}}\n"
        "      - {source: backend, headers: {X-Test: 1}, event: {event: page_view, event_id: e1}}\n"
        "    expect:\n"
        "      archive: {outcome: delivered, fields: {properties.value: 10, event: page_view}}\n"
    )
    assert diagnostics == [] and rules is not None
    (test,) = rules.tests
    assert [g.source for g in test.given] == ["browser", "backend"]
    assert test.given[1].headers == {"X-Test": "1"}
    assert test.expect["archive"] == Expectation(
        "delivered", {"properties.value": 10, "event": "page_view"},
    )
    assert test.path == ("tests", 0)


def test_proxy_pin(check: Check) -> None:
    pin = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    rules, diagnostics = check(
        f"proxy:\n  p: {{path: /lib/x.js, upstream: 'http://cdn.example:8080/x.js', pin: '{pin}',"
        " cookies: _ga, cache: 5m}\n"
    )
    assert diagnostics == [] and rules is not None
    route = rules.proxy["p"]
    assert (route.pin, route.cookies, route.cache) == (pin, ("_ga",), 300.0)


def test_one_run_collects_mistakes_from_every_section(check: Check) -> None:
    snippet = (
        "relay: {prefix: t}\n"
        "sources:\n  s: {type: segment}\n"
        "destinations:\n  d: {type: log, pipeline: nope}\n"
        "proxy:\n  p: {path: /e, upstream: 'https://x.example'}\n"
    )
    _, diagnostics = check(snippet)
    assert [c for c, _ in codes(diagnostics)] == ["R210", "R226", "R203", "R263"]


def test_parse_rules_keeps_going_on_an_empty_tree() -> None:
    raw = read_rules_dir("/nonexistent-rules-dir", {})
    rules = parse_rules(raw)
    assert [d.code for d in raw.reporter.errors] == ["R005"]
    assert rules.destinations == {} and rules.tests == ()


def test_empty_sections_are_empty(check: Check) -> None:
    rules, diagnostics = check("proxy:\ntests:\n", base="pipelines:\n  none:\n")
    assert diagnostics == [] and rules is not None
    assert rules.pipelines["none"].steps == ()


def test_load_rules_returns_rules() -> None:
    rules = load_rules(CASES / "spec", SPEC_ENV)
    assert re.fullmatch(r"[0-9a-f]{12}", rules.version)


REPLACEMENTS: list[object] = [None, 5, -1, 1.5, "x", "", [], {}, [1], {"a": 1}, True, [{}]]


def test_no_shape_of_mistake_makes_parsing_raise() -> None:
    """Every value of the SPEC example, replaced by every wrong shape, parses without raising."""
    spec = read_rules_dir(CASES / "spec", SPEC_ENV)
    paths: list[tuple[str | int, ...]] = []

    def walk(value: object, path: tuple[str | int, ...]) -> None:
        paths.append(path)
        children = (value.items() if isinstance(value, dict)
                    else enumerate(value) if isinstance(value, list) else ())
        for key, child in children:
            walk(child, (*path, key))

    walk(spec.tree, ())
    assert len(paths) > 100
    for path in paths[1:]:
        for replacement in REPLACEMENTS:
            tree = copy.deepcopy(spec.tree)
            parent: Any = tree
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = copy.deepcopy(replacement)
            reporter = Reporter(spec.reporter.marks, spec.reporter.key_marks)
            parse_rules(dataclasses.replace(spec, tree=tree, reporter=reporter))  # never raises

# The test base without its browser source, for cases that define their own.
NO_BROWSER = BASE.replace("  browser: {type: browser, allowed_origins: [https://shop.example]}\n",
                          "")


def test_browser_abuse_keys(check: Check) -> None:
    rules, diagnostics = check(
        "sources:\n"
        "  browser:\n"
        "    type: browser\n"
        "    allowed_origins: ['HTTPS://Shop.example:443/', 'https://*.shop.example',"
        " 'http://localhost:*', 'http://127.0.0.1:8000', 'null']\n"
        "    bots: {crawlers: flag}\n", base=NO_BROWSER,
    )
    assert diagnostics == [] and rules is not None
    browser = rules.sources["browser"]
    assert browser.allowed_origins == ("https://shop.example", "https://*.shop.example",
                                       "http://localhost:*", "http://127.0.0.1:8000", "null")
    assert (browser.bots.crawlers, browser.bots.headless) == ("flag", "flag")


def test_bot_defaults_and_one_action_for_both() -> None:
    assert (Bots().crawlers, Bots().headless) == ("drop", "flag")


@pytest.mark.parametrize(("snippet", "expected"), [
    ("sources:\n  browser: {type: browser, allowed_origins: [https://shop.example/cart]}\n",
     [("R222", "sources.browser.allowed_origins[0]")]),
    ("sources:\n  browser: {type: browser, allowed_origins: [shop.example]}\n",
     [("R222", "sources.browser.allowed_origins[0]")]),
    ("sources:\n  browser: {type: browser, allowed_origins: ['https://shop.*.example']}\n",
     [("R222", "sources.browser.allowed_origins[0]")]),
    ("sources:\n  browser: {type: browser, bots: block}\n", [("R105", "sources.browser.bots")]),
    ("sources:\n  browser: {type: browser, bots: {robots: drop}}\n",
     [("R101", "sources.browser.bots.robots")]),
    ("sources:\n  partner: {type: webhook, auth: {bearer: rules-test-bearer-token},"
     " allowed_origins: ['*']}\n", [("R228", "sources.partner.allowed_origins")]),
    ("sources:\n  apps: {type: segment, write_keys: [rules-test-write-key-0123], bots: drop}\n",
     [("R228", "sources.apps.bots")]),
])
def test_browser_abuse_key_mistakes(
    check: Check, snippet: str, expected: list[tuple[str, str]]
) -> None:
    rules, diagnostics = check(snippet, base=NO_BROWSER)
    assert codes(diagnostics) == expected
    assert rules is None


@pytest.mark.parametrize(("relay", "warned"), [
    ("relay: {client_ip: {header: CF-Connecting-IP}}\n", True),
    ("relay: {cookie: {domain: shop.example}}\n", True),
    ("relay: {cookie: {domain: localhost}}\n", False),
    ("relay: {prefix: /t}\n", False),
])
def test_r320_a_public_deployment_without_allowed_origins(
    check: Check, relay: str, warned: bool
) -> None:
    for browser, expect in (("{type: browser}", warned),
                            ("{type: browser, allowed_origins: ['*']}", False)):
        rules, diagnostics = check(relay + f"sources:\n  browser: {browser}\n",
                                   base=NO_BROWSER)
        assert rules is not None
        assert codes(diagnostics) == ([("R320", "sources.browser")] if expect else [])
        assert all(d.severity == "warning" for d in diagnostics)
