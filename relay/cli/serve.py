"""``relay serve``: the relay and its admin listener under hypercorn."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import secrets
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from relay.cli.common import load, log_level, placed
from relay.observe.log import configure
from relay.observe.workers import DIR_ENV, TOKEN_ENV, prepare
from relay.rules.model import Rules
from relay.runtime import load_or_create_secret
from relay.spool.factory import open_spool

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
METRICS_DIR = "metrics"  # under --var: each worker's figures, for one /metrics page


def _serve_config(args: argparse.Namespace, admin_host: str, admin_port: int) -> Any:
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{args.host}:{args.port}", f"{admin_host}:{admin_port}"]
    config.workers = args.workers
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    config.graceful_timeout = 5.0
    # The app adds one Date and one Server itself (relay.web.with_date_and_server); with
    # hypercorn's own, a proxied response would carry the upstream's and hypercorn's.
    config.include_date_header = False
    config.include_server_header = False
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
    config = _serve_config(args, rules.relay.admin.host, admin_port)
    problem = _cannot_listen(config.bind)
    if problem:
        print(f"relay serve: {problem}", file=sys.stderr)
        return 1
    configure(level)
    if not rules.relay.cookie.secrets:  # made once here, before any worker needs it
        load_or_create_secret(Path(args.var))
    asyncio.run(_release_leases(rules))
    print(
        f"relay: serving {rules.relay.prefix}/ on http://{args.host}:{args.port} "
        f"(admin http://{rules.relay.admin.host}:{admin_port}), rules {rules.version}",
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
        config.application_path = "relay.cli.worker:app"
        return run_workers(config)
    from hypercorn.asyncio import serve

    from relay.app import serving_app

    app = serving_app(args.rules, args.var, admin_port,
                      refuse_weak_secrets=not is_loopback(args.host))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(app, config, shutdown_trigger=stop.wait)

    asyncio.run(main())
    return 0


def share_metrics(directory: Path) -> None:
    """Let the workers add up each other's metrics: a fresh private folder for their
    figures and a token for asking each other (``relay.observe.workers``), handed over in
    the environment they inherit."""
    prepare(directory)
    os.environ[DIR_ENV] = str(directory)
    os.environ[TOKEN_ENV] = secrets.token_urlsafe(24)
