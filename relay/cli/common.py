"""What every command shares: loading the rules, printing their problems, placing them
under the var directory."""

from __future__ import annotations

import os
import sys

from relay.registry import check_rules, place
from relay.rules.model import Rules
from relay.spool.factory import sqlite_path

DEFAULT_RULES = "rules"
DEFAULT_VAR = "var"


def load(rules_dir: str) -> Rules | None:
    """The rules, or None after printing every problem (``file:line:col: ...``)."""
    rules, diagnostics = check_rules(rules_dir)
    for d in diagnostics:
        print(d.render(), file=sys.stderr if d.severity == "error" else sys.stdout)
    if rules is None or any(d.severity == "error" for d in diagnostics):
        n = sum(1 for d in diagnostics if d.severity == "error")
        print(f"{rules_dir}: {n} error(s)", file=sys.stderr)
        return None
    return rules


def placed(rules: Rules, var_dir: str) -> Rules:
    """``rules`` with their local paths under ``var_dir`` (``relay.registry.place``).

    Says so when the SQLite spool moved: relative paths used to be read from the working
    directory, and a spool left there may still hold undelivered copies.
    """
    out = place(rules, var_dir)
    try:
        before, now = sqlite_path(rules.relay.spool), sqlite_path(out.relay.spool)
    except ValueError:
        return out
    if (os.path.exists(before) and not os.path.exists(now)
            and os.path.realpath(before) != os.path.realpath(now)):
        print(
            f"relay: warning: the spool is {now} (relay.spool resolves under --var {var_dir});"
            f" {before} is a spool from the working directory, where relative paths used to"
            f" point: if it still holds copies to deliver, stop and move it (with its -wal"
            f" and -shm files) to {now}",
            file=sys.stderr,
        )
    return out
