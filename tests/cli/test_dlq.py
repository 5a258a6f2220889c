"""``relay dlq``: the spool under --var, and purge's manners (it asks first; with no
terminal it purges only with --yes). The same against a real relay: tests/e2e."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.cli import main
from relay.spool.base import Row
from relay.spool.sqlite import SqliteSpool
from tests.e2e.relayproc import free_port
from tests.spool.conftest import Store, drop_prefix, redis_client

RULES = """\
destinations:
  ga4: {type: log, events: "*", legal_basis: consent, retention: 7 days}
  meta: {type: log, events: "*", legal_basis: consent, retention: 7 days}
"""


class Terminal(io.StringIO):
    """A stdin that is a terminal, with the user's answer typed in."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rules").mkdir()
    # An admin port nothing listens on: these are the runs without a live relay (the live
    # path is tests/e2e's), whatever else runs on this machine's default 9901.
    (tmp_path / "rules" / "rules.yaml").write_text(
        RULES + f"relay: {{admin: {{port: {free_port()}}}}}\n")
    return tmp_path / "rules"


def dead_letters(spool_path: Path, **per_destination: int) -> None:
    async def run() -> None:
        spool = SqliteSpool(str(spool_path))
        await spool.start()
        for dest, n in per_destination.items():
            await spool.put([Row(dest, f"{dest}-{i}", b"{}") for i in range(n)])
            await spool.dead(await spool.claim(dest, n, 30), 400, "no", attempts=1)
        await spool.close()

    asyncio.run(run())


def left(spool_path: Path) -> list[str]:
    async def run() -> list[str]:
        spool = SqliteSpool(str(spool_path))
        await spool.start()
        try:
            return [d.event_id for d in await spool.dlq_list()]
        finally:
            await spool.close()

    return asyncio.run(run())


def dlq(rules: Path, *args: str) -> int:
    return main(["dlq", *args, "--rules", str(rules), "--var", "state"])


def test_list_reads_the_var_directory_with_iso_times(
        rules: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dead_letters(rules.parent / "state" / "spool.db", ga4=2)
    assert dlq(rules, "list") == 0
    out, err = capsys.readouterr()
    letters = [json.loads(line) for line in out.splitlines()]
    assert [d["event_id"] for d in letters] == ["ga4-0", "ga4-1"]
    assert isinstance(letters[0]["failed_at"], float)
    assert letters[0]["failed_at_iso"].endswith("Z") and "T" in letters[0]["failed_at_iso"]
    assert err == "2 dead letter(s)\n"


def test_purge_asks_and_does_it_on_yes(
        rules: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    spool = rules.parent / "state" / "spool.db"
    dead_letters(spool, ga4=2, meta=1)
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    assert dlq(rules, "purge", "--destination", "ga4") == 0
    out, err = capsys.readouterr()
    assert err == "purge 2 dead letter(s) of ga4? [y/N] "
    assert out == "purged 2 dead letter(s)\n"
    assert left(spool) == ["meta-0"]
    monkeypatch.setattr("sys.stdin", Terminal("YES\n"))
    assert dlq(rules, "purge") == 0
    assert "purge 1 dead letter(s) of all destinations? [y/N] " in capsys.readouterr().err
    assert left(spool) == []


@pytest.mark.parametrize("answer", ["\n", "n\n", "maybe\n", ""])
def test_purge_keeps_everything_unless_the_answer_is_yes(
        rules: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        answer: str) -> None:
    spool = rules.parent / "state" / "spool.db"
    dead_letters(spool, ga4=1)
    monkeypatch.setattr("sys.stdin", Terminal(answer))
    assert dlq(rules, "purge") == 1
    out, err = capsys.readouterr()
    assert err.endswith("[y/N] nothing purged\n") and out == ""
    assert left(spool) == ["ga4-0"]


def test_purge_without_a_terminal_needs_yes(
        rules: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    spool = rules.parent / "state" / "spool.db"
    dead_letters(spool, ga4=3)
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # a pipe, not a terminal
    assert dlq(rules, "purge") == 1
    assert "pass --yes to purge without asking" in capsys.readouterr().err
    assert len(left(spool)) == 3
    assert dlq(rules, "purge", "--yes") == 0
    assert capsys.readouterr().out == "purged 3 dead letter(s)\n"
    assert left(spool) == []


def test_purge_with_nothing_to_purge_asks_nothing(
        rules: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert dlq(rules, "purge", "--destination", "meta") == 0
    assert capsys.readouterr().out == "no dead letters of meta: nothing to purge\n"


@pytest.fixture
def redis_store(tmp_path: Path) -> Iterator[Store]:
    store = Store("redis", tmp_path)
    redis_client().close()  # fails the test when Redis does not answer
    yield store
    drop_prefix(store.prefix)


@pytest.fixture
def redis_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                redis_store: Store) -> Path:
    """Rules on a Redis spool (the test's own key prefix), no relay running."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "rules.yaml").write_text(
        RULES + f"relay: {{admin: {{port: {free_port()}}}, spool: '{redis_store.url}'}}\n")
    return tmp_path / "rules"


def redis_dead_letters(store: Store, **per_destination: int) -> list[str]:
    async def run() -> list[str]:
        spool = store.open()
        await spool.start()
        for dest, n in per_destination.items():
            await spool.put([Row(dest, f"{dest}-{i}", b"{}") for i in range(n)])
            await spool.dead(await spool.claim(dest, n, 30), 400, "no", attempts=1)
        waiting = [d.event_id for d in await spool.dlq_list()]
        await spool.close()
        return waiting

    return asyncio.run(run())


def test_list_replay_and_purge_work_on_a_redis_spool(
        redis_rules: Path, redis_store: Store, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert redis_dead_letters(redis_store, ga4=2, meta=1) == ["ga4-0", "ga4-1", "meta-0"]
    assert dlq(redis_rules, "list", "--destination", "ga4") == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["event_id"] for line in out.splitlines()] == ["ga4-0", "ga4-1"]
    assert err == "2 dead letter(s)\n"
    assert dlq(redis_rules, "replay", "--destination", "meta") == 0
    assert "replayed 1 dead letter(s)" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", Terminal("yes\n"))
    assert dlq(redis_rules, "purge") == 0
    assert "2" in capsys.readouterr().out
    assert redis_dead_letters(redis_store) == []


def test_a_redis_spool_that_does_not_answer_is_said_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "rules.yaml").write_text(
        RULES + f"relay: {{admin: {{port: {free_port()}}},"
        f" spool: 'redis://127.0.0.1:{free_port()}/0'}}\n")
    assert dlq(tmp_path / "rules", "list") == 1
    err = capsys.readouterr().err
    assert "dlq: the spool cannot be opened" in err and "ConnectionError" in err
