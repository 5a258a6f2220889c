"""Rules reload while the relay runs (SPEC section 4): an edit applies within seconds, a broken
edit is rejected and counted while the old rules keep working, and SIGHUP reloads."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from .conftest import MakeRelay
from .relayproc import RelayProcess
from .rulesdir import edit
from .wire import (
    archived,
    client,
    metric,
    new_event_id,
    page_view,
    post_browser,
    scrape,
    wait_until,
)

APPLY_WITHIN = 5.0  # seconds; the relay polls the rules directory every second


def _newsletter(http: httpx.Client, relay: RelayProcess) -> httpx.Response:
    return post_browser(
        http, relay, {"event": "newsletter", "event_id": new_event_id("newsletter")}
    )


def _accepted(r: httpx.Response) -> bool:
    return r.status_code == 202 and r.json().get("accepted") == 1


def _version(http: httpx.Client, relay: RelayProcess) -> str:
    r = http.get(relay.admin_url("/readyz"))
    assert r.status_code == 200, r.text
    version: str = r.json()["rules_version"]
    return version


def _reloads(http: httpx.Client, relay: RelayProcess, result: str) -> float:
    return metric(scrape(http, relay), "relay_rules_reloads_total", result=result)


def _add_newsletter(tree: dict[str, Any]) -> None:
    tree["events"]["newsletter"] = {}


def test_an_edit_applies_and_a_broken_edit_keeps_the_old_rules(relays: MakeRelay) -> None:
    relay = relays()
    events_file = relay.rules_dir / "events.yaml"
    dests_file = relay.rules_dir / "destinations.yaml"
    with client() as http:
        r = _newsletter(http, relay)
        assert r.status_code == 400 and "newsletter" in r.text, r.text  # no contract yet
        v0 = _version(http, relay)
        ok0, err0 = _reloads(http, relay, "ok"), _reloads(http, relay, "error")

        time.sleep(1.1)  # a new mtime even on coarse file systems
        t0 = time.monotonic()
        edit(events_file, _add_newsletter)
        wait_until(lambda: _accepted(_newsletter(http, relay)), APPLY_WITHIN * 2,
                   "the newsletter contract to apply", interval=0.2)
        took = time.monotonic() - t0
        assert took <= APPLY_WITHIN, f"the edit took {took:.1f}s to apply"
        v1 = _version(http, relay)
        assert v1 != v0
        # Counted once the old delivery workers have drained (they finish in-flight sends).
        wait_until(lambda: _reloads(http, relay, "ok") >= ok0 + 1, APPLY_WITHIN,
                   'relay_rules_reloads_total{result="ok"} to count the edit')
        assert _reloads(http, relay, "ok") == ok0 + 1
        assert _reloads(http, relay, "error") == err0

        # A broken edit: a typo in a purpose, then a YAML syntax error.
        good_dests = dests_file.read_text()
        dests_file.write_text(good_dests.replace("purpose: analytics", "purpose: analytic"))
        wait_until(lambda: _reloads(http, relay, "error") >= err0 + 1, APPLY_WITHIN * 2,
                   'relay_rules_reloads_total{result="error"} to count the typo')
        log = relay.log_text()
        line = next((ln for ln in log.splitlines() if "rules reload rejected" in ln), "")
        assert re.search(r"destinations\.yaml:\d+:\d+: .*destinations\.archive\.purpose", line), log
        assert "analytic" in line, line
        good_events = events_file.read_text()
        time.sleep(1.1)
        events_file.write_text(good_events + "\n  broken: [unclosed\n")
        wait_until(lambda: _reloads(http, relay, "error") >= err0 + 2, APPLY_WITHIN * 2,
                   'relay_rules_reloads_total{result="error"} to count the syntax error')

        # The running rules are still the last good ones.
        assert _version(http, relay) == v1
        assert _reloads(http, relay, "ok") == ok0 + 1
        assert _accepted(_newsletter(http, relay))
        eid = new_event_id("still")
        assert _accepted(post_browser(http, relay, page_view(eid)))
        wait_until(lambda: any(e["event_id"] == eid for e in archived(relay)), 10,
                   "the archive to keep receiving under the old rules")

        # Fixed again: applied.
        time.sleep(1.1)
        dests_file.write_text(good_dests)
        events_file.write_text(good_events)
        wait_until(lambda: _reloads(http, relay, "ok") >= ok0 + 2, APPLY_WITHIN * 2,
                   "the repaired rules to load")
        assert _version(http, relay) == v1  # the same content as before the broken edits
        assert relay.running


def test_sighup_reloads(relays: MakeRelay) -> None:
    relay = relays()
    events_file = relay.rules_dir / "events.yaml"
    with client() as http:
        assert not _accepted(_newsletter(http, relay))
        ok0 = _reloads(http, relay, "ok")
        # Change the file but keep its mtime, so only SIGHUP can make the relay look.
        before = os.stat(events_file)
        edit(events_file, _add_newsletter)
        os.utime(events_file, ns=(before.st_atime_ns, before.st_mtime_ns))
        relay.signal(signal.SIGHUP)
        wait_until(lambda: _accepted(_newsletter(http, relay)), APPLY_WITHIN,
                   "the newsletter contract to apply after SIGHUP", interval=0.2)
        wait_until(lambda: _reloads(http, relay, "ok") >= ok0 + 1, 5, "the SIGHUP reload count")
        # Nothing changed at all: SIGHUP still reloads (and counts it).
        ok1 = _reloads(http, relay, "ok")
        relay.signal(signal.SIGHUP)
        wait_until(lambda: _reloads(http, relay, "ok") >= ok1 + 1, 5, "a second SIGHUP reload")
        assert _reloads(http, relay, "error") == 0
        assert relay.running, relay.log_text()[-2000:]


def test_rules_files_added_and_removed_are_noticed(relays: MakeRelay) -> None:
    relay = relays()
    extra: Path = relay.rules_dir / "zz-newsletter.yml"
    with client() as http:
        assert not _accepted(_newsletter(http, relay))
        extra.write_text("events:\n  newsletter: {}\n")
        wait_until(lambda: _accepted(_newsletter(http, relay)), APPLY_WITHIN * 2,
                   "a new rules file to load", interval=0.2)
        extra.unlink()
        wait_until(lambda: not _accepted(_newsletter(http, relay)), APPLY_WITHIN * 2,
                   "a removed rules file to unload", interval=0.2)
