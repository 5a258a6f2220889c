"""The ledger on PostgreSQL beyond what both backends share (tests/ledger/test_ledger.py,
test_reconcile.py): replicas starting together on one database, a database that does not
answer (counted, never raised into an event), and a writing connection that breaks."""

from __future__ import annotations

import asyncio
import doctest

import psycopg
import pytest

from relay.ledger import LedgerUnreadable, PostgresLedger, factory, postgres
from relay.ledger.base import Buffered

from ..e2e.relayproc import free_port
from .hops import Feed


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(postgres).failed == 0
    assert doctest.testmod(factory).failed == 0


async def test_replicas_share_one_ledger(postgres_url: str) -> None:
    ledgers = [PostgresLedger(postgres_url, 1e12) for _ in range(3)]
    await asyncio.gather(*(ledger.start() for ledger in ledgers))  # the schema made once
    try:
        for i, ledger in enumerate(ledgers):
            feed = Feed(ledger)
            feed.received("e1", 100.0 + i, "browser", "page_view")
            feed.spooled("e1", 100.5 + i, f"dest{i}")
            await ledger.drain()
        for ledger in ledgers:
            hops = await ledger.trace("e1")
            assert [(h["hop"], h["destination"]) for h in hops] == [
                ("received", None), ("spooled", "dest0"), ("received", None),
                ("spooled", "dest1"), ("received", None), ("spooled", "dest2")]
    finally:
        for ledger in ledgers:
            await ledger.close()


async def test_a_database_that_does_not_answer_is_counted_never_raised() -> None:
    errors: list[None] = []
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    ledger = PostgresLedger(url, 3600, on_error=lambda: errors.append(None))
    await ledger.start()  # the relay starts anyway: logged and counted
    assert len(errors) == 1
    try:
        ledger.listener("received", {"event_id": "e1", "source": "browser"}, 1.0)
        assert isinstance(ledger, Buffered)
        ledger._flush()
        assert ledger.pending == 1
        await ledger.drain()
        assert ledger.pending == 0 and len(errors) == 2
        with pytest.raises(LedgerUnreadable, match=r"127\.0\.0\.1"):
            await ledger.trace("e1")
    finally:
        await ledger.close()


async def test_a_broken_connection_is_opened_again(postgres_url: str) -> None:
    errors: list[None] = []
    ledger = PostgresLedger(postgres_url, 1e12, on_error=lambda: errors.append(None))
    await ledger.start()
    try:
        feed = Feed(ledger)
        feed.received("e1", 1.0, "browser", "page_view")
        await ledger.drain()
        assert ledger._conn is not None
        pid = ledger._conn.info.backend_pid
        with psycopg.connect(postgres_url, autocommit=True) as admin:  # the server restarts
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        feed.received("e2", 2.0, "browser", "page_view")
        await ledger.drain()
        assert len(errors) == 1  # that batch is lost, counted
        feed.received("e3", 3.0, "browser", "page_view")
        await ledger.drain()
        assert len(errors) == 1
        assert [h["hop"] for h in await ledger.trace("e3")] == ["received"]
        assert await ledger.trace("e2") == []
        assert ledger._conn.info.backend_pid != pid
    finally:
        await ledger.close()


async def test_text_that_copy_escapes_comes_back_as_it_was(postgres_url: str) -> None:
    ledger = PostgresLedger(postgres_url, 1e12)
    await ledger.start()
    try:
        reason = 'a \\ backslash, a "quote", a tab\t, a newline\n and \\N'
        ledger.listener("dead-lettered", {"event_id": "e\\1\t", "destination": "crm",
                                          "status": 400, "reason": reason}, 1.0)
        await ledger.drain()
        [hop] = await ledger.trace("e\\1\t")
        assert (hop["hop"], hop["reason"], hop["status"]) == ("dead_lettered", reason, 400)
    finally:
        await ledger.close()
