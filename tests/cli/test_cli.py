"""CLI behaviour that needs no running relay."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import pytest

from relay.cli import main, parser
from tests.e2e.relayproc import free_port


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    choices: dict[str, argparse.ArgumentParser] = action.choices
    return choices


def test_the_commands() -> None:
    assert set(_subcommands()) == {"serve", "check", "test", "dlq", "demo", "trace", "diff",
                                   "reconcile", "forget", "datamap"}


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_help_has_a_description_and_shows_the_defaults(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    sub = _subcommands()[name]
    assert sub.description and " ".join(sub.description.split()) in text
    for action in sub._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        assert action.help, f"relay {name} {action.option_strings[0]} has no help"
        if action.default not in (None, False, argparse.SUPPRESS):
            assert f"(default: {action.default})" in text, (name, action.option_strings)
        elif action.default is None and action.nargs != 0:
            assert "(default: " in action.help, (name, action.option_strings)  # said in words


def test_every_command_with_rules_takes_var() -> None:
    for name, sub in _subcommands().items():
        options = {o for a in sub._actions for o in a.option_strings}
        if name in ("serve", "check", "test", "dlq", "trace", "reconcile", "forget"):
            assert {"--rules", "--var"} <= options, name


@pytest.mark.parametrize(("argv", "message"), [
    (["serve", "--workers", "0"], "argument --workers: 0 is less than 1"),
    (["serve", "--port", "70000"], "argument --port: 70000 is not a port (0 to 65535)"),
    (["dlq", "list", "--limit", "many"], "argument --limit: 'many' is not a whole number"),
])
def test_bad_numbers_say_what_to_fix(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    assert message in capsys.readouterr().err


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


def test_a_spool_left_in_the_working_directory_is_pointed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Relative spool paths used to be read from the working directory: a spool found there,
    when the var directory has none yet, may hold copies to deliver."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "relay.yaml").write_text(
        f"relay: {{spool: 'sqlite:///spool.db', admin: {{port: {free_port()}}}}}\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spool.db").write_bytes(b"")
    assert main(["dlq", "list", "--rules", str(rules), "--var", "state"]) == 0
    err = capsys.readouterr().err
    assert f"the spool is {tmp_path}/state/spool.db" in err
    assert "spool.db is a spool from the working directory" in err and "move it" in err
    assert main(["dlq", "list", "--rules", str(rules), "--var", "state"]) == 0
    assert "move it" not in capsys.readouterr().err  # said once: the new spool exists now


@pytest.mark.parametrize("command", [["serve"], ["demo"]])
def test_a_bad_log_level_is_one_clear_line(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RELAY_LOG_LEVEL", "chatty")
    assert main(command) == 1
    assert capsys.readouterr().err == (
        "relay: RELAY_LOG_LEVEL=chatty is not a log level (use one of DEBUG, INFO, WARNING, "
        "ERROR, CRITICAL)\n")
