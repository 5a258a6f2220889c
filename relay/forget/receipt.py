"""The receipt of ``relay forget``: its JSON shape, its exit code, its text for people.

    {"subject": "<keyed hash>",
     "relay": {"spool": 1, "dead_letters": 0, "held": 1, "ledger": 3, "quarantined": 0,
               "events": 3, "complete": true, "problems": []},
     "destinations": [{"name": "posthog", "type": "posthog", "status": "requested",
                       "detail": "..."}]}
"""

from __future__ import annotations

from typing import Any

STATUSES = ("deleted", "requested", "manual", "failed", "not_applicable")


def exit_code(receipt: dict[str, Any]) -> int:
    """0 when the relay part completed and no destination failed, else 1."""
    relay = receipt.get("relay") or {}
    failed = any(d.get("status") == "failed" for d in receipt.get("destinations", []))
    return 0 if relay.get("complete") and not failed else 1


def render_text(receipt: dict[str, Any]) -> str:
    """The receipt for people: the relay's counts, then one line per destination."""
    relay = receipt["relay"]
    lines = [
        f"subject {receipt['subject']} (a keyed hash: the relay never shows the identifier)",
        f"relay: {relay['events']} event(s) found; deleted {relay['spool']} spooled"
        f" cop(ies), {relay['dead_letters']} dead letter(s), {relay['held']} held or waiting"
        f" cop(ies), {relay['quarantined']} quarantined event(s), {relay['ledger']} ledger"
        " link(s)",
    ]
    lines += [f"relay: NOT COMPLETE: {p}" for p in relay["problems"]]
    width = max((len(d["name"]) for d in receipt["destinations"]), default=0)
    for d in receipt["destinations"]:
        lines.append(f"{d['name']:<{width}}  {d['status']:<14}  {d['detail']}")
    if exit_code(receipt):
        lines.append("not done: see the lines above (relay forget can be run again)")
    return "\n".join(lines)
