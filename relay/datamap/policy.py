"""The privacy lint: what validates but sends personal data where or how it should not,
computed with the datamap. Warnings, R302 to R308 (``relay check --strict`` makes them
errors); ``relay.registry`` hands ``check`` to the rules loader in its ``Catalog``.

    R302  an ad platform's data under a purpose that is not an ads purpose
    R303  a raw email address or phone number reaches a destination
    R304  the user's whole IP address reaches an ad platform
    R305  a destination without legal_basis
    R306  a destination without retention
    R307  a purpose granted by default in the EEA, not marked essential
    R308  an open contract's undeclared properties reach a vendor

The words, as docs/errors.md defines them:

- an *ads purpose* has ``gpc: denied`` (Global Privacy Control opts out of it: it is about
  selling or sharing data for advertising), or a name with the word ``ads``, ``ad``,
  ``advertising`` or ``marketing`` in it (``ads``, ``paid_ads``, ``marketing``);
- an *ad platform* is a destination type whose ``DestinationDef.ads`` says what it sends for
  advertising: ``meta_capi`` and ``tiktok`` everything, under the destination's purpose;
  ``ga4`` its ``user_data`` (for Google Ads), under the purpose ``settings.ad_consent``;
- a *vendor* destination maps events to a vendor's format (``DestinationDef.fields``): every
  type but ``file``, ``log`` and ``webhook``.

    rules/destinations.yaml:12:14: R302 destinations.meta.purpose: destination 'meta':
        Meta (Conversions API) receives its data for advertising, but purpose 'analytics'
        is not an ads purpose (...)
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from relay.datamap import OPEN_EVENT, carried, received, sent, steps_of, taken, through
from relay.destinations import DESTINATIONS
from relay.engine.consent import EEA_COUNTRIES, region_default
from relay.fieldset import LEAF, Branch, FieldSet
from relay.pipeline.ip import IpOptions
from relay.rules.codes import (
    ADS_WITHOUT_ADS_PURPOSE,
    GRANTED_IN_EU,
    IP_TO_ADS,
    NO_LEGAL_BASIS,
    NO_RETENTION,
    OPEN_CONTRACT_TO_VENDOR,
    UNHASHED_IDENTIFIER,
)
from relay.rules.diagnostics import Path, Reporter
from relay.rules.model import Destination, Purpose, Rules
from relay.types import AdUse, DestinationDef

ADS_WORDS = frozenset({"ads", "ad", "advertising", "marketing"})
IDENTIFIERS = ("user.email", "user.phone")
IP = "context.ip"
SHOWN = 4  # field names a message lists before "and N more"


def is_ads_purpose(purpose: Purpose) -> bool:
    """Whether ``purpose`` is for advertising (see the module's docstring)."""
    words = set(re.split(r"[^a-z0-9]+", purpose.name.lower()))
    return purpose.gpc == "denied" or not ADS_WORDS.isdisjoint(words)


def _listed(names: Iterable[str]) -> str:
    names = sorted(set(names))
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def _within(path: str, prefixes: tuple[str, ...]) -> bool:
    return not prefixes or any(path == p or path.startswith((p + ".", p + "[]"))
                               for p in prefixes)


def _recipient(dest: Destination, kind: DestinationDef) -> str:
    return f"destination '{dest.name}'" + (f" ({kind.vendor})" if kind.fields else "")


def _pipeline_hint(dest: Destination, step: str) -> str:
    if dest.pipeline is None:
        return f"give it a pipeline with `- {step}`"
    return f"add `- {step}` to pipeline '{dest.pipeline}'"


def _pipeline_at(dest: Destination) -> tuple[Path, bool]:
    """Where a missing step is reported: the destination's ``pipeline`` value, or its key."""
    if dest.pipeline is None:
        return ("destinations", dest.name), True
    return ("destinations", dest.name, "pipeline"), False


def check(rules: Rules, rep: Reporter) -> None:
    """Report every R302-R308 warning of ``rules`` (rules without errors)."""
    for name in sorted(rules.destinations):
        dest = rules.destinations[name]
        kind = DESTINATIONS[dest.type]
        _record(dest, rep)
        _identifiers(rules, dest, kind, rep)
        if kind.ads is not None:
            use = kind.ads(dest.settings)
            _ads_purpose(rules, dest, kind, use, rep)
            _ip(rules, dest, kind, use, rep)
        if kind.fields is not None:
            _open_contracts(rules, dest, kind, rep)
    for purpose in rules.purposes.values():
        _eea_default(rules, purpose, rep)


def _record(dest: Destination, rep: Reporter) -> None:
    """R305, R306: what the record of processing must say about every destination."""
    at = ("destinations", dest.name)
    if dest.legal_basis is None:
        rep.warning(at, NO_LEGAL_BASIS, f"destination '{dest.name}' has no legal_basis: the "
                    "record of processing (relay datamap) cannot say why it receives data",
                    "add legal_basis: consent (or contract, legal_obligation, "
                    "vital_interests, public_task, legitimate_interests)", key=True)
    if dest.retention is None:
        rep.warning(at, NO_RETENTION, f"destination '{dest.name}' has no retention: the "
                    "record of processing (relay datamap) cannot say how long the recipient "
                    "keeps the data", "add retention: what the recipient keeps it for, like "
                    "'14 months'", key=True)


def _identifiers(rules: Rules, dest: Destination, kind: DestinationDef,
                 rep: Reporter) -> None:
    """R303: ``user.email`` or ``user.phone`` reaching the recipient unhashed."""
    raw: dict[str, set[str]] = {}
    for _, contract in taken(rules, dest):
        fields = sent(rules, dest, contract)
        for path in IDENTIFIERS:
            raw.setdefault(path, set()).update(
                theirs for theirs, hashed in carried(kind, dest.settings, fields, path)
                if not hashed)
    at, key = _pipeline_at(dest)
    for path in IDENTIFIERS:
        if raw.get(path):
            as_ = f" (as {_listed(raw[path])})" if kind.fields is not None else ""
            rep.warning(at, UNHASHED_IDENTIFIER,
                        f"{_recipient(dest, kind)} receives {path} unhashed{as_}",
                        f"hash it: {_pipeline_hint(dest, f'hash: [{path}]')}, or drop it",
                        key=key)


def _ads_purpose(rules: Rules, dest: Destination, kind: DestinationDef, use: AdUse,
                 rep: Reporter) -> None:
    """R302: what an ad platform sends for advertising, under a purpose that is not one."""
    name = use.purpose or dest.purpose
    purpose = rules.purposes.get(name) if name is not None else None
    if purpose is None or is_ads_purpose(purpose):
        return  # (a purpose the rules lack is never granted: nothing is sent for ads)
    ad_fields: set[str] = set()
    for _, contract in taken(rules, dest):
        fields = received(kind, dest.settings, sent(rules, dest, contract))
        ad_fields.update(p for p in fields if _within(p, use.fields))
    if not ad_fields:
        return
    if use.purpose is None:
        at: Path = ("destinations", dest.name, "purpose")
        what = f"{kind.vendor} receives its data for advertising"
    else:
        at = ("destinations", dest.name, "settings", use.setting or "") if use.setting \
            else ("destinations", dest.name, "type")
        what = f"{kind.vendor} receives {_listed(ad_fields)} for advertising"
    rep.warning(at, ADS_WITHOUT_ADS_PURPOSE,
                f"destination '{dest.name}': {what}, but purpose '{purpose.name}' is not an "
                "ads purpose", "gate it by a purpose for advertising: one with gpc: denied, "
                "or named for ads or marketing (the shipped 'ads')")


def _ip(rules: Rules, dest: Destination, kind: DestinationDef, use: AdUse,
        rep: Reporter) -> None:
    """R304: the whole IP address reaching what an ad platform uses for advertising."""
    steps = [s for s in steps_of(rules, dest) if s.kind == "ip"]
    last = steps[-1] if steps else None
    if last is not None and isinstance(last.options, IpOptions) and last.options.mode != "keep":
        return  # truncated or stripped
    places: set[str] = set()
    for _, contract in taken(rules, dest):
        fields = sent(rules, dest, contract)
        places.update(p for p, _ in carried(kind, dest.settings, fields, IP)
                      if _within(p, use.fields))
    if not places:
        return
    if last is not None:
        at, key = (*last.path, "ip"), False
    else:
        at, key = _pipeline_at(dest)
    rep.warning(at, IP_TO_ADS,
                f"destination '{dest.name}': {kind.vendor} receives the user's whole IP address "
                f"({_listed(places)}) for advertising",
                f"truncate it: {_pipeline_hint(dest, 'ip: truncate')}"
                + (" instead of ip: keep" if last is not None else ""), key=key)


def _open_contracts(rules: Rules, dest: Destination, kind: DestinationDef,
                    rep: Reporter) -> None:
    """R308: an open contract whose undeclared properties reach the vendor."""
    for event, contract in taken(rules, dest):
        if contract is not None and contract.additional_properties != "keep":
            continue
        # Only the undeclared properties, through the pipeline and the mapping.
        declared = dict.fromkeys(contract.properties if contract else ())
        undeclared = FieldSet(Branch({"properties": Branch(declared, other=LEAF)}))
        extra = received(kind, dest.settings, through(steps_of(rules, dest), undeclared),
                         from_settings=False)
        if not extra:
            continue
        entry = event if contract is not None else OPEN_EVENT
        what = (f"event '{event}' has an open contract (additional_properties: keep)"
                if contract is not None else
                "events without a contract are accepted (\"*\": accept)")
        rep.warning(("events", entry), OPEN_CONTRACT_TO_VENDOR,
                    f"{what}: any property, a name or an address too, reaches "
                    f"{_recipient(dest, kind)} as {_listed(extra)}, and no allow step in its "
                    "pipeline stops it",
                    "declare the properties and set additional_properties: drop, or list "
                    f"what it may receive: {_pipeline_hint(dest, 'allow: [...]')}", key=True)


def _eea_default(rules: Rules, purpose: Purpose, rep: Reporter) -> None:
    """R307: granted by default somewhere in the EEA, for a purpose not marked essential."""
    if purpose.essential:
        return
    by_key: dict[str, list[str]] = {}
    for country in sorted(EEA_COUNTRIES):
        state, why = region_default(purpose.defaults, country)
        if state == "granted":
            by_key.setdefault(why.partition(":")[2], []).append(country)
    raw = rules.raw.get("purposes", {}).get(purpose.name)
    written = isinstance(raw, dict) and isinstance(raw.get("default"), dict)
    for key, countries in by_key.items():
        where = "in the EEA" if len(countries) == len(EEA_COUNTRIES) else \
            f"in {_listed(countries)}"
        source = "with no default" if not written else (
            "by '*', with no EU key" if key == "*" else f"by {key}: granted")
        at: Path = ("purposes", purpose.name, "default", key) if written \
            else ("purposes", purpose.name)
        rep.warning(at, GRANTED_IN_EU,
                    f"purpose '{purpose.name}' is granted by default {where} ({source}), where "
                    "what is not strictly necessary needs the user's opt-in",
                    "set EU: denied under default, or mark the purpose essential: true if it "
                    "is strictly necessary for what the user asked for", key=not written)
