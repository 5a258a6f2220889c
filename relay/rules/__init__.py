"""Rule files: load a directory (YAML with marks) -> typed frozen ``Rules`` -> diagnostics.

    rules = load_rules("rules", CATALOG)              # raises RulesError listing every error
    rules, diagnostics = check_rules("rules", CATALOG)  # rules is None when there are errors

``catalog`` says what the rules can name (``relay.rules.catalog``); ``relay.registry`` binds
the relay's own, so most code calls ``relay.registry.load_rules("rules")``. Warnings never
fail a load. Messages never quote a secret (see ``relay.rules.secrets``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from relay.rules.catalog import Catalog
from relay.rules.diagnostics import Diagnostic, RulesError
from relay.rules.model import Rules
from relay.rules.parse import parse_rules
from relay.rules.policy import POLICY_CODES
from relay.rules.secrets import MASK, secret_values
from relay.rules.source import RawRules, read_rules_dir

__all__ = ["Catalog", "Diagnostic", "Rules", "RulesError", "check_rules", "load_rules"]


def check_rules(
    directory: str | os.PathLike[str], catalog: Catalog, env: Mapping[str, str] | None = None
) -> tuple[Rules | None, list[Diagnostic]]:
    """Read and validate ``directory``: the rules (None if any error) and all diagnostics,
    sorted by file, line and column, the catalog's policy warnings included (on rules
    without errors). ``env`` defaults to ``os.environ``."""
    raw = read_rules_dir(directory, env)
    rules = parse_rules(raw, catalog)
    if catalog.policy is not None and not raw.reporter.errors:
        catalog.policy(rules, raw.reporter)
    diagnostics = _scrub(raw.reporter.sorted(), raw)
    if any(d.severity == "error" for d in diagnostics):
        return None, diagnostics
    policy = tuple(d for d in diagnostics if d.code in POLICY_CODES)
    return dataclasses.replace(rules, policy=policy), diagnostics


def load_rules(
    directory: str | os.PathLike[str], catalog: Catalog, env: Mapping[str, str] | None = None
) -> Rules:
    """The validated rules of ``directory``; raises ``RulesError`` with every error."""
    rules, diagnostics = check_rules(directory, catalog, env)
    if rules is None:
        raise RulesError([d for d in diagnostics if d.severity == "error"])
    return rules


def _scrub(diagnostics: list[Diagnostic], raw: RawRules) -> list[Diagnostic]:
    """Replace a secret quoted in a message about its own value (``'s3cr3t' is not ...``)."""
    secrets = secret_values(raw.tree, raw.secret_paths)
    out: list[Diagnostic] = []
    for d in diagnostics:
        if d.code in POLICY_CODES:  # about secrets, never quoting one (relay.rules.policy)
            out.append(d)
            continue
        for path, value in secrets.items():
            if d.path[: len(path)] == path and (value in d.message or value in (d.hint or "")):
                d = dataclasses.replace(
                    d, message=d.message.replace(value, MASK),
                    hint=d.hint.replace(value, MASK) if d.hint else d.hint,
                )
        out.append(d)
    return out
