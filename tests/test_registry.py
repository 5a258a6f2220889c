"""``relay.registry``: the catalog the rules are read with, and ``place``, which puts the
rules' local paths under the var directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.destinations.file import FileSettings
from relay.registry import load_rules, place


def _write(rules: Path, spool: str, archive: str) -> Path:
    rules.mkdir()
    (rules / "rules.yaml").write_text(
        f"relay: {{spool: '{spool}'}}\n"
        "destinations:\n"
        f"  archive: {{type: file, events: '*', settings: {{path: '{archive}'}}}}\n"
        "  logged: {type: log, events: '*'}\n"
    )
    return rules


def test_relative_paths_land_under_the_var_directory(tmp_path: Path) -> None:
    rules = load_rules(_write(tmp_path / "rules", "sqlite:///var/spool.db", "var/events.jsonl"))
    placed = place(rules, tmp_path / "state")
    assert placed.relay.spool == f"sqlite:///{tmp_path}/state/spool.db"
    assert placed.destinations["archive"].settings == FileSettings(f"{tmp_path}/state/events.jsonl")
    assert placed.destinations["logged"] == rules.destinations["logged"]
    assert rules.relay.spool == "sqlite:///var/spool.db"  # the rules themselves are unchanged


def test_a_relative_var_directory_is_made_absolute_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rules = load_rules(_write(tmp_path / "rules", "sqlite:///spool.db", "out/events.jsonl"))
    placed = place(rules, "var")
    assert placed.relay.spool == f"sqlite:///{tmp_path}/var/spool.db"
    assert placed.destinations["archive"].settings.path == f"{tmp_path}/var/out/events.jsonl"
    assert place(placed, "elsewhere") == placed  # absolute now: placing again changes nothing


def test_absolute_paths_stay_absolute(tmp_path: Path) -> None:
    spool, archive = tmp_path / "abs" / "spool.db", tmp_path / "abs" / "events.jsonl"
    rules = load_rules(_write(tmp_path / "rules", f"sqlite:///{spool}", str(archive)))
    placed = place(rules, tmp_path / "state")
    assert placed.relay.spool == f"sqlite:///{spool}"
    assert placed.destinations["archive"].settings.path == str(archive)
