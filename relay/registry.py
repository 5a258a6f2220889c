"""The registry: every pipeline step, destination type and ``when`` matcher the rules can
name, and the rules loader bound to it.

    from relay.registry import load_rules
    rules = load_rules("rules")            # raises relay.rules.RulesError with every error

A new step or destination type is one module, one line in its own registry
(``relay.pipeline.STEPS``, ``relay.destinations.DESTINATIONS``) and one test module; this
module collects them for the loader (``relay.rules.catalog`` says why it is passed in).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from relay import rules as _rules
from relay.destinations import DESTINATIONS
from relay.engine.match import parse_when
from relay.pipeline import STEPS
from relay.rules.catalog import Catalog
from relay.rules.diagnostics import Diagnostic
from relay.rules.model import Rules
from relay.rules.parse import parse_rules as _parse_rules
from relay.rules.source import RawRules

CATALOG = Catalog(steps=STEPS, destinations=DESTINATIONS, when=parse_when)


def check_rules(
    directory: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> tuple[Rules | None, list[Diagnostic]]:
    """``relay.rules.check_rules`` with the relay's catalog."""
    return _rules.check_rules(directory, CATALOG, env)


def load_rules(directory: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Rules:
    """``relay.rules.load_rules`` with the relay's catalog."""
    return _rules.load_rules(directory, CATALOG, env)


def parse_rules(raw: RawRules) -> Rules:
    """``relay.rules.parse.parse_rules`` with the relay's catalog."""
    return _parse_rules(raw, CATALOG)
