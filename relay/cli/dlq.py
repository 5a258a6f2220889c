"""``relay dlq list|replay|purge``: dead letters, through the running relay's admin listener
(``GET /dlq``, ``/dlq/count``, ``POST /dlq/replay``, ``/dlq/purge``) when one answers at
the rules' admin address, else in the spool under ``--var``."""

from __future__ import annotations

import argparse
import asyncio
import sys

import httpx
import orjson

from relay.cli.admin import AdminClient, AdminRefused, running_relay
from relay.cli.common import load, placed
from relay.errors import SpoolUnavailable
from relay.spool.base import Spool
from relay.spool.factory import spool_for

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

    try:
        admin = running_relay(rules, args.admin_port)
    except AdminRefused as exc:
        print(f"dlq: {exc}", file=sys.stderr)
        return 1
    if admin is not None:
        try:
            return _through(admin, args)
        except (AdminRefused, httpx.HTTPError) as exc:
            print(f"dlq: {exc}", file=sys.stderr)
            return 1
        finally:
            admin.close()

    async def run() -> int:
        spool = spool_for(rules.relay)
        try:
            await spool.start()
        except SpoolUnavailable as exc:  # a Redis that does not answer, a file it cannot open
            print(f"dlq: the spool cannot be opened: {exc}", file=sys.stderr)
            return 1
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


def _through(admin: AdminClient, args: argparse.Namespace) -> int:
    """The same actions on the running relay's spool, through its admin listener."""
    dest = args.destination
    if args.action == "list":
        params: dict[str, str | int] = {"limit": args.limit}
        if dest:
            params["destination"] = dest
        letters = admin.call("GET", "/dlq", params=params)
        for d in letters:
            print(orjson.dumps(d).decode())
        print(f"{len(letters)} dead letter(s) (from the running relay at {admin.base})",
              file=sys.stderr)
        return 0
    if args.action == "replay":
        n = admin.call("POST", "/dlq/replay", json={"destination": dest})["replayed"]
        print(f"replayed {n} dead letter(s) through the running relay; it delivers them")
        return 0
    counted = admin.call("GET", "/dlq/count", params={"destination": dest} if dest else {})
    if not _confirmed(int(counted["count"]), dest, args.yes):
        return 0 if counted["count"] == 0 else 1
    n = admin.call("POST", "/dlq/purge", json={"destination": dest,
                                                "through": counted["last"]})["purged"]
    print(f"purged {n} dead letter(s) through the running relay")
    return 0


def _confirmed(count: int, destination: str | None, yes: bool) -> bool:
    """Whether to purge ``count`` dead letters: asked on a terminal unless ``yes`` (says
    why not otherwise)."""
    where = destination or "all destinations"
    if count == 0:
        print(f"no dead letters of {where}: nothing to purge")
        return False
    question = f"purge {count} dead letter(s) of {where}? [y/N] "
    if not yes:
        if not sys.stdin.isatty():
            print(f"dlq: not purging {count} dead letter(s) of {where} without confirmation, "
                  "and there is no terminal to ask on: pass --yes to purge without asking",
                  file=sys.stderr)
            return False
        print(question, end="", file=sys.stderr, flush=True)
        if sys.stdin.readline().strip().lower() not in YES:
            print("nothing purged", file=sys.stderr)
            return False
    return True


async def _purge(spool: Spool, destination: str | None, yes: bool) -> int:
    """Purge what was counted, after asking on a terminal (``--yes`` does not ask)."""
    count, last = await spool.dlq_count(destination)
    if not _confirmed(count, destination, yes):
        return 0 if count == 0 else 1
    n = await spool.dlq_purge(destination, through=last)
    print(f"purged {n} dead letter(s)")
    return 0
