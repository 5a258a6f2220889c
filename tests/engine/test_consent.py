from __future__ import annotations

from typing import Any

import pytest

from relay.engine.consent import (
    EEA_COUNTRIES,
    EU_COUNTRIES,
    decide,
    granted,
    region_default,
    states,
)
from relay.rules.model import Purpose

ANALYTICS = Purpose("analytics", defaults={"EU": "denied", "UK": "denied", "*": "granted"})
ADS = Purpose("ads", defaults={"EU": "denied", "UK": "denied", "*": "granted"}, gpc="denied")


def ev(country: str | None = None, consent: Any = None, gpc: Any = None) -> dict[str, Any]:
    context: dict[str, Any] = {}
    if country is not None:
        context["country"] = country
    if gpc is not None:
        context["gpc"] = gpc
    out: dict[str, Any] = {"event": "e", "context": context}
    if consent is not None:
        out["consent"] = consent
    return out


def test_country_sets() -> None:
    assert len(EU_COUNTRIES) == 27
    extra = EEA_COUNTRIES - EU_COUNTRIES
    assert extra == {"IS", "LI", "NO"}
    assert "GB" not in EEA_COUNTRIES


@pytest.mark.parametrize(
    ("country", "expected"),
    [
        ("DE", ("denied", "default:EU")),
        ("de", ("denied", "default:EU")),
        ("NO", ("denied", "default:EU")),  # EEA
        ("GB", ("denied", "default:UK")),
        ("UK", ("denied", "default:UK")),
        ("US", ("granted", "default:*")),
        ("XX", ("granted", "default:*")),
        (None, ("granted", "default:*")),
    ],
)
def test_region_defaults(country: str | None, expected: tuple[str, str]) -> None:
    assert decide(ANALYTICS, ev(country)) == expected


def test_country_key_beats_group_and_eea_alias() -> None:
    p = Purpose("p", defaults={"DE": "granted", "EEA": "denied", "*": "granted"})
    assert decide(p, ev("DE")) == ("granted", "default:DE")
    assert decide(p, ev("FR")) == ("denied", "default:EEA")
    assert decide(p, ev("IS")) == ("denied", "default:EEA")
    p = Purpose("p", defaults={"GB": "granted", "UK": "denied"})
    assert decide(p, ev("UK")) == ("granted", "default:GB")


def test_no_matching_default_is_denied() -> None:
    p = Purpose("p", defaults={"EU": "granted"})
    assert decide(p, ev("US")) == ("denied", "default:none")
    assert region_default({}, "DE") == ("denied", "default:none")


def test_explicit_consent_wins() -> None:
    assert decide(ADS, ev("DE", {"ads": "granted"})) == ("granted", "explicit")
    assert decide(ADS, ev("US", {"ads": "denied"}, gpc=True)) == ("denied", "explicit")
    assert decide(ADS, ev("US", {"ads": "granted"}, gpc=True)) == ("granted", "explicit")
    assert decide(ADS, ev("DE", {"ads": True})) == ("granted", "explicit")
    # another purpose's consent does not count
    assert decide(ADS, ev("DE", {"analytics": "granted"})) == ("denied", "default:EU")


def test_gpc() -> None:
    assert decide(ADS, ev("US", gpc=True)) == ("denied", "gpc")
    assert decide(ADS, ev("US", gpc="1")) == ("denied", "gpc")
    assert decide(ADS, ev("US", gpc=False)) == ("granted", "default:*")
    # a purpose without gpc: ignores the signal
    assert decide(ANALYTICS, ev("US", gpc=True)) == ("granted", "default:*")


def test_event_without_context() -> None:
    assert decide(ADS, {"event": "e"}) == ("granted", "default:*")


def test_states_and_granted() -> None:
    purposes = {"analytics": ANALYTICS, "ads": ADS}
    event = ev("US", {"analytics": "denied"}, gpc=True)
    assert states(purposes, event) == {
        "analytics": ("denied", "explicit"),
        "ads": ("denied", "gpc"),
    }
    assert granted(purposes, ev("US")) == frozenset({"analytics", "ads"})
    assert granted(purposes, ev("FR")) == frozenset()
