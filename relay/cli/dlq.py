"""``relay dlq list|replay|purge``: dead letters."""

from __future__ import annotations

import argparse
import asyncio
import sys

import orjson

from relay.cli.common import load, placed
from relay.spool.factory import open_spool


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
                n = await spool.dlq_purge(args.destination)
                print(f"purged {n} dead letter(s)")
        finally:
            await spool.close()
        return 0

    return asyncio.run(run())
