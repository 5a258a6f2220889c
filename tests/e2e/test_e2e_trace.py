"""``relay trace`` on a real relay's ledger: every hop of an event in time order, in the
JSON shape of the contract, including consent and dedup decisions and each attempt."""

from __future__ import annotations

import json

from .conftest import MakeRelay, MakeVendor
from .relayproc import run_cli
from .rulesdir import webhook
from .wire import client, post_backend, post_browser, wait_until

HOP_KEYS = {"at", "hop", "source", "event", "destination", "purpose", "status", "attempt",
            "reason", "fields"}
WAIT = 15.0


def test_trace_shows_every_hop_of_an_event(relays: MakeRelay, vendors: MakeVendor,
                                           spool_env: dict[str, str]) -> None:
    """On either spool: the ledger is the relay's own, whichever spool it delivers from."""
    crm = vendors(name="crm")
    crm.respond_sequence([503, 200])  # the first attempt fails, the retry delivers
    relay = relays(env=spool_env,
                   destinations={"crm": webhook(crm, events=["purchase"], purpose="ads")})
    order = {"event": "purchase", "event_id": "ord-trace-1", "context": {"country": "US"},
             "user": {"email": "buyer@example.com"},
             "properties": {"order_id": "O-1", "value": 10, "currency": "USD"}}
    with client() as c:
        assert post_backend(c, relay, order).status_code == 202
        assert post_backend(c, relay, order).json()["duplicates"] == 1  # a repeat
        eu = {"CF-IPCountry": "DE"}
        assert post_browser(c, relay, {"event": "page_view", "event_id": "pv-eu"},
                            headers=eu).status_code == 202
    wait_until(lambda: crm.delivered(), WAIT, "the purchase at the crm stand-in")

    def trace(event_id: str) -> list[dict[str, object]] | None:
        done = run_cli(["trace", event_id, "--format", "json", "--rules", str(relay.rules_dir),
                        "--var", str(relay.var_dir)], cwd=relay.workdir)
        if done.returncode != 0:
            return None
        body = json.loads(done.stdout)
        assert body["event_id"] == event_id and set(body) == {"event_id", "hops"}
        hops: list[dict[str, object]] = body["hops"]
        return hops

    def delivered_twice() -> list[dict[str, object]] | None:
        hops = trace("ord-trace-1")
        done = hops and [h for h in hops if h["hop"] == "delivered"]
        return hops if done and len(done) == 2 else None  # crm and the archive

    hops = wait_until(delivered_twice, WAIT, "both deliveries in the ledger")
    assert all(set(h) == HOP_KEYS for h in hops)
    names = [h["hop"] for h in hops]
    assert names[0] == "received" and names.count("received") == 2
    assert "retried" in names and names.count("duplicate") == 2  # crm and the archive
    assert [h["at"] for h in hops] == sorted(str(h["at"]) for h in hops)
    retried = next(h for h in hops if h["hop"] == "retried")
    assert (retried["destination"], retried["status"], retried["attempt"]) == ("crm", 503, 1)
    spooled = next(h for h in hops if h["hop"] == "spooled" and h["destination"] == "crm")
    assert isinstance(spooled["fields"], list) and "properties.order_id" in spooled["fields"]
    assert all(h["source"] == "backend" and h["event"] == "purchase" for h in hops)
    assert "buyer@example.com" not in json.dumps(hops)

    eu_hops = wait_until(lambda: trace("pv-eu"), WAIT, "the EU page view in the ledger")
    held = [h for h in eu_hops if h["hop"] == "held"]
    assert held and all(h["purpose"] for h in held)  # waiting for which purpose

    text = run_cli(["trace", "ord-trace-1", "--rules", str(relay.rules_dir),
                    "--var", str(relay.var_dir)], cwd=relay.workdir)
    assert text.returncode == 0 and "retried" in text.stdout and "status=503" in text.stdout
    unknown = run_cli(["trace", "no-such-event", "--rules", str(relay.rules_dir),
                       "--var", str(relay.var_dir)], cwd=relay.workdir)
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines()[-1].startswith("relay trace: no event")
