"""``relay.forget``: the relay part on a real spool, state store and ledger; the vendor part's
subject mapping, request loop and scrubbing; the receipt."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from relay.forget import exit_code, forget, local, render_text, vendors
from relay.forget.run import scrubber
from relay.ledger import Ledger, open_ledger
from relay.personal import Subjects
from relay.registry import load_rules
from relay.spool.base import Quarantined, Row
from relay.spool.sqlite import SqliteSpool
from relay.state import MemoryState, Pending
from relay.types import Call, Outcome

SUBJECTS = Subjects(["old-secret", "new-secret"])
OLD = Subjects(["old-secret"])  # links made before the rotation


@pytest.fixture
async def parts(tmp_path: Path, ledger_url: str
                ) -> AsyncIterator[tuple[SqliteSpool, MemoryState, Ledger]]:
    """The spool, the state and the ledger (on each backend) a forget works on."""
    spool = SqliteSpool(str(tmp_path / "spool.db"))
    ledger = open_ledger(ledger_url, 3600)
    await spool.start()
    await ledger.start()
    yield spool, MemoryState(100, 60), ledger
    await spool.close()
    await ledger.close()


def received(ledger: Ledger, eid: str, user: dict[str, Any], keys: Subjects) -> None:
    ledger.listener("received", {"event_id": eid, "source": "backend", "event": "purchase",
                                 "_people": keys.of(user)}, 1.0)


async def test_purge_finds_the_events_under_every_secret_and_deletes_only_theirs(
        parts: tuple[SqliteSpool, MemoryState, Ledger]) -> None:
    spool, state, ledger = parts
    received(ledger, "e1", {"id": "u_1"}, OLD)
    received(ledger, "e2", {"id": "u_1", "email": "a@b.example"}, SUBJECTS)
    received(ledger, "e3", {"id": "u_2"}, SUBJECTS)
    await spool.put([Row("ga4", "e1", b"{}"), Row("ga4", "e3", b"{}")],
                    [Quarantined("browser", "x", "bad", orjson.dumps({"event_id": "e2"}))])
    await state.hold(["eid:e2"], {"event": "purchase", "event_id": "e2", "fields": {}}, 60)
    await state.pend(Pending("c1", "e1", "page_view", {"ga4": "analytics"}, b"{}", 9e9), 60)

    part = await local.purge({"id": "u_1"}, SUBJECTS, spool, state, ledger)

    assert part.complete and part.events == 2
    assert (part.spool, part.quarantined, part.held, part.dead_letters) == (1, 1, 2, 0)
    assert part.ledger == 2  # e1 under the old secret, e2 under the new
    assert await ledger.events_of(SUBJECTS.lookup({"id": "u_1"})) == []
    assert await ledger.events_of(SUBJECTS.lookup({"id": "u_2"})) == ["e3"]
    assert spool.depths()[0] == {"ga4": 1}
    assert await ledger.trace("e1") != []  # what happened stays, about nobody


async def test_with_the_ledger_off_the_relay_part_is_not_complete(
        parts: tuple[SqliteSpool, MemoryState, Ledger]) -> None:
    spool, state, _ = parts
    part = await local.purge({"id": "u_1"}, SUBJECTS, spool, state, None)
    assert not part.complete and "ledger is off" in part.problems[0]
    receipt = {"subject": "s", "relay": part.report(), "destinations": []}
    assert exit_code(receipt) == 1 and "NOT COMPLETE" in render_text(receipt)


async def test_a_failing_state_store_keeps_the_links(
        parts: tuple[SqliteSpool, MemoryState, Ledger]) -> None:
    spool, _, ledger = parts
    received(ledger, "e1", {"id": "u_1"}, SUBJECTS)

    class Broken(MemoryState):
        async def forget_events(self, event_ids: Any) -> tuple[int, int]:
            raise ConnectionError("redis is away")

    part = await local.purge({"id": "u_1"}, SUBJECTS, spool, Broken(10, 60), ledger)
    assert not part.complete and part.ledger == 0
    assert await ledger.events_of(SUBJECTS.lookup({"id": "u_1"})) == ["e1"]  # run it again


def rules_with(tmp_path: Path, pipeline: list[dict[str, Any]]) -> Any:
    d = tmp_path / "rules"
    d.mkdir()
    (d / "r.yaml").write_text(orjson.dumps({
        "relay": {"cookie": {"secret": "s" * 32}},
        "purposes": {"analytics": {"default": {"*": "granted"}}},
        "pipelines": {"p": pipeline},
        "destinations": {"ph": {"type": "posthog", "purpose": "analytics", "pipeline": "p",
                                "settings": {"api_key": "phc_x"}}}}).decode())
    return load_rules(d)


def test_the_vendor_is_asked_for_the_id_the_pipeline_sent(tmp_path: Path) -> None:
    rules = rules_with(tmp_path, [{"hash": ["user.id"]}])
    sent = vendors.sent_user(rules, rules.destinations["ph"], {"id": "u_42"})
    assert sent["id"] != "u_42" and len(sent["id"]) == 64


async def test_a_vendor_that_does_not_answer_is_failed() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        step = Call(httpx.Request("GET", "http://vendor.test/x"), lambda r: Outcome("deleted", ""))
        outcome = await vendors.follow(step, client, 1.0)
    assert outcome.status == "failed" and "vendor.test" in outcome.detail


async def test_forget_names_the_person_only_by_the_keyed_hash(
        tmp_path: Path, parts: tuple[SqliteSpool, MemoryState, Ledger]) -> None:
    spool, state, ledger = parts
    rules = rules_with(tmp_path, [])
    async with httpx.AsyncClient(transport=httpx.MockTransport(
            lambda r: httpx.Response(500))) as client:
        receipt = await forget({"email": "Ann@Example.org"}, rules=rules, subjects=SUBJECTS,
                               spool=spool, state=state, ledger=ledger, client=client)
    assert receipt["subject"] == SUBJECTS.of({"email": "ann@example.org"})[0]
    assert receipt["destinations"] == [{"name": "ph", "type": "posthog",
                                        "status": "not_applicable",
                                        "detail": receipt["destinations"][0]["detail"]}]
    text = orjson.dumps(receipt).decode() + render_text(receipt)
    assert "ann@example.org" not in text.lower() and exit_code(receipt) == 0
    with pytest.raises(ValueError):
        await forget({"id": "a", "email": "b"}, rules=rules, subjects=SUBJECTS, spool=spool,
                     state=state, ledger=ledger, client=client)


def test_the_scrubber_takes_the_identifier_out_in_every_form() -> None:
    scrub = scrubber({"email": " Ann@Example.org"}, "abcdef0123456789")
    assert scrub("Matomo: no visit for ann@example.org / Ann@Example.org") == (
        "Matomo: no visit for [subject abcdef012345] / [subject abcdef012345]")
