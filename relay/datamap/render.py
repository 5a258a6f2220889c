"""The datamap as JSON (the documented contract) or Markdown (a document for people: one
section per destination, its terms in one table and its fields in another)."""

from __future__ import annotations

import json
import textwrap
from typing import Any

from relay.datamap import DataMap, Entry
from relay.rules.model import Rules

MASK = "***"
WIDTH = 96  # the intro's lines


def to_json(dmap: DataMap) -> str:
    return json.dumps(dmap.to_json(), indent=2, ensure_ascii=False) + "\n"


def _flow(value: Any) -> str:
    """A step's options as YAML flow: ``{keep_params: [utm_source, utm_medium]}``."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _step(rules: Rules, entry: Entry, index: int) -> str:
    """Step ``index`` of the entry's pipeline as written (options under a ``${VAR}``
    masked)."""
    dest = rules.destinations[entry.name]
    kind = entry.transforms[index]
    raw = rules.raw.get("pipelines", {}).get(dest.pipeline, [])
    item = raw[index] if index < len(raw) and isinstance(raw[index], dict) else {}
    where = ("pipelines", dest.pipeline, index)
    if kind not in item or any(p[:3] == where for p in rules.secret_paths):
        return f"`{kind}: {MASK}`" if kind in item else f"`{kind}`"
    return f"`{kind}: {_flow(item[kind])}`"


def _defaults(defaults: dict[str, str]) -> str:
    named = [f"`{region}` {state}" for region, state in defaults.items() if region != "*"]
    if "*" in defaults:
        named.append(f"elsewhere (`*`) {defaults['*']}")
    return ", ".join(named) or "denied everywhere (no default)"


def _terms(rules: Rules, entry: Entry) -> list[tuple[str, str]]:
    purpose = rules.purposes.get(entry.purpose)
    if purpose is None:
        about = "none: not consent-gated"
        consent, gpc = "not asked", "no effect"
    else:
        about = _code(purpose.name) + (f": {purpose.description}" if purpose.description
                                       else "")
        if purpose.essential:
            about += " (strictly necessary)"
        consent = _defaults(entry.consent.defaults)
        gpc = (f"`Sec-GPC: 1` makes it {entry.consent.gpc} unless the user chose"
               if entry.consent.gpc else "no effect")
    dest = rules.destinations[entry.name]
    steps = ", ".join(_step(rules, entry, i) for i in range(len(entry.transforms)))
    return [
        ("Recipient", entry.vendor or "not stated"),
        ("Type", _code(entry.type)),
        ("Purpose", about),
        ("Legal basis", entry.legal_basis or "**not stated**"),
        ("Retention", entry.retention or "**not stated**"),
        ("Consent by default", consent),
        ("Global Privacy Control", gpc),
        ("Events", ", ".join(_code(e) for e in entry.events) or "none"),
        ("Pipeline", f"`{dest.pipeline}`: {steps}" if dest.pipeline else "none"),
    ]


def to_markdown(dmap: DataMap, rules: Rules) -> str:
    """The record of processing as a Markdown document."""
    intro = (
        f"Computed by `relay datamap` from the rules (version `{dmap.rules_version}`), never "
        "written by hand: for each destination, who receives the data, why, for how long, "
        "and every field it can receive, in the recipient's own names where the destination "
        "maps events to a vendor's format. A field covers everything below it; `*` stands for "
        "any other key and `[]` for a list. A hashed field arrives as the SHA-256 of its "
        "normalized value.")
    lines = ["# Record of processing", "", textwrap.fill(intro, WIDTH)]
    if not dmap.destinations:
        lines += ["", "The rules define no destination."]
    for entry in dmap.destinations:
        lines += ["", f"## {entry.name}", "", "| | |", "|---|---|"]
        lines += [f"| {name} | {_cell(value)} |" for name, value in _terms(rules, entry)]
        hashed = set(entry.hashed)
        lines += ["", f"Fields received ({len(entry.fields)}, {len(hashed)} hashed):", ""]
        if entry.fields:
            lines += ["| field | hashed |", "|---|---|"]
            lines += [f"| `{_cell(f)}` | {'yes' if f in hashed else ''} |"
                      for f in entry.fields]
        else:
            lines.append("None.")
    return "\n".join(lines) + "\n"
