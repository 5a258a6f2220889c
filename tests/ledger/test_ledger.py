"""The delivery ledger: hops to rows, the ledger's writes, reads, links and pruning (on
SQLite and on PostgreSQL), and what a running relay records (in process, through its real
hop stream)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from relay.ledger import open_ledger
from relay.ledger.base import Buffered
from relay.ledger.record import record
from relay.observe.log import HOPS, hop, listen
from relay.personal import Subjects
from relay.runtime import Runtime
from tests.conftest import TEST_SECRET


def test_a_hop_becomes_what_the_ledger_keeps() -> None:
    eid, hop_, subjects = record("dead-lettered", {"event_id": "e1", "destination": "ga4",
                                                   "status": 400, "attempt": 3,
                                                   "reason": "permanent"}, 10.0)
    assert (eid, subjects) == ("e1", ())
    assert hop_ == {"at": 10.0, "hop": "dead_lettered", "destination": "ga4",
                    "reason": "permanent", "status": 400, "attempt": 3}
    _, spooled, _ = record("spooled", {
        "event_id": "e1", "destination": "ga4", "_source": "browser", "_event": "page_view",
        "_schema": 2, "_payload": b'{"b":1,"a":{"x":[1]},"ann@example.com":2}',
        "_consent": {"ads": "denied", "analytics": "granted"}}, 1.0)
    assert spooled["fields"] == ["[redacted]", "a.x[]", "b"]  # names only, none personal
    assert spooled["consent"] == {"ads": "denied", "analytics": "granted"}
    assert (spooled["source"], spooled["event"], spooled["schema"]) == ("browser", "page_view", 2)
    assert record("received", {"event_id": "e1", "_people": ["h1"]}, 1.0)[2] == ("h1",)
    assert record("replayed", {"destination": "ga4", "count": 3}, 1.0)[0] is None


async def test_the_ledger_records_traces_links_and_prunes(ledger_url: str) -> None:
    now = [1_800_000_000.0]
    writes: list[float] = []
    ledger = open_ledger(ledger_url, retention=3600, clock=lambda: now[0],
                         on_write=writes.append)
    await ledger.start()
    try:
        feed = ledger.listener
        feed("received", {"event_id": "e1", "source": "backend", "event": "purchase",
                          "_people": ["p1", "p2"]}, now[0])
        feed("spooled", {"event_id": "e1", "destination": "ga4",
                         "_payload": b'{"events": [{"name": "purchase"}]}',
                         "_source": "backend", "_event": "purchase",
                         "_consent": {"analytics": "granted"}}, now[0] + 1)
        feed("retried", {"event_id": "e1", "destination": "ga4", "status": 503,
                         "attempt": 1}, now[0] + 2)
        feed("delivered", {"event_id": "e1", "destination": "ga4", "status": 204,
                           "attempt": 2}, now[0] + 3)
        feed("suppressed", {"event_id": "e1", "destination": "meta", "purpose": "ads",
                            "reason": "default (EU)"}, now[0] + 1)
        assert ledger.pending == 0  # buffered: handed over every FLUSH_EVERY seconds
        assert isinstance(ledger, Buffered)
        ledger._flush()  # what the timer does
        assert ledger.pending == 5  # handed to the ledger's thread, not written yet
        await ledger.drain()
        assert ledger.pending == 0 and len(writes) == 1 and 0 < writes[0] < 5
        trace = await ledger.trace("e1")
        assert [h["hop"] for h in trace] == ["received", "spooled", "suppressed", "retried",
                                             "delivered"]
        assert {h["source"] for h in trace} == {"backend"}
        assert trace[0]["at"] == "2027-01-15T08:00:00.000Z"
        assert trace[1]["fields"] == ["events[].name"] and trace[2]["purpose"] == "ads"
        copies = await ledger.query(
            "SELECT destination, outcome, attempts, consent FROM copies ORDER BY destination")
        assert [row[:3] for row in copies] == [("ga4", "delivered", 2),
                                               ("meta", "suppressed", 0)]
        assert json.loads(copies[0][3]) == {"analytics": "granted"} and copies[1][3] is None
        assert await ledger.events_of(["p2", "nobody"]) == ["e1"]
        assert await ledger.unlink(["p1", "p2"]) == 2
        assert await ledger.events_of(["p1"]) == []
    finally:
        await ledger.close()
    now[0] += 7200  # past the retention: pruned when the ledger opens again
    again = open_ledger(ledger_url, retention=3600, clock=lambda: now[0])
    await again.start()
    try:
        assert await again.trace("e1") == []
        assert await again.query("SELECT COUNT(*) FROM copies") == [(0,)]
    finally:
        await again.close()


def test_private_fields_reach_listeners_and_never_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[dict[str, object]] = []
    stop = listen(lambda name, fields, at: seen.append(fields))
    try:
        with caplog.at_level(logging.INFO, logger=HOPS.name):
            hop("received", event_id="e1", _people=["secret-hash"])
    finally:
        stop()
    assert seen == [{"event_id": "e1", "_people": ["secret-hash"]}]
    [line] = [r.getMessage() for r in caplog.records if r.name == HOPS.name]
    assert "_people" not in line and "secret-hash" not in line and '"event_id":"e1"' in line


@pytest.fixture
def ledger_app(relay_app: Starlette) -> Iterator[Runtime]:
    yield relay_app.state.relay


async def _settle(rt: Runtime, events: str, n: int) -> None:
    for _ in range(200):
        if Path(events).exists() and len(Path(events).read_text().splitlines()) >= n:
            break
        await asyncio.sleep(0.02)
    assert rt.ledger is not None
    await rt.ledger.drain()


async def test_a_running_relay_records_its_events(
    client: httpx.AsyncClient, ledger_app: Runtime, env: dict[str, str]
) -> None:
    rt = ledger_app
    eu = {"cf-ipcountry": "DE"}
    r = await client.post("/e", json={"event": "page_view", "event_id": "pv1",
                                      "user": {"email": " Ann@Example.com", "id": "u42"}},
                          headers={"cf-ipcountry": "US"})
    assert r.status_code == 202, r.text
    await client.post("/e", json={"event": "page_view", "event_id": "pv1"},
                      headers={"cf-ipcountry": "US"})
    await client.post("/e", json={"event": "page_view", "event_id": "pv2",
                                  "consent": {"analytics": "denied"}}, headers=eu)
    await _settle(rt, env["ARCHIVE_PATH"], 1)
    assert rt.ledger is not None
    for _ in range(200):  # the delivered hop follows the file's write
        hops = [h["hop"] for h in await rt.ledger.trace("pv1")]
        if "delivered" in hops:
            break
        await asyncio.sleep(0.02)
        await rt.ledger.drain()
    assert sorted(hops) == ["delivered", "duplicate", "received", "received", "spooled"]
    assert hops[:2] == ["received", "spooled"]  # in time order
    [spooled] = [h for h in await rt.ledger.trace("pv1") if h["hop"] == "spooled"]
    assert "user.email" in spooled["fields"] and spooled["destination"] == "archive"
    assert [h["hop"] for h in await rt.ledger.trace("pv2")] == ["received", "suppressed"]
    consent = await rt.ledger.query(
        "SELECT consent FROM copies WHERE event_id = 'pv1' AND destination = 'archive'")
    assert json.loads(consent[0][0]) == {"ads": "granted", "analytics": "granted"}
    # The person's events are found by the keyed hashes of any of their ids, never by a
    # value the ledger holds.
    subjects = Subjects([TEST_SECRET])
    assert await rt.ledger.events_of(subjects.lookup({"email": "ann@example.com"})) == ["pv1"]
    assert await rt.ledger.events_of(subjects.lookup({"id": "u42"})) == ["pv1"]
    dump = b"".join(p.read_bytes() for p in Path(rt.ledger.where).parent.glob("ledger.db*"))
    for raw in (b"Ann@Example.com", b"ann@example.com", b"u42", b"203.0.113.7"):
        assert raw not in dump


async def test_the_spooled_hop_is_stamped_before_the_copy_can_be_delivered(
    client: httpx.AsyncClient, ledger_app: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the spool has committed a copy, another worker may deliver it (and record
    that) before this request's own hops are out: ``spooled`` carries the time the commit
    began, so a trace and ``relay reconcile`` never see the delivery first."""
    rt, committed = ledger_app, []
    put = rt.spool.put

    async def slow_after_commit(*args: object) -> None:
        await put(*args)  # type: ignore[arg-type]
        committed.append(time.time())
        await asyncio.sleep(0.05)  # the rest of the request after its commit

    monkeypatch.setattr(rt.spool, "put", slow_after_commit)
    stamped: list[float] = []
    stop = listen(lambda name, fields, at: stamped.append(at) if name == "spooled" else None)
    try:
        r = await client.post("/e", json={"event": "page_view", "event_id": "st1"},
                              headers={"cf-ipcountry": "US"})
    finally:
        stop()
    assert r.status_code == 202, r.text
    assert stamped and committed and max(stamped) <= committed[0]
