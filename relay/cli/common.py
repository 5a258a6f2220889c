"""What every command shares: loading the rules, printing their problems, placing them
under the var directory."""

from __future__ import annotations

import os
import sys
from typing import TextIO

from relay.registry import check_rules, place
from relay.rules.model import Rules
from relay.rules.policy import POLICY_CODES
from relay.spool.factory import sqlite_path

DEFAULT_RULES = "rules"
DEFAULT_VAR = "var"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(default: str) -> str | None:
    """``RELAY_LOG_LEVEL`` (any case) or ``default``; None after saying what is wrong."""
    level = os.environ.get("RELAY_LOG_LEVEL", "").strip().upper() or default
    if level not in LOG_LEVELS:
        print(f"relay: RELAY_LOG_LEVEL={os.environ.get('RELAY_LOG_LEVEL')} is not a log level "
              f"(use one of {', '.join(LOG_LEVELS)})", file=sys.stderr)
        return None
    return level


def load(
    rules_dir: str, *, strict: bool = False, warnings: TextIO | None = None,
    policy: bool = True,
) -> Rules | None:
    """The rules, or None after printing every problem (``file:line:col: ...``).

    Errors go to stderr, warnings to ``warnings`` (stdout by default: a command whose stdout
    is data passes stderr). ``strict`` makes every warning an error. ``policy=False`` leaves
    the policy warnings (``Rules.policy``) to the caller, which decides what they mean.
    """
    rules, diagnostics = check_rules(rules_dir)
    if not policy:
        diagnostics = [d for d in diagnostics if d.code not in POLICY_CODES]
    errors = 0
    for d in diagnostics:
        error = d.severity == "error" or strict
        errors += error
        print(d.render(), file=sys.stderr if error else (warnings or sys.stdout))
    if rules is None or errors:
        print(f"{rules_dir}: {errors} error(s)", file=sys.stderr)
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
