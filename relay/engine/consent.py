"""Consent per purpose: explicit choice, then Global Privacy Control, then the region default.

    >>> ads = Purpose("ads", defaults={"EU": "denied", "*": "granted"}, gpc="denied")
    >>> decide(ads, {"context": {"country": "DE"}})
    ('denied', 'default:EU')
    >>> decide(ads, {"consent": {"ads": "granted"}, "context": {"country": "DE"}})
    ('granted', 'explicit')

Region keys in ``Purpose.defaults`` are ISO country codes or the groups ``EU`` / ``EEA`` (the
same set: EU 27 plus Iceland, Liechtenstein and Norway) and ``UK`` (= ``GB``); ``*`` is
everyone else. A country key beats a group key, a group key beats ``*``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from relay.rules.model import ConsentState, Purpose
from relay.types import Event

EU_COUNTRIES: Final = frozenset(
    {
        "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
        "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
    }
)  # fmt: skip
EEA_COUNTRIES: Final = EU_COUNTRIES | {"IS", "LI", "NO"}
# Region group name -> member countries. "EU" and "EEA" both mean the EEA: consent law
# (GDPR, ePrivacy) applies the same way in all of it.
REGION_GROUPS: Final[dict[str, frozenset[str]]] = {
    "EU": EEA_COUNTRIES,
    "EEA": EEA_COUNTRIES,
    "UK": frozenset({"GB"}),
}

Decision = tuple[ConsentState, str]


def _explicit(value: Any) -> ConsentState | None:
    if value == "granted" or value is True:
        return "granted"
    if value == "denied" or value is False:
        return "denied"
    return None


def gpc_on(context: Any) -> bool:
    """Whether the event carries a Global Privacy Control signal (``Sec-GPC: 1``)."""
    if not isinstance(context, dict):
        return False
    gpc = context.get("gpc")
    return gpc is True or gpc == "1" or (gpc == 1 and not isinstance(gpc, bool))


def region_default(defaults: Mapping[str, ConsentState], country: Any) -> Decision:
    """The default for ``country``: its own key, then its group, then ``*``."""
    code = country.strip().upper() if isinstance(country, str) else ""
    if code == "UK":
        code = "GB"
    if code:
        state = defaults.get(code)
        if state is not None:
            return state, f"default:{code}"
        if code == "GB":
            state = defaults.get("UK")
            if state is not None:
                return state, "default:UK"
        elif code in EEA_COUNTRIES:
            for group in ("EU", "EEA"):
                state = defaults.get(group)
                if state is not None:
                    return state, f"default:{group}"
    state = defaults.get("*")
    if state is not None:
        return state, "default:*"
    return "denied", "default:none"


def decide(purpose: Purpose, event: Event) -> Decision:
    """The consent state of ``purpose`` for ``event``, and why.

    Reasons: ``explicit`` (the event's ``consent``), ``gpc`` (``context.gpc`` and the purpose
    sets ``gpc:``), ``default:<region>``, or ``default:none`` (denied: no default matched).
    """
    consent = event.get("consent")
    if isinstance(consent, dict):
        state = _explicit(consent.get(purpose.name))
        if state is not None:
            return state, "explicit"
    context = event.get("context")
    if purpose.gpc is not None and gpc_on(context):
        return purpose.gpc, "gpc"
    country = context.get("country") if isinstance(context, dict) else None
    return region_default(purpose.defaults, country)


def states(purposes: Mapping[str, Purpose], event: Event) -> dict[str, Decision]:
    """``decide`` for every purpose, by purpose name."""
    return {name: decide(purpose, event) for name, purpose in purposes.items()}


def granted(purposes: Mapping[str, Purpose], event: Event) -> frozenset[str]:
    """The names of the purposes granted for ``event`` (for ``StepContext.granted``)."""
    return frozenset(
        name for name, purpose in purposes.items() if decide(purpose, event)[0] == "granted"
    )
