"""Properties of the envelope parser on arbitrary input (hypothesis): whatever a client sends,
``normalize`` answers an event or an ``EnvelopeError``, never an exception; what it answers
is within the limits, carries no relay-set field from a browser, and is a fixed point (an
accepted event normalizes to itself)."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from relay.engine.envelope import RELAY_CONTEXT_KEYS, EnvelopeError, normalize
from relay.rules.model import DEFAULT_CONSENT_MAP, Limits
from relay.types import Event

NOW_MS = 1_795_867_200_000
LIMITS = Limits(properties=20, depth=4, string_chars=64)

KEYS = st.sampled_from([
    "event", "event_id", "time", "consent", "user", "context", "properties", "schema",
    "correlation_id", "page", "url", "ip", "user_agent", "country", "gpc", "email", "value",
    "analytics", "ads", "analytics_storage", "ad_storage", "batch", "",
]) | st.text(max_size=8)
# No NaN or infinity: a JSON body cannot hold them (orjson refuses 1e400 and NaN alike).
SCALARS = (st.none() | st.booleans() | st.integers()
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=80))
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(KEYS, inner, max_size=6),
    max_leaves=30,
)
NAMES = st.sampled_from(["page_view", "purchase", "Order Completed", "a.b:c/d-e", ""]) \
    | st.text(max_size=140)
TIMES = (st.none() | st.integers(min_value=-(10**16), max_value=10**16)
         | st.sampled_from(["2026-11-28T12:00:00Z", "2026-11-28T12:00:00.123+02:00",
                            "2026-02-30T00:00:00Z", "yesterday", "", "1e3"])
         | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30))
# Objects shaped like envelopes, so most examples get past the first checks.
ENVELOPES = st.fixed_dictionaries(
    {"event": NAMES},
    optional={"event_id": st.text(max_size=140) | st.integers(), "time": TIMES,
              "consent": JSON, "user": JSON, "context": JSON, "properties": JSON,
              "schema": JSON, "correlation_id": JSON, "order_id": JSON, "value": JSON},
)
RAW = ENVELOPES | JSON


def norm(raw: Any, trusted: bool) -> Event | EnvelopeError:
    return normalize(raw, trusted=trusted, limits=LIMITS, consent_map=DEFAULT_CONSENT_MAP,
                     now_ms=NOW_MS)


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


@given(RAW, st.booleans())
def test_any_input_is_an_event_or_an_error_never_an_exception(raw: Any, trusted: bool) -> None:
    out = norm(raw, trusted)
    if isinstance(out, EnvelopeError):
        assert str(out)  # says what is wrong
        return
    orjson.dumps(out)  # an event is plain JSON again
    assert isinstance(out["event"], str) and 1 <= len(out["event"]) <= 128
    assert isinstance(out["time"], str)
    for key in ("user", "context", "properties"):
        if key in out:
            assert depth(out[key]) <= LIMITS.depth, (key, out[key])
    assert len(out.get("properties", {})) <= LIMITS.properties
    for key in ("user", "properties"):
        assert all(len(s) <= LIMITS.string_chars for s in strings(out.get(key)))


@given(ENVELOPES)
def test_a_browser_cannot_set_relay_fields(raw: dict[str, Any]) -> None:
    raw = {**raw, "correlation_id": "forged",
           "context": {"ip": "198.51.100.7", "user_agent": "x", "country": "FR", "gpc": True}}
    out = norm(raw, trusted=False)
    if isinstance(out, EnvelopeError):
        return
    assert "correlation_id" not in out
    assert not set(RELAY_CONTEXT_KEYS) & set(out.get("context", {}))


@given(RAW, st.booleans())
def test_an_accepted_event_is_a_fixed_point(raw: Any, trusted: bool) -> None:
    out = norm(raw, trusted)
    if isinstance(out, EnvelopeError):
        return
    again = norm(orjson.loads(orjson.dumps(out)), trusted)
    assert again == out
