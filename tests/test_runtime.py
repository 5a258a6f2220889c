"""``Runtime``: what weak source secrets mean for a running relay's reloads."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.app import create_app
from relay.runtime import Runtime

GOOD = "runtime-test-backend-signing-secret"


@pytest.mark.parametrize("refuse", [True, False])
async def test_a_reload_bringing_a_weak_secret(
    rules_dir: Path, tmp_path: Path, refuse: bool
) -> None:
    """Serving a public address (refuse), a reload that brings a weak source secret is
    rejected like an invalid one; on loopback or embedded, it applies (and is logged)."""
    env = {"BACKEND_SIGNING_SECRET": GOOD, "RELAY_SECRET": "runtime-test-cookie-secret"}
    app = create_app(rules_dir, var_dir=tmp_path / "var", env=env, refuse_weak_secrets=refuse)
    runtime: Runtime = app.state.relay
    assert runtime.rules.policy == ()
    sources = rules_dir / "sources.yaml"
    sources.write_text(sources.read_text() + "  partner: {type: webhook, auth: {bearer: tok}}\n")
    assert await runtime.reload() is (not refuse)
    assert ("partner" in runtime.rules.sources) is (not refuse)
    errors = runtime.metrics.rules_reloads.labels("error").value
    assert errors == (1 if refuse else 0)
