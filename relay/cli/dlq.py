"""``relay dlq list|replay|purge``: dead letters, in the spool under ``--var``."""

from __future__ import annotations

import argparse
import asyncio
import sys

import orjson

from relay.cli.common import load, placed
from relay.spool.base import Spool
from relay.spool.factory import open_spool

YES = ("y", "yes")


def cmd_dlq(args: argparse.Namespace) -> int:
    loaded = load(args.rules, warnings=sys.stderr)  # stdout is the dead letters
    if loaded is None:
        return 1
    rules = placed(loaded, args.var)
    if args.destination and args.destination not in rules.destinations:
        print(
            f"dlq: no destination named '{args.destination}' "
            f"(known: {', '.join(rules.destinations) or 'none'})",
            file=sys.stderr,
        )
        return 1

    async def run() -> int:
        spool = open_spool(rules.relay.spool)
        await spool.start()
        try:
            if args.action == "list":
                letters = await spool.dlq_list(args.destination, args.limit)
                for d in letters:
                    print(orjson.dumps(d.summary()).decode())
                print(f"{len(letters)} dead letter(s)", file=sys.stderr)
            elif args.action == "replay":
                n = await spool.dlq_replay(args.destination)
                print(f"replayed {n} dead letter(s); the running relay delivers them")
            else:
                return await _purge(spool, args.destination, args.yes)
        finally:
            await spool.close()
        return 0

    return asyncio.run(run())


async def _purge(spool: Spool, destination: str | None, yes: bool) -> int:
    """Purge what was counted, after asking on a terminal (``--yes`` does not ask)."""
    count, last = await spool.dlq_count(destination)
    where = destination or "all destinations"
    if count == 0:
        print(f"no dead letters of {where}: nothing to purge")
        return 0
    question = f"purge {count} dead letter(s) of {where}? [y/N] "
    if not yes:
        if not sys.stdin.isatty():
            print(f"dlq: not purging {count} dead letter(s) of {where} without confirmation, "
                  "and there is no terminal to ask on: pass --yes to purge without asking",
                  file=sys.stderr)
            return 1
        print(question, end="", file=sys.stderr, flush=True)
        if sys.stdin.readline().strip().lower() not in YES:
            print("nothing purged", file=sys.stderr)
            return 1
    n = await spool.dlq_purge(destination, through=last)
    print(f"purged {n} dead letter(s)")
    return 0
