"""``relay forget (--user-id ID | --email E | --phone P)``: delete a person's data in the relay
and at the vendors, with a receipt per destination (``relay.forget``).

Through a running relay's admin listener when one answers at the rules' admin address
(``POST /forget``: its memory is reached too), else on the spool, state store and ledger
under ``--var`` directly. Exit 0 only when the relay part completed and no destination
failed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson

from relay.cli.admin import AdminRefused, running_relay
from relay.cli.common import load, placed
from relay.forget import exit_code, forget, render_text
from relay.ledger import open_ledger
from relay.personal import Subjects
from relay.rules.model import Rules
from relay.runtime import SECRET_FILE, cookieless_jar
from relay.spool.factory import spool_for
from relay.state import open_state
from relay.state.seal import Sealer


def given_of(args: argparse.Namespace) -> tuple[str, str]:
    """(the admin API's key, the value) of the one identifier given."""
    for key, value in (("user_id", args.user_id), ("email", args.email), ("phone", args.phone)):
        if value is not None:
            return key, value
    raise AssertionError("argparse requires one")


def cookie_secrets(rules: Rules, var_dir: str) -> list[str] | None:
    """The secrets the ledger's hashes are keyed with: the rules' cookie secrets, or the one
    ``relay serve`` generated under ``--var`` (never generated here)."""
    if rules.relay.cookie.secrets:
        return list(rules.relay.cookie.secrets)
    path = Path(var_dir) / SECRET_FILE
    if path.exists() and path.read_text().strip():
        return [path.read_text().strip()]
    return None


async def forget_here(rules: Rules, secrets: list[str], given: dict[str, str]) -> dict[str, Any]:
    """The forget on the files under ``--var`` and the rules' state store: no relay runs."""
    relay = rules.relay
    subjects = Subjects(secrets)
    spool = spool_for(relay)
    await spool.start()
    state = None if relay.state == "memory" else open_state(
        relay.state, relay.dedup_max_keys, relay.dedup_window, Sealer(secrets))
    ledger = None
    if relay.ledger.url is not None:
        ledger = open_ledger(relay.ledger.url, relay.ledger.retention)
        await ledger.start()
    try:
        async with httpx.AsyncClient(follow_redirects=False, cookies=cookieless_jar()) as client:
            return await forget(given, rules=rules, subjects=subjects, spool=spool,
                                state=state, ledger=ledger, client=client)
    finally:
        await spool.close()
        if ledger is not None:
            await ledger.close()
        if state is not None:
            await state.close()


def cmd_forget(args: argparse.Namespace) -> int:
    loaded = load(args.rules, warnings=sys.stderr)  # stdout is the receipt
    if loaded is None:
        return 1
    rules = placed(loaded, args.var)
    key, value = given_of(args)
    if not value.strip():
        print(f"relay forget: --{key.replace('_', '-')} is empty", file=sys.stderr)
        return 1
    try:
        admin = running_relay(rules, args.admin_port)
    except AdminRefused as exc:
        print(f"relay forget: {exc}; nothing was deleted", file=sys.stderr)
        return 1
    if admin is not None:
        try:
            receipt = admin.call("POST", "/forget", json={key: value})
        except (AdminRefused, httpx.HTTPError) as exc:
            print(f"relay forget: {exc}", file=sys.stderr)
            return 1
        finally:
            admin.close()
        via = f"through the running relay at {admin.base}"
    else:
        secrets = cookie_secrets(rules, args.var)
        if secrets is None:
            print(f"relay forget: no cookie secret (relay.cookie.secret, or {SECRET_FILE} under"
                  f" --var {args.var}): the relay has not run with this --var, so its ledger"
                  " holds nobody; pass the --var relay serve uses", file=sys.stderr)
            return 1
        given = {"user_id": "id"}.get(key, key)
        receipt = asyncio.run(forget_here(rules, secrets, {given: value}))
        via = "on the spool, state and ledger directly (no relay answers at the admin address)"
    if args.format == "json":
        print(orjson.dumps(receipt).decode())
    else:
        print(render_text(receipt))
    print(f"relay forget: {via}", file=sys.stderr)
    return exit_code(receipt)
