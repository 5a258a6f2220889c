"""``relay trace EVENT_ID``: every hop of one event, from the delivery ledger under --var.

JSON (``--format json``) is ``{"event_id", "hops": [{"at", "hop", "source", "event",
"destination", "purpose", "status", "attempt", "reason", "fields"}]}`` in time order; text
is one line a hop. An id the ledger does not know exits 1 with one line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from relay.cli.common import load, placed
from relay.ledger import Ledger, LedgerUnreadable, open_ledger
from relay.rules.model import Rules


def rules_ledger(rules: Rules, command: str) -> Ledger | None:
    """The ledger of ``rules`` (placed under --var; a shared PostgreSQL ledger holds every
    replica's hops), or None after saying why there is none."""
    ledger = rules.relay.ledger
    if ledger.url is None:
        print(f"relay {command}: the ledger is off (relay.ledger: off in the rules)",
              file=sys.stderr)
        return None
    found = open_ledger(ledger.url, ledger.retention)
    if not found.present():
        print(f"relay {command}: no ledger at {found.where} (has relay serve run with this"
              f" --var?)", file=sys.stderr)
        return None
    return found


def _line(hop: dict[str, Any]) -> str:
    parts = [hop["at"], f"{hop['hop']:<13}"]
    for key in ("destination", "source", "event", "purpose", "status", "attempt", "reason"):
        if hop.get(key) is not None:
            parts.append(f"{key}={hop[key]}")
    if hop.get("fields"):
        parts.append(f"fields={','.join(hop['fields'])}")
    return "  ".join(str(p) for p in parts)


def cmd_trace(args: argparse.Namespace) -> int:
    loaded = load(args.rules, warnings=sys.stderr)
    if loaded is None:
        return 1
    ledger = rules_ledger(placed(loaded, args.var), "trace")
    if ledger is None:
        return 1

    async def run() -> list[dict[str, Any]]:
        await ledger.start()
        try:
            return await ledger.trace(args.event_id)
        finally:
            await ledger.close()

    try:
        hops = asyncio.run(run())
    except LedgerUnreadable as exc:
        print(f"relay trace: cannot read the ledger {ledger.where}: {exc}", file=sys.stderr)
        return 1
    if not hops:
        print(f"relay trace: no event {args.event_id!r} in the ledger (or it is past the"
              f" retention)", file=sys.stderr)
        return 1
    if args.format == "json":
        print(orjson.dumps({"event_id": args.event_id, "hops": hops}).decode())
    else:
        for hop in hops:
            print(_line(hop))
    return 0
