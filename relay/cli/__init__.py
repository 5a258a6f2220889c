"""``relay``: the command line. Thin: parse arguments, call the package's functions.

One module per group of commands: ``rules`` (check, test), ``serve``, ``dlq``; ``worker`` is
the app ``relay serve --workers N`` starts in each worker process.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from relay.cli.common import DEFAULT_RULES, DEFAULT_VAR
from relay.cli.dlq import cmd_dlq
from relay.cli.rules import cmd_check, cmd_test
from relay.cli.serve import DEFAULT_HOST, DEFAULT_PORT, cmd_serve


def cmd_demo(args: argparse.Namespace) -> int:
    from relay.demo.app import serve

    return serve(args.host, args.port)


NOT_YET = {
    "datamap": "the record of processing",
    "trace": "per-event hop tracing",
    "reconcile": "browser/backend/delivered reconciliation",
    "forget": "deletion requests",
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="relay", description="A first-party edge relay for web tracking."
    )
    sub = p.add_subparsers(dest="command", required=True)

    def with_rules(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument(
            "--rules",
            default=os.environ.get("RELAY_RULES", DEFAULT_RULES),
            help="rules directory (default: ./rules)",
        )
        sp.add_argument(
            "--var",
            default=os.environ.get("RELAY_VAR", DEFAULT_VAR),
            help="where the relay keeps its state: the cookie secret, the SQLite spool, "
            "file destinations' relative paths (default: ./var)",
        )
        return sp

    s = with_rules(sub.add_parser("serve", help="run the relay under hypercorn"))
    s.add_argument("--host", default=DEFAULT_HOST)
    s.add_argument("--port", type=int, default=DEFAULT_PORT)
    s.add_argument("--admin-port", type=int, default=None)
    s.add_argument("--workers", type=int, default=1)
    s.set_defaults(func=cmd_serve)
    c = with_rules(sub.add_parser("check", help="validate the rules"))
    c.add_argument("--strict", action="store_true",
                   help="treat every warning as an error (exit 1), policy warnings included")
    c.set_defaults(func=cmd_check)
    with_rules(sub.add_parser("test", help="run the rules' tests")).set_defaults(func=cmd_test)
    d = with_rules(sub.add_parser("dlq", help="list, replay or purge dead letters"))
    d.add_argument("action", choices=["list", "replay", "purge"])
    d.add_argument("--destination", default=None)
    d.add_argument("--limit", type=int, default=100)
    d.set_defaults(func=cmd_dlq)
    m = sub.add_parser("demo", help="a demo shop, stand-in vendors and the debug view on one port")
    m.add_argument("--host", default=DEFAULT_HOST)
    m.add_argument("--port", type=int, default=8080)
    m.set_defaults(func=cmd_demo)
    for name, what in NOT_YET.items():
        n = sub.add_parser(name, help=f"{what} (not in this release)")
        n.add_argument("rest", nargs=argparse.REMAINDER)
        n.set_defaults(func=lambda a, what=what: _not_yet(what))
    return p


def _not_yet(what: str) -> int:
    print(f"relay: {what} is not in this release yet", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code
