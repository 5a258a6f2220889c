"""Secrets are never defaults, with real ``relay serve`` processes: on the shipped rules'
example backend secret, ``--host 0.0.0.0`` refuses to start (exit 1, naming the source and
the variable), and ``127.0.0.1`` starts with a loud warning, so the README's quick start
(signing with ``change-me-backend-secret``) still works there."""

from __future__ import annotations

from pathlib import Path

from .conftest import MakeRelay
from .relayproc import SHIPPED_RULES, free_port, run_cli
from .wire import client, post_backend, purchase

UNSET = {"BACKEND_SIGNING_SECRET": ""}  # the shipped ${BACKEND_SIGNING_SECRET:-change-me-...}
EXAMPLE = "change-me-backend-secret"


def test_serve_on_every_address_refuses_the_example_secret(tmp_path: Path) -> None:
    done = run_cli(["serve", "--rules", str(SHIPPED_RULES), "--host", "0.0.0.0",
                    "--port", str(free_port()), "--admin-port", str(free_port())],
                   cwd=tmp_path, env=UNSET, timeout=30)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith("relay serve: refusing to serve on 0.0.0.0: 1 source secret is "
                               "not fit for production"), done.stderr
    assert len(lines) == 2, done.stderr
    assert "sources.yaml:" in lines[1] and " R301 sources.backend.auth.hmac: source 'backend':" \
        in lines[1], lines[1]
    assert "set BACKEND_SIGNING_SECRET to a random value of at least 16 bytes" in lines[1]
    assert EXAMPLE not in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "var").exists()  # it stopped before making anything


def test_serve_on_loopback_starts_with_a_loud_warning(relays: MakeRelay) -> None:
    relay = relays(env=UNSET)
    log = relay.log_text()
    warnings = [line for line in log.splitlines() if line.startswith("relay serve: WARNING: ")]
    assert len(warnings) == 3, log
    assert "1 source secret is not fit for production; serving on loopback (127.0.0.1)" \
        in warnings[0]
    assert "R301 sources.backend.auth.hmac" in warnings[1]
    assert "BACKEND_SIGNING_SECRET" in warnings[1]
    assert "--host 0.0.0.0 refuses to start" in warnings[2]
    with client() as http:  # the quick start: a purchase signed with the example secret
        r = post_backend(http, relay, purchase(), secret=EXAMPLE)
        assert r.status_code == 202, r.text


def test_serve_on_loopback_with_a_real_secret_says_nothing(relays: MakeRelay) -> None:
    relay = relays()  # BACKEND_SIGNING_SECRET is the tests' own, long enough
    assert "WARNING" not in relay.log_text() and "R301" not in relay.log_text()
