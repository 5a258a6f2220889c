"""The record of processing (``relay datamap``), computed from the rules, never written.

Per destination: who receives the data, on which terms (purpose, legal basis, retention,
the purpose's consent defaults and GPC), which events, the steps of its pipeline, and every
field the recipient can receive, in the vendor's own names where the type maps events to a
vendor's format. For each event the destination takes:

    envelope(contract)        what the event can carry (``relay.datamap.envelope``)
      -> each step's paths    what the pipeline removes, adds or hashes (``relay.pipeline``)
      -> the type's fields    the vendor's names (``DestinationDef.fields``, ``FieldMap``)

and the destination's fields are those of all its events together; a field is ``hashed``
when every way it is produced hashes it. ``relay.datamap.render`` prints the map,
``relay.datamap.policy`` lints the rules with it.

    >>> entry = datamap(load_rules("rules")).destinations[0]
    >>> entry.name, entry.fields[:2], entry.hashed
    ('archive', ('anonymous_id', 'consent.*'), ('user.email', 'user.phone'))
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from relay.datamap.envelope import envelope
from relay.destinations import DESTINATIONS
from relay.fieldset import ANY, FieldSet, split
from relay.pipeline import STEPS
from relay.rules.model import Contract, Destination, Rules, Step
from relay.types import DestinationDef

SETTINGS = "settings."  # a FieldMap whose ``ours`` is a setting, not a field of the event
OPEN_EVENT = "*"  # the events without a contract, under ``events: {"*": accept}``


@dataclass(frozen=True, slots=True)
class Consent:
    gpc: str | None
    defaults: dict[str, str]


@dataclass(frozen=True, slots=True)
class Entry:
    """One destination in the record of processing (the JSON keys, in order)."""

    name: str
    type: str
    vendor: str
    purpose: str  # "" for a file or log destination without one (not consent-gated)
    legal_basis: str | None
    retention: str | None
    events: tuple[str, ...]
    fields: tuple[str, ...]
    hashed: tuple[str, ...]
    transforms: tuple[str, ...]
    consent: Consent

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "type": self.type, "vendor": self.vendor,
            "purpose": self.purpose, "legal_basis": self.legal_basis,
            "retention": self.retention, "events": list(self.events),
            "fields": list(self.fields), "hashed": list(self.hashed),
            "transforms": list(self.transforms),
            "consent": {"gpc": self.consent.gpc, "defaults": dict(self.consent.defaults)},
        }


@dataclass(frozen=True, slots=True)
class DataMap:
    rules_version: str
    destinations: tuple[Entry, ...]

    def to_json(self) -> dict[str, Any]:
        return {"rules_version": self.rules_version,
                "destinations": [e.to_json() for e in self.destinations]}


# -- the computation ----------------------------------------------------------------------


def taken(rules: Rules, dest: Destination) -> list[tuple[str, Contract | None]]:
    """The events ``dest`` takes, sorted, each with its contract (None: none, accepted by
    ``"*": accept``, listed as ``*`` when the destination takes every event)."""
    contracts = rules.events.contracts
    accept = rules.events.fallback == "accept"
    if dest.events is None:
        out: list[tuple[str, Contract | None]] = [(n, contracts[n]) for n in sorted(contracts)]
        return [*out, (OPEN_EVENT, None)] if accept else out
    return [(name, contracts.get(name)) for name in sorted(set(dest.events))
            if name in contracts or accept]


def steps_of(rules: Rules, dest: Destination) -> tuple[Step, ...]:
    return rules.pipelines[dest.pipeline].steps if dest.pipeline is not None else ()


def through(steps: Iterable[Step], fields: FieldSet) -> FieldSet:
    """``fields`` after ``steps`` (each step's ``paths``)."""
    for step in steps:
        fields = STEPS[step.kind].paths(fields, step.options)
    return fields


def sent(rules: Rules, dest: Destination, contract: Contract | None) -> FieldSet:
    """What an event under ``contract`` can carry out of ``dest``'s pipeline."""
    return through(steps_of(rules, dest), envelope(contract))


def _fill(theirs: str, bound: Iterable[str]) -> str:
    """``theirs`` with its ``*`` segments replaced by ``bound``, in order."""
    keys = iter(bound)
    return ".".join(next(keys, ANY) if part == ANY else part for part in theirs.split("."))


def received(kind: DestinationDef, settings: Any, fields: FieldSet,
             from_settings: bool = True) -> dict[str, bool]:
    """The recipient's field paths for an event carrying ``fields`` -> whether hashed:
    the vendor mapping's names, or (a type without one: file, log, webhook) the event's.
    ``from_settings=False`` leaves out what the mapping takes from the settings."""
    if kind.fields is None:
        return dict(fields.paths())
    out: dict[str, bool] = {}
    for fm in kind.fields(settings):
        finds: list[tuple[tuple[str, ...], bool]]
        if fm.ours.startswith(SETTINGS):
            finds = [((), False)] if from_settings else []
        else:
            finds = fields.match(fm.ours)
        for bound, hashed in finds:
            theirs = _fill(fm.theirs, bound)
            out[theirs] = out.get(theirs, True) and (hashed or fm.hashed)
    return out


def carried(kind: DestinationDef, settings: Any, fields: FieldSet,
            path: str) -> list[tuple[str, bool]]:
    """Where the event's field ``path`` (no ``*``) reaches the recipient: per place, the
    recipient's path and whether it arrives hashed. Empty when it never does."""
    node = fields.get(path)
    if node is None:
        return []
    hashed = getattr(node, "hashed", False)
    if kind.fields is None:
        return [(path, hashed)]
    keys = path.split(".")
    out = []
    for fm in kind.fields(settings):
        pattern = split(fm.ours)
        if len(pattern) <= len(keys) and all(p in (ANY, k) for p, k in zip(pattern, keys,
                                                                          strict=False)):
            bound = [k for p, k in zip(pattern, keys, strict=False) if p == ANY]
            out.append((_fill(fm.theirs, bound), hashed or fm.hashed))
    return out


def entry(rules: Rules, dest: Destination) -> Entry:
    kind = DESTINATIONS[dest.type]
    events = taken(rules, dest)
    fields: dict[str, bool] = {}
    for _, contract in events:
        for path, hashed in received(kind, dest.settings, sent(rules, dest, contract)).items():
            fields[path] = fields.get(path, True) and hashed
    purpose = rules.purposes.get(dest.purpose) if dest.purpose is not None else None
    return Entry(
        name=dest.name, type=dest.type, vendor=kind.vendor, purpose=dest.purpose or "",
        legal_basis=dest.legal_basis, retention=dest.retention,
        events=tuple(name for name, _ in events),
        fields=tuple(sorted(fields)), hashed=tuple(sorted(p for p, h in fields.items() if h)),
        transforms=tuple(step.kind for step in steps_of(rules, dest)),
        consent=Consent(purpose.gpc if purpose else None,
                        dict(sorted(purpose.defaults.items())) if purpose else {}),
    )


def datamap(rules: Rules) -> DataMap:
    """The record of processing of ``rules``, destinations by name."""
    return DataMap(rules.version, tuple(entry(rules, rules.destinations[name])
                                        for name in sorted(rules.destinations)))
