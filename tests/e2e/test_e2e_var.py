"""``--var DIR`` moves all of the relay's state: a real ``relay serve --var X`` keeps its
cookie secret, SQLite spool and the archive file in X, and ``relay dlq --var X`` (from
another working directory) reads that spool."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import MakeRelay, MakeVendor
from .relayproc import run_cli
from .rulesdir import webhook
from .wire import client, page_view, post_browser, wait_until


def test_serve_and_dlq_keep_everything_under_var(
        relays: MakeRelay, vendors: MakeVendor, tmp_path: Path) -> None:
    vendor = vendors(name="strict")
    vendor.respond(400, body=b'{"error":"e2e-vendor: no"}')
    relay = relays(destinations={"strict": webhook(vendor)}, start=False,
                   env={"RELAY_SECRET": ""})  # the cookie secret is generated, in X
    state = tmp_path / "srv" / "relay"
    relay.var_dir = state
    relay.start()
    with client() as http:
        event = page_view()
        r = post_browser(http, relay, [event])
        assert r.status_code == 202, r.text

        def dead() -> bool:
            return bool(http.get(relay.admin_url("/dlq")).json())

        wait_until(dead, 15, "the dead letter on GET /dlq")
        wait_until(lambda: (state / "events.jsonl").exists(), 15, "the archive in X")
    assert event["event_id"] in (state / "events.jsonl").read_text()
    assert (state / "spool.db").exists() and (state / "cookie-secret").exists()
    assert not (relay.workdir / "var").exists(), sorted(relay.workdir.iterdir())

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rules = ["--rules", str(relay.rules_dir)]
    done = run_cli(["dlq", "list", *rules, "--var", str(state)], cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    letters = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(d["destination"], d["event_id"]) for d in letters] == [
        ("strict", event["event_id"])], done.stdout
    done = run_cli(["dlq", "list", *rules], cwd=elsewhere)  # the default --var: ./var, empty
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr
    assert (elsewhere / "var" / "spool.db").exists()
    done = run_cli(["dlq", "purge", "--yes", *rules, "--var", str(state)], cwd=elsewhere)
    assert done.returncode == 0 and done.stdout == "purged 1 dead letter(s)\n", done.stderr
    with client() as http:
        assert http.get(relay.admin_url("/dlq")).json() == []
