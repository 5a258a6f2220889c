"""The registry: every pipeline step, destination type and ``when`` matcher the rules can
name, the privacy lint (``relay.datamap.policy``), and the rules loader bound to them.

    from relay.registry import load_rules
    rules = load_rules("rules")            # raises relay.rules.RulesError with every error

A new step or destination type is one module, one line in its own registry
(``relay.pipeline.STEPS``, ``relay.destinations.DESTINATIONS``) and one test module; this
module collects them for the loader (``relay.rules.catalog`` says why it is passed in).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from functools import partial
from pathlib import Path

from relay import rules as _rules
from relay.datamap import policy
from relay.destinations import DESTINATIONS
from relay.engine.match import parse_when
from relay.pipeline import STEPS
from relay.rules.catalog import Catalog
from relay.rules.diagnostics import Diagnostic
from relay.rules.model import Rules
from relay.rules.parse import parse_rules as _parse_rules
from relay.rules.source import RawRules
from relay.rules.varpath import under_var
from relay.spool.factory import place_url

CATALOG = Catalog(steps=STEPS, destinations=DESTINATIONS, when=parse_when, policy=policy.check)


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


def place(rules: Rules, var_dir: str | os.PathLike[str]) -> Rules:
    """``rules`` with every local path resolved under ``var_dir`` (``relay.rules.varpath``):
    the SQLite spool and the files of destinations whose type names files. ``var_dir`` is
    made absolute first, so the result does not depend on a later working directory.

        >>> place(rules, "/srv/relay").relay.spool      # written sqlite:///var/spool.db
        'sqlite:////srv/relay/spool.db'
    """
    resolve = partial(under_var, var_dir=Path(var_dir).absolute())
    destinations = {}
    for name, dest in rules.destinations.items():
        kind = DESTINATIONS.get(dest.type)
        if kind is not None and kind.place is not None and dest.settings is not None:
            dest = dataclasses.replace(dest, settings=kind.place(dest.settings, resolve))
        destinations[name] = dest
    ledger = rules.relay.ledger
    if ledger.url is not None:
        ledger = dataclasses.replace(ledger, url=place_url(ledger.url, resolve))
    sample = rules.relay.sample
    if sample is not None:
        sample = dataclasses.replace(sample, path=resolve(sample.path))
    relay = dataclasses.replace(
        rules.relay, spool=place_url(rules.relay.spool, resolve), ledger=ledger, sample=sample
    )
    return dataclasses.replace(rules, relay=relay, destinations=destinations)
