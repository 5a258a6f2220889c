"""What every command shares: loading the rules and printing their problems."""

from __future__ import annotations

import sys

from relay.registry import check_rules
from relay.rules.model import Rules

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
