"""``relay datamap``: the record of processing of the rules, computed (``relay.datamap``).

``--format md`` (the default) is a document for people, one section per destination;
``--format json`` is the documented contract, ``{"rules_version", "destinations": [{"name",
"type", "vendor", "purpose", "legal_basis", "retention", "events", "fields", "hashed",
"transforms", "consent": {"gpc", "defaults"}}]}``. Rule warnings go to stderr, so stdout is
only the map.
"""

from __future__ import annotations

import argparse
import sys

from relay.cli.common import load
from relay.datamap import datamap
from relay.datamap.render import to_json, to_markdown

FORMATS = ("md", "json")


def cmd_datamap(args: argparse.Namespace) -> int:
    rules = load(args.rules, warnings=sys.stderr)
    if rules is None:
        return 1
    dmap = datamap(rules)
    sys.stdout.write(to_json(dmap) if args.format == "json" else to_markdown(dmap, rules))
    return 0
