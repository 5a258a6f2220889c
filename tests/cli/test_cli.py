"""CLI behaviour that needs no running relay."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from relay.cli import main


def test_serve_on_a_taken_port_says_so_in_one_line(
    rules_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RELAY_SECRET", "s")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", "--rules", str(rules_dir), "--port", str(port), "--admin-port", "0"])
    assert code == 1
    err = capsys.readouterr().err
    assert f"relay serve: cannot listen on 127.0.0.1:{port}" in err
    assert "Traceback" not in err


def test_not_yet_commands_say_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datamap"]) == 2
    assert "not in this release yet" in capsys.readouterr().err


def test_a_spool_left_in_the_working_directory_is_pointed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Relative spool paths used to be read from the working directory: a spool found there,
    when the var directory has none yet, may hold copies to deliver."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "relay.yaml").write_text("relay: {spool: 'sqlite:///spool.db'}\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spool.db").write_bytes(b"")
    assert main(["dlq", "list", "--rules", str(rules), "--var", "state"]) == 0
    err = capsys.readouterr().err
    assert f"the spool is {tmp_path}/state/spool.db" in err
    assert "spool.db is a spool from the working directory" in err and "move it" in err
    assert main(["dlq", "list", "--rules", str(rules), "--var", "state"]) == 0
    assert "move it" not in capsys.readouterr().err  # said once: the new spool exists now
