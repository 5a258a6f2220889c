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
