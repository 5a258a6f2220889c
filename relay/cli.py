"""``relay``: the command line. Thin: parse arguments, call the package's functions."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from relay.rules import check_rules
from relay.rules.model import Rules

DEFAULT_RULES = "rules"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def _load(rules_dir: str) -> Rules | None:
    """The rules, or None after printing every problem (``file:line:col: ...``)."""
    rules, diagnostics = check_rules(rules_dir)
    for d in diagnostics:
        print(d.render(), file=sys.stderr if d.severity == "error" else sys.stdout)
    if rules is None or any(d.severity == "error" for d in diagnostics):
        n = sum(1 for d in diagnostics if d.severity == "error")
        print(f"{rules_dir}: {n} error(s)", file=sys.stderr)
        return None
    return rules


def cmd_check(args: argparse.Namespace) -> int:
    rules = _load(args.rules)
    if rules is None:
        return 1
    print(
        f"ok: {len(rules.files)} file(s), {len(rules.destinations)} destination(s), "
        f"{len(rules.tests)} test(s), rules version {rules.version}"
    )
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from relay.testing import run_tests

    rules = _load(args.rules)
    if rules is None:
        return 1
    results = asyncio.run(run_tests(rules))
    failed = [r for r in results if not r.passed]
    for r in results:
        print(f"{'PASS' if r.passed else 'FAIL'} {r.name}")
        for line in r.failures:
            print("  " + line.replace("\n", "\n  "))
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def _serve_config(args: argparse.Namespace, admin_host: str, admin_port: int) -> Any:
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{args.host}:{args.port}", f"{admin_host}:{admin_port}"]
    config.workers = args.workers
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    config.graceful_timeout = 5.0
    return config


def _cannot_listen(binds: Sequence[str]) -> str | None:
    """Why ``host:port`` addresses cannot be bound (a port taken, an address not this
    host's), checked before anything starts; None when they can."""
    for bind in binds:
        host, _, port = bind.rpartition(":")
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, int(port)))
            except OSError as exc:
                return f"cannot listen on {bind}: {exc.strerror or exc}"
    return None


async def _release_leases(rules: Rules) -> None:
    from relay.spool.factory import open_spool

    spool = open_spool(rules.relay.spool)
    await spool.start()
    released = await spool.release_leases()
    await spool.close()
    if released:
        print(f"spool: released {released} lease(s) left by a previous run", file=sys.stderr)


def cmd_serve(args: argparse.Namespace) -> int:
    from relay.observe.log import configure

    rules = _load(args.rules)
    if rules is None:
        return 1
    admin_port = args.admin_port if args.admin_port is not None else rules.relay.admin.port
    config = _serve_config(args, rules.relay.admin.host, admin_port)
    problem = _cannot_listen(config.bind)
    if problem:
        print(f"relay serve: {problem}", file=sys.stderr)
        return 1
    configure(os.environ.get("RELAY_LOG_LEVEL", "INFO"))
    if not rules.relay.cookie.secrets:  # made once here, before any worker needs it
        from pathlib import Path

        from relay.app import load_or_create_secret

        load_or_create_secret(Path(args.var))
    asyncio.run(_release_leases(rules))
    print(
        f"relay: serving {rules.relay.prefix}/ on http://{args.host}:{args.port} "
        f"(admin http://{rules.relay.admin.host}:{admin_port}), rules {rules.version}",
        file=sys.stderr,
        flush=True,
    )
    if args.workers > 1:
        from hypercorn.run import run

        os.environ["RELAY_RULES_DIR"] = args.rules
        os.environ["RELAY_VAR_DIR"] = args.var
        os.environ["RELAY_ADMIN_PORT"] = str(admin_port)
        config.application_path = "relay.serve_entry:app"
        _forward_sighup()
        return int(run(config) or 0)
    from hypercorn.asyncio import serve

    from relay.app import serving_app

    app = serving_app(args.rules, args.var, admin_port)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(app, config, shutdown_trigger=stop.wait)

    asyncio.run(main())
    return 0


def _forward_sighup() -> None:
    """With several workers, SIGHUP to the master reloads every worker's rules."""
    forwarding = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal forwarding
        if forwarding:
            return
        forwarding = True
        try:
            os.killpg(os.getpgrp(), signal.SIGHUP)
        finally:
            forwarding = False

    signal.signal(signal.SIGHUP, handler)


def cmd_dlq(args: argparse.Namespace) -> int:
    rules = _load(args.rules)
    if rules is None:
        return 1
    if args.destination and args.destination not in rules.destinations:
        print(
            f"dlq: no destination named '{args.destination}' "
            f"(known: {', '.join(rules.destinations) or 'none'})",
            file=sys.stderr,
        )
        return 1

    async def run() -> int:
        from relay.spool.factory import open_spool

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
        return sp

    s = with_rules(sub.add_parser("serve", help="run the relay under hypercorn"))
    s.add_argument("--host", default=DEFAULT_HOST)
    s.add_argument("--port", type=int, default=DEFAULT_PORT)
    s.add_argument("--admin-port", type=int, default=None)
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--var", default="var", help="where generated state lives (default: ./var)")
    s.set_defaults(func=cmd_serve)
    with_rules(sub.add_parser("check", help="validate the rules")).set_defaults(func=cmd_check)
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
