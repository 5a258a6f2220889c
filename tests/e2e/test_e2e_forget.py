"""``relay forget`` and ``relay dlq`` end to end: a real ``relay serve``, the vendors' deletion
APIs on their stand-ins, the relay's own copies (spool, dead letters, held copies, ledger
links), through the running relay's admin listener and, with no relay running, directly."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .conftest import MakeRelay
from .relayproc import RelayProcess, free_port, run_cli
from .rulesdir import write_yaml
from .spoolview import dead, outbox
from .standins.base import Reply
from .standins.ga4 import Ga4StandIn
from .standins.matomo import MatomoStandIn
from .standins.mixpanel import MixpanelStandIn
from .standins.posthog import PostHogStandIn
from .standins.segment import SegmentStandIn
from .vendordest import backend_purchase, destination
from .wire import client, new_event_id, post_backend, post_browser, wait_until

USER, OTHER, EMAIL = "u_forget_4711", "u_stays_0815", "Forget.Me@Example.org"
PH_KEY, SEG_KEY, MP_TOKEN, MT_SITE = "phc_e2eForgetKey0123456789abcdefghijk", "e2e-seg-wk", \
    "e2e0123456789abcdef0123456789ff", 3
NEVER = {"attempts": 1000, "base_backoff": "100ms", "max_backoff": "1s", "max_age": "1h"}


@dataclass
class Vendors:
    ph: PostHogStandIn
    seg: SegmentStandIn
    mp: MixpanelStandIn
    mt: MatomoStandIn
    ga4: Ga4StandIn


@pytest.fixture
def stand_ins() -> Iterator[Vendors]:
    v = Vendors(PostHogStandIn(PH_KEY), SegmentStandIn(SEG_KEY), MixpanelStandIn(MP_TOKEN),
                MatomoStandIn(MT_SITE), Ga4StandIn())
    yield v
    for s in (v.ph, v.seg, v.mp, v.mt, v.ga4):
        s.close()


def destinations(v: Vendors, key_file: Path) -> dict[str, Any]:
    """Every vendor with a deletion API, its deletion settings aimed at its stand-in; a
    Segment destination whose write key is refused (dead letters); a webhook nobody
    answers (copies that stay in the outbox)."""
    return {
        "ph": destination("posthog", {"api_key": PH_KEY, "endpoint": v.ph.endpoint},
                          deletion={"personal_api_key": v.ph.personal_api_key,
                                    "project_id": v.ph.project_id, "endpoint": v.ph.endpoint}),
        "seg": destination("segment", {"write_key": SEG_KEY, "endpoint": v.seg.endpoint},
                           deletion={"public_api_token": v.seg.public_api_token,
                                     "endpoint": v.seg.endpoint}),
        "seg_refused": destination("segment", {"write_key": "not-the-key",
                                               "endpoint": v.seg.endpoint}),
        "mp": destination("mixpanel", {"token": MP_TOKEN, "endpoint": v.mp.endpoint},
                          deletion={"gdpr_token": v.mp.gdpr_token, "endpoint": v.mp.endpoint}),
        "mt": destination("matomo", {"site_id": MT_SITE, "endpoint": v.mt.endpoint},
                          deletion={"token_auth": v.mt.admin_token}),
        "ga4": destination("ga4", {"measurement_id": v.ga4.measurement_id,
                                   "api_secret": v.ga4.api_secret, "endpoint": v.ga4.endpoint},
                           deletion={"property_id": v.ga4.property_id,
                                     "credentials": str(key_file),
                                     "endpoint": v.ga4.endpoint}),
        "down": destination("webhook", {"url": f"http://127.0.0.1:{free_port()}/hook"},
                            retry=NEVER),
    }


def relay_for(relays: MakeRelay, tmp_path: Path, v: Vendors, *,
              env: dict[str, str] | None = None) -> RelayProcess:
    """A relay whose rules name its admin port, so the CLI finds it running."""
    key = v.ga4.write_service_account_key(tmp_path / "ga4-deletion-key.json")
    relay = relays(start=False, env=env, destinations=destinations(v, key))
    write_yaml(relay.rules_dir / "zz-admin.yaml", {"relay": {"admin": {"port": relay.admin_port}}})
    return relay.start()


def browser_purchase(user: str, cid_event: str) -> dict[str, Any]:
    """A browser copy of a backend-authoritative purchase: held until the backend confirms."""
    return {"event": "purchase", "event_id": cid_event, "user": {"id": user, "email": EMAIL},
            "context": {"page": {"url": "https://shop.example/checkout"}},
            "properties": {"order_id": "O-" + cid_event[-6:], "value": 5.0, "currency": "EUR"}}


def receipt_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    receipt: dict[str, Any] = json.loads(done.stdout)
    assert re.fullmatch(r"[0-9a-f]{32}", receipt["subject"])
    return receipt


def statuses(receipt: dict[str, Any]) -> dict[str, str]:
    return {d["name"]: d["status"] for d in receipt["destinations"]}


def no_raw_subject(*texts: str) -> None:
    for text in texts:
        assert USER not in text and EMAIL not in text and EMAIL.lower() not in text


def test_forget_through_the_running_relay_reaches_its_memory_and_every_vendor(
        relays: MakeRelay, tmp_path: Path, stand_ins: Vendors, spool_env: dict[str, str]) -> None:
    v = stand_ins
    relay = relay_for(relays, tmp_path, v, env=spool_env)
    mine, theirs, held = backend_purchase(user={"id": USER, "email": EMAIL}), \
        backend_purchase(user={"id": OTHER}), browser_purchase(USER, new_event_id("held"))
    with client() as http:
        for ev in (mine, theirs):
            assert post_backend(http, relay, ev).status_code == 202
        assert post_browser(http, relay, held).status_code == 202  # held in memory
        wait_until(lambda: {e["distinct_id"] for e in v.ph.accepted} >= {USER, OTHER}, 20,
                   "both users at PostHog")
        wait_until(lambda: any(p.get("uid") == USER for p in v.mt.accepted), 20,
                   "the user's visit at Matomo")
        wait_until(lambda: {mine["event_id"], theirs["event_id"]} <= set(dead(relay)), 20,
                   "the refused Segment copies dead-lettered")
        assert {mine["event_id"], theirs["event_id"]} <= set(outbox(relay, "down"))

    done = relay.cli("forget", "--user-id", USER, "--format", "json")
    assert done.returncode == 0, done.stderr
    assert "through the running relay" in done.stderr
    receipt = receipt_of(done)
    part = receipt["relay"]
    assert part["complete"] and part["problems"] == []
    assert part["held"] == 1  # the browser copy held in the relay's memory
    assert part["spool"] >= 1 and part["dead_letters"] == 1 and part["ledger"] >= 1
    assert statuses(receipt) == {
        "archive": "manual", "ph": "requested", "seg": "requested", "seg_refused": "manual",
        "mp": "requested", "mt": "deleted", "ga4": "requested", "down": "manual"}
    no_raw_subject(done.stdout, done.stderr)

    # at the vendors: the person's own id, through each deletion API and its auth
    assert v.ph.deleted == [USER]
    assert [r["subjectIds"] for r in v.seg.regulations] == [[USER]]
    assert v.seg.regulations[0]["regulationType"] == "SUPPRESS_WITH_DELETE"
    assert [d["distinct_ids"] for d in v.mp.deletions] == [[USER]]
    assert [u for _, _, u in v.mt.visits()] == [OTHER]
    assert v.ga4.user_deletions == [{"userId": USER}]
    for standin in (v.ph, v.seg, v.mp, v.mt, v.ga4):
        assert standin.problems == []

    # in the relay: only the other person's copies are left, and the links are gone
    assert mine["event_id"] not in outbox(relay, "down") + dead(relay)
    assert theirs["event_id"] in outbox(relay, "down") and theirs["event_id"] in dead(relay)
    again = receipt_of(relay.cli("forget", "--user-id", USER, "--format", "json"))
    assert again["relay"]["events"] == 0 and again["relay"]["held"] == 0
    assert relay.cli("trace", theirs["event_id"]).returncode == 0  # delivered where, kept
    no_raw_subject(relay.log_text())

    # relay dlq through the admin listener: the other person's dead letter
    listed = relay.cli("dlq", "list")
    assert listed.returncode == 0 and "from the running relay" in listed.stderr
    assert [json.loads(line)["event_id"] for line in listed.stdout.splitlines()] == [
        theirs["event_id"]]
    purged = relay.cli("dlq", "purge", "--yes")
    assert purged.returncode == 0 and "through the running relay" in purged.stdout
    assert dead(relay) == []


def test_forget_with_no_relay_running_works_on_redis_state_and_the_spool(
        relays: MakeRelay, tmp_path: Path, stand_ins: Vendors, redis_url: str,
        spool_env: dict[str, str]) -> None:
    """Either spool: the SQLite file, or the Redis spool (streams) next to Redis state."""
    v = stand_ins
    relay = relay_for(relays, tmp_path, v, env={"RELAY_STATE": redis_url, **spool_env})
    mine, held = backend_purchase(user={"id": USER, "email": EMAIL}), \
        browser_purchase(USER, new_event_id("held"))
    with client() as http:
        assert post_backend(http, relay, mine).status_code == 202
        assert post_browser(http, relay, held).status_code == 202  # held, sealed, in Redis
        wait_until(lambda: mine["event_id"] in outbox(relay, "down"), 20, "the spooled copy")
    relay.stop()

    v.ga4.fail_next(1, Reply.json(503, {"error": "backendError"}))
    done = relay.cli("forget", "--email", EMAIL, "--format", "json")
    assert done.returncode == 1  # GA4 answered 5xx: failed, and said so
    assert "directly" in done.stderr
    receipt = receipt_of(done)
    assert receipt["relay"]["complete"] and receipt["relay"]["held"] == 1
    assert receipt["relay"]["spool"] >= 1
    found = statuses(receipt)
    assert found["ga4"] == "failed"
    # keyed by user id: an email names nobody there
    assert {found[n] for n in ("ph", "seg", "mp", "mt")} == {"not_applicable"}
    assert mine["event_id"] not in outbox(relay, "down")
    no_raw_subject(done.stdout, done.stderr)

    text = relay.cli("forget", "--email", EMAIL)  # GA4 answers now: by user-provided data
    assert text.returncode == 0, text.stdout + text.stderr
    assert "ga4" in text.stdout and "requested" in text.stdout
    assert v.ga4.user_deletions == [{"userProvidedData": EMAIL.lower()}]
    no_raw_subject(text.stdout, text.stderr)


def test_forget_refuses_a_running_relay_whose_token_differs(
        relays: MakeRelay, tmp_path: Path, stand_ins: Vendors) -> None:
    relay = relay_for(relays, tmp_path, stand_ins, env={"RELAY_ADMIN_TOKEN": "one-token-0123"})
    write_yaml(relay.rules_dir / "zz-admin.yaml", {"relay": {"admin": {
        "port": relay.admin_port, "token": "${RELAY_ADMIN_TOKEN}"}}})
    relay.restart()
    done = run_cli(["forget", "--rules", str(relay.rules_dir), "--user-id", USER],
                   cwd=relay.workdir, env={"RELAY_ADMIN_TOKEN": "another-token-4567"})
    assert done.returncode == 1 and "refuses the admin token" in done.stderr
    assert relay.cli("forget", "--user-id", USER).returncode == 0  # the right token
    assert stand_ins.ph.deleted == []
