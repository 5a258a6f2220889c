"""Parse the raw rules tree into typed ``Rules``, reporting every mistake with its place.

``parse_rules(read_rules_dir("rules"))`` reads each section through ``At``: a mistake is
reported and reading goes on, so one run lists them all. Names used elsewhere (a purpose, a
source, an event, a pipeline, a destination) are recorded while reading and checked at the
end against the names the files define, so a definition with its own mistake does not also
make every user of it an error.

One module per group of sections, each a set of functions of a ``Reader`` (the run's
reporter, recorded references and shared helpers):

    settings.py   relay:
    intake.py     purposes:, sources:, events:
    delivery.py   pipelines:, destinations:
    proxy.py      proxy:
    ruletests.py  tests:

What the rules can name (pipeline steps, destination types, ``when`` matchers) comes from
the ``Catalog`` the caller passes (``relay.registry`` binds the relay's own). Codes R2xx are
in ``relay.rules.codes``; docs/errors.md lists them all.
"""

from __future__ import annotations

from relay.rules.catalog import Catalog
from relay.rules.codes import UNKNOWN_SECTION
from relay.rules.delivery import destinations, pipelines
from relay.rules.diagnostics import suggest
from relay.rules.intake import events, purposes, sources
from relay.rules.model import Rules
from relay.rules.proxy import routes
from relay.rules.reader import Reader, options
from relay.rules.ruletests import tests
from relay.rules.settings import relay
from relay.rules.source import RawRules

SECTIONS = ("relay", "purposes", "sources", "events", "pipelines", "destinations", "proxy", "tests")


def parse_rules(raw: RawRules, catalog: Catalog) -> Rules:
    """Type the raw tree of ``read_rules_dir``; mistakes go to ``raw.reporter``.

    The result is only meaningful when the reporter holds no errors (``load_rules`` checks).
    """
    r = Reader(raw, catalog)
    for key in raw.tree:
        if key not in SECTIONS:
            r.rep.error((key,), UNKNOWN_SECTION, f"unknown section '{key}'",
                        suggest(key, SECTIONS) or options(SECTIONS), key=True)
    get = r.root.get
    rules = Rules(
        relay=relay(r, get("relay")),
        purposes=purposes(r, get("purposes")),
        sources=sources(r, get("sources")),
        events=events(r, get("events")),
        pipelines=pipelines(r, get("pipelines")),
        destinations=destinations(r, get("destinations")),
        proxy=routes(r, get("proxy")),
        tests=tests(r, get("tests")),
        version=raw.digest,
        files=tuple(raw.files),
        secret_paths=frozenset(raw.secret_paths),
        raw=raw.tree,
        variables=dict(raw.variables),
    )
    r.check_refs(rules)
    return rules
