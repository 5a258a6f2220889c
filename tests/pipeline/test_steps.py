"""The STEPS registry, ``run``, and the privacy invariants of the SPEC's ``minimize`` pipeline."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from relay.engine.envelope import EnvelopeError, normalize
from relay.pipeline import STEPS, run
from relay.rules.diagnostics import Reporter
from relay.rules.fields import At
from relay.rules.model import DEFAULT_CONSENT_MAP, Limits, Step
from relay.types import StepContext, StepDef

JOHN_SMITH = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)

# SPEC section 4, pipelines.minimize
MINIMIZE: list[dict[str, Any]] = [
    {"ip": "truncate"},
    {"user_agent": "device"},
    {"url": {"keep_params": ["utm_source", "utm_medium", "utm_campaign"]}},
    {"utm": "collapse"},
    {"click_ids": {"keep_for": "ads"}},
    {"hash": ["user.email", "user.phone"]},
    {"redact": "free_text"},
    {"drop": ["properties.internal_note"]},
]


def steps_of(raw: list[dict[str, Any]]) -> tuple[tuple[Step, ...], Reporter]:
    rep = Reporter()
    out: list[Step] = []
    for i, item in enumerate(raw):
        ((kind, value),) = item.items()
        path = ("pipelines", "minimize", i, kind)
        out.append(Step(kind, STEPS[kind].parse(At(value, path, rep)), path))
    return tuple(out), rep


def browser_event() -> dict[str, Any]:
    raw = {
        "event": "purchase",
        "event_id": "evt_1",
        "consent": {"analytics_storage": "granted", "ad_storage": "denied"},
        "user": {"id": "u_42", "email": "John_Smith@Gmail.com ", "phone": "+1 (555) 010-0000"},
        "context": {
            "page": {
                "url": "https://shop.example/p?utm_source=news&utm_medium=email"
                "&gclid=GCLID123&email=jane%40example.com&session=SESS9",
                "referrer": "https://search.example/?q=john_smith%40gmail.com",
                "title": "Thanks jane@example.com",
            }
        },
        "order_id": "ORD-8472",
        "value": 149.0,
        "currency": "USD",
        "internal_note": "VIP customer",
        "comment": "call me on +44 20 7946 0958",
    }
    ev = normalize(raw, trusted=False, limits=Limits(), consent_map=DEFAULT_CONSENT_MAP, now_ms=0)
    assert not isinstance(ev, EnvelopeError)
    # what the relay sets for browser events
    ev["context"].update({"ip": "203.0.113.77", "user_agent": UA, "country": "US", "gpc": False})
    ev["source"] = "browser"
    return ev


def test_registry_is_explicit() -> None:
    assert list(STEPS) == [
        "ip",
        "user_agent",
        "url",
        "utm",
        "click_ids",
        "hash",
        "redact",
        "drop",
        "allow",
        "set",
    ]
    assert all(step.doc for step in STEPS.values())


def test_spec_pipeline_parses_cleanly() -> None:
    _, rep = steps_of(MINIMIZE)
    assert rep.diagnostics == []


def test_minimize_removes_every_raw_identifier() -> None:
    steps, _ = steps_of(MINIMIZE)
    ctx = StepContext("ga4", granted=frozenset({"analytics"}))
    out = run(steps, browser_event(), ctx)
    assert out is not None
    blob = orjson.dumps(out).decode()
    for secret in (
        "203.0.113.77",
        "iPhone OS",
        "John_Smith",
        "john_smith",
        "555",
        "GCLID123",
        "gclid",
        "jane",
        "SESS9",
        "VIP customer",
        "7946",
    ):
        assert secret not in blob, secret

    assert out["context"]["ip"] == "203.0.113.0"
    assert out["context"]["device"] == {"type": "mobile", "os": "iOS", "browser": "Mobile Safari"}
    assert out["context"]["page"]["url"] == "https://shop.example/p"
    assert out["context"]["campaign"] == {"source": "news", "medium": "email"}
    assert out["user"] == {
        "id": "u_42",
        "email": JOHN_SMITH,
        "phone": hashlib.sha256(b"+15550100000").hexdigest(),
    }
    assert out["properties"] == {
        "order_id": "ORD-8472",
        "value": 149.0,
        "currency": "USD",
        "comment": "call me on [phone]",
    }
    assert out["context"]["page"]["title"] == "Thanks [email]"
    assert out["context"]["page"]["referrer"] == "https://search.example/"
    assert ctx.counts == {
        "ip": 1,
        "user_agent": 1,
        "url": 4,
        "utm": 2,
        "click_ids": 1,
        "hash": 2,
        "redact": 2,
        "drop": 1,
    }
    assert all("john" not in n.lower() and "555" not in n for n in ctx.notes)


def test_click_ids_survive_with_ads_consent() -> None:
    steps, _ = steps_of(MINIMIZE)
    ctx = StepContext("meta", granted=frozenset({"analytics", "ads"}))
    out = run(steps, browser_event(), ctx)
    assert out is not None
    assert out["context"]["click_ids"] == {"gclid": "GCLID123"}
    assert "gclid" not in out["context"]["page"]["url"]  # only via click_ids


def test_run_stops_on_none() -> None:
    calls: list[str] = []

    def apply_none(event: Any, options: Any, ctx: StepContext) -> None:
        calls.append("none")
        return None

    STEPS["_test_none"] = StepDef(lambda at: None, apply_none, lambda fields, options: fields)
    try:
        drop = STEPS["drop"].parse(At(["x"], (), Reporter()))
        steps = (Step("_test_none", None), Step("drop", drop))
        assert run(steps, {"event": "e", "x": 1}, StepContext("d")) is None
        assert calls == ["none"]
    finally:
        del STEPS["_test_none"]


def test_run_without_steps_returns_the_event() -> None:
    ev = {"event": "e"}
    assert run((), ev, StepContext("d")) is ev
