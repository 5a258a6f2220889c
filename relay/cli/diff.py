"""``relay diff --rules NEW [--against OLD] --events FILE.jsonl``: shadow mode."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import orjson

from relay.cli.common import load
from relay.shadow import diff, read_lines


def cmd_diff(args: argparse.Namespace) -> int:
    after = load(args.rules, warnings=sys.stderr)
    before = load(args.against, warnings=sys.stderr)
    if after is None or before is None:
        return 1
    path = Path(args.events)
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        print(f"relay diff: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    report = asyncio.run(diff(before, after, read_lines(lines)))
    if args.format == "json":
        print(orjson.dumps(report.as_json()).decode())
    else:
        for c in report.changes:
            line = f"{c.event_id}  {c.destination}: {c.before} -> {c.after}"
            if c.fields_added:
                line += f"  +{','.join(c.fields_added)}"
            if c.fields_removed:
                line += f"  -{','.join(c.fields_removed)}"
            print(line)
        print(f"{report.events} event(s), {len(report.changes)} change(s)"
              f"{f', {len(report.skipped)} line(s) skipped' if report.skipped else ''}",
              file=sys.stderr)
    for why in report.skipped:
        print(f"relay diff: skipped {why}", file=sys.stderr)
    return 0
