"""``relay serve`` before it starts anything: which addresses are loopback, and what weak
source secrets mean on each (the processes themselves: tests/e2e/test_e2e_secrets.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.cli import main
from relay.cli.serve import is_loopback


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("localhost", True), ("LOCALHOST", True),
    ("::1", True), ("[::1]", True), ("::ffff:127.0.0.1", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("192.168.1.20", False),
    ("10.0.0.5", False), ("fe80::1", False), ("relay.internal", False),
    ("128.0.0.1", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("host", ["192.0.2.10", "0.0.0.0", "::"])
def test_serve_refuses_a_public_address_with_the_shipped_secret(
    rules_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], host: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BACKEND_SIGNING_SECRET", raising=False)
    code = main(["serve", "--rules", str(rules_dir), "--host", host, "--port", "0"])
    assert code == 1
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert lines[0].startswith(f"relay serve: refusing to serve on {host}: 1 source secret is "
                               "not fit for production")
    assert len(lines) == 2 and ": R301 sources.backend.auth.hmac: source 'backend': " in lines[1]
    assert "set BACKEND_SIGNING_SECRET to a random value of at least 16 bytes" in lines[1]
    assert "change-me" not in err and out == ""
    assert not (tmp_path / "var").exists()  # nothing was started or made


def test_serve_names_every_weak_secret_in_one_line_each(
    rules_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (rules_dir / "zz-sources.yaml").write_text(
        "sources:\n"
        "  apps: {type: segment, write_keys: ['${SEGMENT_WRITE_KEY}']}\n"
        "  partner: {type: webhook, auth: {bearer: short-token}}\n"
    )
    monkeypatch.setenv("BACKEND_SIGNING_SECRET", "a-real-backend-signing-secret-0123")
    monkeypatch.setenv("SEGMENT_WRITE_KEY", "wk")
    assert main(["serve", "--rules", str(rules_dir), "--host", "10.1.2.3"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert "2 source secrets are not fit for production" in lines[0]
    assert len(lines) == 3
    assert "source 'apps': the write key is 2 bytes long" in lines[1]
    assert "set SEGMENT_WRITE_KEY to" in lines[1]
    assert "source 'partner': the bearer token is 11 bytes long" in lines[2]
    assert 'move it to an environment variable, "${PARTNER_TOKEN}"' in lines[2]
    assert "short-token" not in "\n".join(lines)


def test_check_warns_and_check_strict_fails(
    rules_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("BACKEND_SIGNING_SECRET", raising=False)
    assert main(["check", "--rules", str(rules_dir)]) == 0
    out, err = capsys.readouterr()
    assert ": R301 sources.backend.auth.hmac: " in out and out.rstrip().splitlines()[-1] \
        .startswith("ok: ")
    assert err == ""
    assert main(["check", "--strict", "--rules", str(rules_dir)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert ": R301 sources.backend.auth.hmac: " in err and "BACKEND_SIGNING_SECRET" in err
    assert err.rstrip().endswith(f"{rules_dir}: 1 error(s)")
    monkeypatch.setenv("BACKEND_SIGNING_SECRET", "a-real-backend-signing-secret-0123")
    assert main(["check", "--strict", "--rules", str(rules_dir)]) == 0


def test_check_strict_makes_every_warning_an_error(
    rules_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BACKEND_SIGNING_SECRET", "a-real-backend-signing-secret-0123")
    (rules_dir / "zz-relay.yaml").write_text(
        "relay: {client_ip: {header: CF-Connecting-IP, trusted_hops: 2}}\n")
    assert main(["check", "--rules", str(rules_dir)]) == 0
    assert ": R214 relay.client_ip.trusted_hops: " in capsys.readouterr().out
    assert main(["check", "--rules", str(rules_dir), "--strict"]) == 1
    assert ": R214 relay.client_ip.trusted_hops: " in capsys.readouterr().err


def test_several_workers_on_in_memory_state_refuse_to_start(
    rules_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BACKEND_SIGNING_SECRET", "a-real-backend-signing-secret-0123")
    monkeypatch.delenv("RELAY_STATE", raising=False)
    assert main(["serve", "--rules", str(rules_dir), "--workers", "4", "--port", "0"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("relay serve: --workers 4 needs shared state, and relay.state is "
                           "memory: dedup marks and copies held or waiting for consent would "
                           "be per process")
    assert "set RELAY_STATE=redis://127.0.0.1:6379/0 (relay.state comes from it)" in line
    assert not (tmp_path / "var").exists()


def test_the_advice_for_state_written_in_the_file(tmp_path: Path) -> None:
    from relay.cli.serve import state_is_per_process
    from relay.registry import load_rules

    (tmp_path / "relay.yaml").write_text("relay: {state: memory}\n")
    rules = load_rules(tmp_path, {})
    why = state_is_per_process(rules, 2)
    assert why is not None and "set relay.state: redis://127.0.0.1:6379/0 in the rules" in why
    assert state_is_per_process(rules, 1) is None
    (tmp_path / "relay.yaml").write_text("relay: {state: 'redis://127.0.0.1:6379/0'}\n")
    assert state_is_per_process(load_rules(tmp_path, {}), 8) is None


def test_serve_says_so_when_the_spool_cannot_be_opened(
    rules_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("not a directory")
    monkeypatch.setenv("RELAY_SPOOL", f"sqlite:///{tmp_path}/a-file/spool.db")
    code = main(["serve", "--rules", str(rules_dir), "--port", "0", "--admin-port", "0"])
    err = capsys.readouterr().err
    assert code == 1
    assert "relay serve: relay.spool: " in err and "a-file/spool.db" in err, err
    assert "Traceback" not in err
