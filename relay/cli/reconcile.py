"""``relay reconcile``: browser vs backend vs delivered counts, from the delivery ledger.

The numbers are ``relay.ledger.reconcile``'s (docs/cli.md defines each); this module
parses the arguments and prints them: ``json`` (``{"since", "by", "rows"}``), ``csv`` (a
header row, then the rows) or ``text`` (an aligned table with a total line).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import sys
import time
from collections.abc import Sequence

import orjson

from relay.cli.common import load, placed
from relay.cli.trace import rules_ledger
from relay.ledger import LedgerUnreadable
from relay.ledger.base import iso
from relay.ledger.reconcile import (
    COLUMNS,
    NO_DESTINATION,
    Row,
    Tally,
    kinds_of,
    parse_by,
    parse_since,
    report,
    rows,
    tally,
    total,
)

FORMATS = ("text", "json", "csv")


def since_arg(text: str) -> float:
    """An argparse type: ``--since`` as Unix seconds (``relay.ledger.reconcile.parse_since``)."""
    try:
        return parse_since(text, time.time())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def by_arg(text: str) -> tuple[str, ...]:
    """An argparse type: ``--by`` as a tuple of keys."""
    try:
        return parse_by(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def text_table(counted: Tally, by: Sequence[str], since: float) -> str:
    """The table people read: the rows, then a total line counting each receive once."""
    head = [*by, *COLUMNS] if by else ["", *COLUMNS]
    last = total(counted)
    body: list[list[str]] = [
        [str(row[k]) for k in by] + [str(row[c]) for c in COLUMNS] for row in rows(counted, by)
    ] if by else []
    body.append(["total"] + [""] * (len(by) - 1) + [str(last[c]) for c in COLUMNS])
    keys = max(len(by), 1)
    widths = [max(len(line[i]) for line in (head, *body)) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i < keys else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [f"since {iso(since)} (UTC), by {', '.join(by) or 'nothing (one total)'}",
           line(head), *(line(cells) for cells in body)]
    if "destination" in by:
        out.append(f"(on a destination's row browser and backend count its copies; "
                   f"{NO_DESTINATION}: events with none; the total counts each event once)")
    return "\n".join(out)


def csv_table(found: list[Row], by: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*by, *COLUMNS])
    for row in found:
        writer.writerow([row[k] for k in (*by, *COLUMNS)])
    return buffer.getvalue().rstrip("\n")


def cmd_reconcile(args: argparse.Namespace) -> int:
    loaded = load(args.rules, warnings=sys.stderr)
    if loaded is None:
        return 1
    rules = placed(loaded, args.var)
    ledger = rules_ledger(rules, "reconcile")
    if ledger is None:
        return 1
    kinds = kinds_of({s.name: s.type for s in rules.sources.values()})
    since: float = args.since
    by: tuple[str, ...] = args.by
    try:
        counted = asyncio.run(tally(ledger, since, kinds))
    except LedgerUnreadable as exc:
        print(f"relay reconcile: cannot read the ledger {ledger.where}: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(orjson.dumps(report(counted, since, by)).decode())
    elif args.format == "csv":
        print(csv_table(rows(counted, by), by))
    else:
        print(text_table(counted, by, since))
    return 0
