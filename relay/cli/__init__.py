"""``relay``: the command line. Thin: parse arguments, call the package's functions.

One module per group of commands: ``rules`` (check, test), ``serve``, ``dlq``, ``trace``,
``reconcile``, ``datamap``, ``forget`` (``admin``: the running relay's admin listener);
``servers`` runs the relay under uvicorn, granian or hypercorn, ``master`` is the main process
of ``relay serve --workers N`` and ``worker`` what each of its workers runs. docs/cli.md is
the reference; every subcommand's ``--help`` has a description and shows its defaults.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from relay.cli import datamap
from relay.cli.common import DEFAULT_RULES, DEFAULT_VAR, log_level
from relay.cli.diff import cmd_diff
from relay.cli.dlq import cmd_dlq
from relay.cli.forget import cmd_forget
from relay.cli.reconcile import FORMATS, by_arg, cmd_reconcile, since_arg
from relay.cli.rules import cmd_check, cmd_test
from relay.cli.serve import DEFAULT_HOST, DEFAULT_PORT, cmd_serve
from relay.cli.servers import DEFAULT_SERVER, SERVERS
from relay.cli.trace import cmd_trace

DEMO_PORT = 8080


def cmd_demo(args: argparse.Namespace) -> int:
    from relay.demo.app import serve

    if log_level("WARNING") is None:
        return 1

    return serve(args.host, args.port)




class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written, and every option's default after its help (flags and
    options without a default say what happens instead)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("%(default)" in text or not action.option_strings
                or action.default in (None, False, argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)"


def positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 to 65535 (0: any free one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0 to 65535)")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="relay", formatter_class=HelpFormatter,
        description="A first-party edge relay for web tracking. The reference is docs/cli.md;"
        " `relay COMMAND --help` shows each command's options and their defaults.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=description,
                              formatter_class=HelpFormatter)

    def with_dirs(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--rules", metavar="DIR",
                        default=os.environ.get("RELAY_RULES", DEFAULT_RULES),
                        help="the rules directory, every *.yaml and *.yml in it; RELAY_RULES sets"
                        " the default")
        sp.add_argument("--var", metavar="DIR", default=os.environ.get("RELAY_VAR", DEFAULT_VAR),
                        help="where the relay keeps its state: the generated cookie secret, the"
                        " SQLite spool, file destinations' relative paths; RELAY_VAR sets the"
                        " default")
        return sp

    s = with_dirs(command(
        "serve", "run the relay (and its admin listener)",
        "Run the relay under --server (uvicorn unless told): the public app under relay.prefix"
        "\non --host:--port, and"
        "\nthe admin listener (/metrics, /readyz, /rules, /dlq, /debug, /reconcile) on"
        "\nrelay.admin's address. Rules reload on file change and SIGHUP.\n\n"
        "On any address but loopback (127.0.0.0/8, ::1, localhost) it refuses to start while"
        "\na source secret is weak or a shipped example (R301); on loopback it warns.",
    ))
    s.add_argument("--host", default=DEFAULT_HOST, help="the address the public app listens on")
    s.add_argument("--port", type=port, default=DEFAULT_PORT, help="the public port")
    s.add_argument("--admin-port", type=port, default=None, metavar="PORT",
                   help="the admin listener's port (default: relay.admin.port of the rules, "
                   "9901 unless set)")
    s.add_argument("--workers", type=positive, default=1, metavar="N",
                   help="worker processes; more than 1 needs relay.state: redis://...")
    s.add_argument("--server", choices=SERVERS, default=DEFAULT_SERVER,
                   help=f"the HTTP server (default {DEFAULT_SERVER}: the fastest measured; "
                   "hypercorn stays supported)")
    s.set_defaults(func=cmd_serve)

    c = with_dirs(command(
        "check", "validate the rules",
        "Validate the rules: every problem on one line, file:line:col: CODE key.path: what is"
        "\nwrong (hint). Exit 1 when there is an error; warnings (R214, R236, R267, the policy"
        "\nwarnings R3xx) are printed to stdout and do not fail the check unless --strict.",
    ))
    c.add_argument("--strict", action="store_true",
                   help="make every warning an error (exit 1): for CI and deploy pipelines")
    c.set_defaults(func=cmd_check)

    with_dirs(command(
        "test", "run the rules' tests",
        "Run the cases under the rules' tests: through the real engine, in memory (nothing is"
        "\nsent or written, so --var changes nothing). Exit 1 when a case fails, showing what"
        "\ndiffered.",
    )).set_defaults(func=cmd_test)

    d = with_dirs(command(
        "dlq", "list, replay or purge dead letters",
        "Dead letters: through the running relay's admin listener when one answers at the"
        "\nrules' admin address, else in the spool under --var.\n\n"
        "  list    one JSON object a line, oldest first, never the payload\n"
        "  replay  move them back to the spool; the running relay delivers them\n"
        "  purge   delete them, after asking (with no terminal, only with --yes)",
    ))
    d.add_argument("action", choices=["list", "replay", "purge"], help="what to do")
    d.add_argument("--destination", metavar="NAME", default=None,
                   help="only this destination's dead letters (default: every destination's)")
    d.add_argument("--limit", type=positive, default=100, metavar="N",
                   help="list: at most this many")
    d.add_argument("--yes", action="store_true", help="purge: do not ask")
    d.add_argument("--admin-port", type=port, default=None, metavar="PORT",
                   help="the running relay's admin port, when relay serve was given"
                   " --admin-port (default: relay.admin.port of the rules)")
    d.set_defaults(func=cmd_dlq)

    g = with_dirs(command(
        "forget", "delete a person's data in the relay and at the vendors",
        "Delete what the relay holds about one person (their spooled copies, dead letters,"
        "\nheld and waiting copies, quarantined events, the ledger's links to their events)"
        "\nand ask each destination's vendor to delete them, with a receipt per destination."
        "\nThe person is shown only as a keyed hash. Through the running relay's admin"
        "\nlistener when one answers at the rules' admin address, else on the files under"
        "\n--var. Exit 0 only when the relay part completed and no destination failed.",
    ))
    who = g.add_mutually_exclusive_group(required=True)
    one = " (default: none; give exactly one of --user-id, --email, --phone)"
    who.add_argument("--user-id", metavar="ID", help="the person's user.id" + one)
    who.add_argument("--email", metavar="E", help="the person's email address" + one)
    who.add_argument("--phone", metavar="P", help="the person's phone number" + one)
    g.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    g.add_argument("--admin-port", type=port, default=None, metavar="PORT",
                   help="the running relay's admin port, when relay serve was given"
                   " --admin-port (default: relay.admin.port of the rules)")
    g.set_defaults(func=cmd_forget)

    t = with_dirs(command(
        "trace", "every hop of one event, from the delivery ledger",
        "Every hop of one event in time order (received, consent and dedup decisions, held,"
        "\nreleased, spooled, each delivery attempt), read from the ledger under --var (or the"
        "\nPostgreSQL ledger the rules name, which every replica shares)."
        "\nExit 1 when the ledger does not know the id.",
    ))
    t.add_argument("event_id", metavar="EVENT_ID", help="the event's event_id")
    t.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    t.set_defaults(func=cmd_trace)

    f = command(
        "diff", "what a rules change would change, on recorded events",
        "Shadow mode: the events of --events (JSON lines, as relay.sample records them, or bare"
        "\nenvelopes) through the rules of --against and of --rules, in memory, and per event"
        "\nand destination what changes: the outcome, and the names of the fields sent."
        "\nExit 0 either way (1 when the rules or the file cannot be read).",
    )
    f.add_argument("--rules", metavar="NEW", default=os.environ.get("RELAY_RULES", DEFAULT_RULES),
                   help="the new rules")
    f.add_argument("--against", metavar="OLD", default=DEFAULT_RULES,
                   help="the rules in force")
    f.add_argument("--events", metavar="FILE", required=True,
                   help="recorded events, one JSON object a line (default: none, required)")
    f.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    f.set_defaults(func=cmd_diff)

    r = with_dirs(command(
        "reconcile", "browser vs backend vs delivered counts, from the delivery ledger",
        "Count, from the ledger under --var (or the rules' shared PostgreSQL ledger: every"
        "\nreplica's events), what was received since --since (browser and"
        "\nbackend sources), delivered, a duplicate, suppressed, held now, held and never"
        "\nconfirmed by the authoritative source, dead-lettered, and routed but not delivered"
        "\nyet (discrepancy), one row per combination of the --by keys. docs/cli.md defines"
        "\neach number for every --by.",
    ))
    r.add_argument("--since", type=since_arg, default="7d", metavar="WHEN",
                   help="a duration back from now (7d, 24h, 90m, 30s, 2w) or an ISO date or"
                   " time (2026-11-28, 2026-11-28T12:00:00Z; UTC unless it says otherwise)")
    r.add_argument("--by", type=by_arg, default="day", metavar="KEYS",
                   help="comma-separated keys, in the order wanted: day (UTC, of receipt),"
                   " event, source, destination; '' for one total row")
    r.add_argument("--format", choices=FORMATS, default="text", help="output format")
    r.set_defaults(func=cmd_reconcile)

    a = with_dirs(command(
        "datamap", "the record of processing: who receives which fields, why, how long",
        "The record of processing (GDPR art. 30), computed from the rules: per destination the"
        "\nrecipient, purpose, legal basis, retention, consent defaults, events, pipeline steps"
        "\nand every field it can receive (in the vendor's own names where it maps them), and"
        "\nwhich of them arrive hashed. Exit 1 when the rules have an error.",
    ))
    a.add_argument("--format", choices=datamap.FORMATS, default="md",
                   help="md: a Markdown document; json: the documented contract")
    a.set_defaults(func=datamap.cmd_datamap)

    m = command(
        "demo", "a demo shop, stand-in vendors and the debug view on one port",
        "A demo shop with a consent banner, the relay with its demo rules, stand-in vendors"
        "\nand the debug view, on one port, with nothing to configure. Its rules are shipped"
        "\nin the package and its state lives in a temporary directory removed on exit, so it"
        "\ntakes neither --rules nor --var.",
    )
    m.add_argument("--host", default=DEFAULT_HOST, help="the address to listen on")
    m.add_argument("--port", type=port, default=DEMO_PORT, help="the port")
    m.set_defaults(func=cmd_demo)

    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code
