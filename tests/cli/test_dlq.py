"""``relay dlq``: the spool under --var, and purge's manners (it asks first; with no
terminal it purges only with --yes). The same against a real relay: tests/e2e."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest

from relay.cli import main
from relay.spool.base import Row
from relay.spool.sqlite import SqliteSpool
from tests.e2e.relayproc import free_port

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
