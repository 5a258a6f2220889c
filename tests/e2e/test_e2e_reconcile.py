"""``relay reconcile`` on a real relay's ledger: browser and backend copies of purchases,
repeats, an EU purchase without consent, a page view waiting for consent, a destination
that dead-letters, and a browser purchase its backend never confirms; the JSON numbers
asserted exactly for several ``--by``, then the CSV and text forms, and the admin page's
JSON equal to the command's."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any

from relay.ledger.base import iso
from relay.ledger.reconcile import COLUMNS

from .conftest import MakeRelay, MakeVendor
from .relayproc import RelayProcess
from .rulesdir import edit, webhook
from .wire import (
    client,
    new_event_id,
    page_view,
    post_backend,
    post_browser,
    purchase,
    wait_until,
)

WAIT = 30.0
EU = {"CF-IPCountry": "DE"}


def _row(**counts: int) -> dict[str, int]:
    return {c: counts.get(c, 0) for c in COLUMNS}


def _reconcile(relay: RelayProcess, *args: str) -> Any:
    done = relay.cli("reconcile", "--var", str(relay.var_dir), *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _json(relay: RelayProcess, since: str, by: str) -> Any:
    return json.loads(_reconcile(relay, "--since", since, "--by", by, "--format", "json"))


def test_reconcile_counts_what_a_real_relay_did(relays: MakeRelay, vendors: MakeVendor,
                                               spool_env: dict[str, str]) -> None:
    crm = vendors(name="crm")
    refusing = vendors(name="refusing")
    refusing.respond(400)  # permanent: dead-lettered at the first attempt
    relay = relays(start=False, env=spool_env, destinations={
        "crm": webhook(crm, events=["purchase"], purpose="ads"),
        "refusing": webhook(refusing, events=["purchase"], purpose="analytics"),
    })

    def shorter_window(tree: dict[str, Any]) -> None:
        tree["events"]["purchase"]["confirm_window"] = "2s"

    edit(relay.rules_dir / "events.yaml", shorter_window)
    relay.start()
    since = iso(time.time() - 60)

    order_a = purchase(new_event_id("ord-a"))
    browser_a = {k: v for k, v in order_a.items() if k != "context"}
    browser_b = {k: v for k, v in purchase(new_event_id("ord-b")).items() if k != "context"}
    order_c = purchase(new_event_id("ord-c"), context={"country": "DE"})  # no consent, EU
    with client() as c:
        # Order A: the browser's copy is held, the backend's confirms it and is routed.
        assert post_browser(c, relay, browser_a).json()["held"] == 1
        assert post_backend(c, relay, order_a).json() == {"accepted": 1, "duplicates": 0,
                                                          "rejected": []}
        # Both send it again: a duplicate each.
        assert post_browser(c, relay, browser_a).json()["duplicates"] == 1
        assert post_backend(c, relay, order_a).json()["duplicates"] == 1
        # Order B: the backend never confirms it (confirm_window: 2s).
        assert post_browser(c, relay, browser_b).json()["held"] == 1
        # Order C from the EU without consent: suppressed at all three destinations.
        assert post_backend(c, relay, order_c).json()["accepted"] == 1
        # A page view from the EU waits for a consent choice; one from the US is archived.
        assert post_browser(c, relay, page_view(), headers=EU).json()["held"] == 1
        assert post_browser(c, relay, page_view()).json()["accepted"] == 1

    def settled() -> Any:  # asked of the admin listener: quicker than starting the command
        with client() as c:
            body = c.get(relay.admin_url("/reconcile.json"),
                         params={"since": since, "by": ""}).json()
        [total] = body["rows"]
        done = (total["unconfirmed"] == 1 and total["discrepancy"] == 0
                and total["dead_lettered"] == 1 and total["delivered"] == 3)
        return body if done else None

    wait_until(settled, WAIT, "every copy delivered or dead-lettered, order B expired",
               interval=0.25)
    assert crm.delivered() and refusing.attempts() == 1
    assert crm.problems == [] and refusing.problems == []

    total = _row(browser=5, backend=3, delivered=3, duplicates=2, suppressed=3, held=1,
                 unconfirmed=1, dead_lettered=1)
    assert _json(relay, since, "") == {"since": since, "by": [], "rows": [total]}
    by_destination = [
        {"destination": "archive", **_row(browser=2, backend=3, delivered=2, duplicates=1,
                                          suppressed=1, held=1)},
        {"destination": "crm", **_row(backend=3, delivered=1, duplicates=1, suppressed=1)},
        {"destination": "refusing", **_row(backend=3, duplicates=1, suppressed=1,
                                           dead_lettered=1)},
        {"destination": "(none)", **_row(browser=3, duplicates=1, unconfirmed=1)},
    ]
    assert _json(relay, since, "destination")["rows"] == by_destination
    assert _json(relay, since, "event")["rows"] == [
        {"event": "page_view", **_row(browser=2, delivered=1, held=1)},
        {"event": "purchase", **_row(browser=3, backend=3, delivered=2, duplicates=2,
                                     suppressed=3, unconfirmed=1, dead_lettered=1)},
    ]
    assert _json(relay, since, "source")["rows"] == [
        {"source": "backend", **_row(backend=3, delivered=2, duplicates=1, suppressed=3,
                                     dead_lettered=1)},
        {"source": "browser", **_row(browser=5, delivered=1, duplicates=1, held=1,
                                     unconfirmed=1)},
    ]
    days = _json(relay, since, "day")["rows"]  # one day, or two across midnight (UTC)
    assert [sum(int(r[c]) for r in days) for c in COLUMNS] == [total[c] for c in COLUMNS]
    finest = _json(relay, since, "day,event,source,destination")["rows"]
    assert {(r["event"], r["source"], r["destination"]) for r in finest} >= {
        ("purchase", "backend", "refusing"), ("purchase", "browser", "(none)"),
        ("page_view", "browser", "archive")}

    # CSV: the same columns and rows.
    lines = list(csv.reader(io.StringIO(_reconcile(
        relay, "--since", since, "--by", "destination", "--format", "csv"))))
    assert lines[0] == ["destination", *COLUMNS]
    assert [dict(zip(lines[0], line, strict=True)) for line in lines[1:]] == [
        {k: str(v) for k, v in r.items()} for r in by_destination]

    # Text: the table, then the total of the whole period (each receive once).
    text = _reconcile(relay, "--since", since, "--by", "destination").splitlines()
    assert text[0] == f"since {since} (UTC), by destination"
    assert text[1].split() == ["destination", *COLUMNS]
    assert [line.split()[0] for line in text[2:7]] == ["archive", "crm", "refusing", "(none)",
                                                       "total"]
    assert text[6].split()[1:] == [str(total[c]) for c in COLUMNS]
    # The default period (7d) holds the same receives.
    default = _reconcile(relay, "--by", "").splitlines()
    assert default[2].split()[1:] == [str(total[c]) for c in COLUMNS]

    # The admin listener answers the command's JSON.
    with client() as c:
        for by in ("", "destination", "day,event,source,destination"):
            r = c.get(relay.admin_url("/reconcile.json"), params={"since": since, "by": by})
            assert r.status_code == 200 and r.json() == _json(relay, since, by)
