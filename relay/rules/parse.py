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
from relay.rules.codes import CLAIM_BEFORE_TIMEOUT, OPEN_BROWSER_ORIGINS, UNKNOWN_SECTION
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
    open_origins(r, rules)
    claims_outlast_timeouts(r, rules)
    return rules


REDIS_SCHEMES = ("redis", "rediss", "unix")


def claims_outlast_timeouts(r: Reader, rules: Rules) -> None:
    """R219: with a Redis spool, a copy a process has held unacknowledged for
    ``spool_claim_after`` is taken over by another process. A destination whose ``timeout``
    is not below that can still be sending when another replica claims the copy and sends it
    again: a duplicate at the vendor."""
    relay = rules.relay
    if relay.spool.partition(":")[0].lower() not in REDIS_SCHEMES:
        return
    raw_relay = rules.raw.get("relay")
    claim_set = isinstance(raw_relay, dict) and "spool_claim_after" in raw_relay
    for d in rules.destinations.values():
        if d.timeout < relay.spool_claim_after:
            continue
        raw_dest = (rules.raw.get("destinations") or {}).get(d.name)
        timeout_set = isinstance(raw_dest, dict) and "timeout" in raw_dest
        path = (("destinations", d.name, "timeout") if timeout_set or not claim_set
                else ("relay", "spool_claim_after"))
        r.rep.warning(
            path, CLAIM_BEFORE_TIMEOUT,
            f"destination '{d.name}': its timeout ({d.timeout:g}s) is not below "
            f"relay.spool_claim_after ({relay.spool_claim_after:g}s): another replica may "
            "claim a copy still being sent and send it again",
            f"raise spool_claim_after above {d.timeout:g}s (twice the longest timeout is "
            "safe), or lower the destination's timeout")


def open_origins(r: Reader, rules: Rules) -> None:
    """R320: a browser source without ``allowed_origins`` in rules made for a public
    deployment (a CDN or proxy forwards the client's address, or the cookie names a domain).
    The default still refuses other sites' pages, but it trusts the ``Host`` the relay sees,
    which a CDN may rewrite to its origin's name: then the site's own pages are refused."""
    relay = rules.relay
    public = relay.client_ip.header is not None or (
        relay.cookie.domain is not None
        and relay.cookie.domain.strip(".").lower() not in ("localhost", "127.0.0.1"))
    if not public:
        return
    for source in rules.sources.values():
        if source.type == "browser" and source.allowed_origins is None:
            r.rep.warning(
                ("sources", source.name), OPEN_BROWSER_ORIGINS,
                "no allowed_origins: browser events are accepted from pages on the host "
                "the relay sees in Host or X-Forwarded-Host, and from loopback pages",
                "list the site's origins, like allowed_origins: [https://shop.example, "
                'https://*.shop.example] ("*" accepts any site)')
