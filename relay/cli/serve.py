"""``relay serve``: the relay and its admin listener under uvicorn, granian or hypercorn
(``relay.cli.servers``), in one process or ``--workers N`` (``relay.cli.master``)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import secrets
import sys
from pathlib import Path

from relay.cli.common import load, log_level, placed
from relay.cli.servers import listen, run
from relay.errors import SpoolUnavailable
from relay.observe.log import configure
from relay.observe.workers import DIR_ENV, TOKEN_ENV, prepare
from relay.rules.model import Rules
from relay.runtime import load_or_create_secret
from relay.spool.factory import open_spool

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
METRICS_DIR = "metrics"  # under --var: each worker's figures, for one /metrics page


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine: 127.0.0.0/8, ::1 or ``localhost``.
    Any other name, and the empty host (every address), is not."""
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def weak_secrets_refused(rules: Rules, host: str) -> bool:
    """Say what the policy warnings (weak source secrets) mean on ``host``: on a public
    address, each is an error and the relay does not start (True); on loopback, a loud
    warning, and it starts."""
    if not rules.policy:
        return False
    n = len(rules.policy)
    which = f"{n} source secret{'s are' if n > 1 else ' is'} not fit for production"
    if not is_loopback(host):
        print(f"relay serve: refusing to serve on {host}: {which}; anyone who knows "
              f"{'them' if n > 1 else 'it'} can post events as that source:", file=sys.stderr)
        for d in rules.policy:
            print(d.render(), file=sys.stderr)
        return True
    print(f"relay serve: WARNING: {which}; serving on loopback ({host}) only, for trying the "
          "relay out:", file=sys.stderr)
    for d in rules.policy:
        print(f"relay serve: WARNING: {d.render()}", file=sys.stderr)
    print("relay serve: WARNING: set the variables above before serving any other address "
          "(relay serve --host 0.0.0.0 refuses to start until then)", file=sys.stderr,
          flush=True)
    return False


def state_is_per_process(rules: Rules, workers: int) -> str | None:
    """Why ``--workers N`` cannot run on these rules (in-memory state), or None."""
    if workers <= 1 or rules.relay.state != "memory":
        return None
    names = rules.variables.get(("relay", "state"), ())
    fix = (f"set {names[0]}=redis://127.0.0.1:6379/0 (relay.state comes from it)" if names
           else "set relay.state: redis://127.0.0.1:6379/0 in the rules")
    return (f"--workers {workers} needs shared state, and relay.state is memory: dedup marks "
            "and copies held or waiting for consent would be per process (a duplicate could "
            "reach a vendor twice, a consent choice would release one worker's copies only); "
            f"{fix}, or run one worker")


async def _release_leases(rules: Rules) -> None:
    spool = open_spool(rules.relay.spool)
    await spool.start()
    released = await spool.release_leases()
    await spool.close()
    if released:
        print(f"spool: released {released} lease(s) left by a previous run", file=sys.stderr)


def cmd_serve(args: argparse.Namespace) -> int:
    level = log_level("INFO")
    if level is None:
        return 1
    loaded = load(args.rules, policy=False)
    if loaded is None:
        return 1
    if weak_secrets_refused(loaded, args.host):
        return 1
    per_process = state_is_per_process(loaded, args.workers)
    if per_process:
        print(f"relay serve: {per_process}", file=sys.stderr)
        return 1
    rules = placed(loaded, args.var)
    admin_port = args.admin_port if args.admin_port is not None else rules.relay.admin.port
    try:
        sockets = listen([(args.host, args.port), (rules.relay.admin.host, admin_port)])
    except OSError as exc:
        print(f"relay serve: {exc}", file=sys.stderr)
        return 1
    try:
        asyncio.run(_release_leases(rules))
    except (ValueError, SpoolUnavailable) as exc:  # an unknown scheme, a file it cannot open
        print(f"relay serve: relay.spool: {exc}", file=sys.stderr)
        for sock in sockets:
            sock.close()
        return 1
    configure(level)
    if not rules.relay.cookie.secrets:  # made once here, before any worker needs it
        load_or_create_secret(Path(args.var))
    print(
        f"relay: serving {rules.relay.prefix}/ on http://{args.host}:{args.port} "
        f"(admin http://{rules.relay.admin.host}:{admin_port}), rules {rules.version}, "
        f"{args.server}" + (f", {args.workers} workers" if args.workers > 1 else ""),
        file=sys.stderr,
        flush=True,
    )
    if args.workers > 1:
        from relay.cli.master import run_workers

        os.environ["RELAY_RULES_DIR"] = args.rules
        os.environ["RELAY_VAR_DIR"] = args.var
        os.environ["RELAY_ADMIN_PORT"] = str(admin_port)
        os.environ["RELAY_PUBLIC"] = "0" if is_loopback(args.host) else "1"
        share_metrics(Path(args.var).resolve() / METRICS_DIR)
        return run_workers(args.server, sockets, args.workers)

    from relay.app import serving_app

    app = serving_app(args.rules, args.var, admin_port,
                      refuse_weak_secrets=not is_loopback(args.host))
    try:
        run(args.server, app, sockets)
    finally:
        for sock in sockets:
            sock.close()
    return 0


def share_metrics(directory: Path) -> None:
    """Let the workers add up each other's metrics: a fresh private folder for their
    figures and a token for asking each other (``relay.observe.workers``), handed over in
    the environment they inherit."""
    prepare(directory)
    os.environ[DIR_ENV] = str(directory)
    os.environ[TOKEN_ENV] = secrets.token_urlsafe(24)
