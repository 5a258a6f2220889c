from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from starlette.applications import Starlette

from relay.app import create_app
from relay.runtime import Runtime

from .postgres import fresh_schema

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_RULES = ROOT / "rules"

TEST_SECRET = "test-cookie-secret"
BACKEND_SECRET = "test-backend-secret"

# Property tests (hypothesis): a bounded number of examples each, so the suite stays fast.
# "ci" (chosen when CI is set, as .ci/run's environment has it) has no per-example deadline:
# the machine is shared and noisy, and a slow example is not a failure. It is also
# derandomized, so a CI run is the same run every time; "dev" explores new examples on each
# run (and remembers failing ones in .hypothesis/). HYPOTHESIS_PROFILE picks one by name.
settings.register_profile(
    "ci", max_examples=60, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=60, deadline=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI")
                                                               else "dev"))


@pytest.fixture
def rules_dir(tmp_path: Path) -> Iterator[Path]:
    """A copy of the shipped rules that tests may extend."""
    target = tmp_path / "rules"
    shutil.copytree(SHIPPED_RULES, target)
    yield target


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The delivery ledger a test fills and reads, once on each backend: the SQLite file
    the rules name by default (``ledger.db`` under ``tmp_path / "var"``), or a fresh
    PostgreSQL schema."""
    if request.param == "sqlite":
        yield "sqlite:///" + str(tmp_path / "var" / "ledger.db")
        return
    with fresh_schema() as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL schema (``tests/postgres.py``), for what only PostgreSQL does."""
    with fresh_schema() as url:
        yield url


@pytest.fixture
def ledger_rules(ledger_url: str, rules_dir: Path) -> str:
    """``ledger_url``, named in ``rules_dir`` as ``relay.ledger.url`` (a SQLite one is the
    default there already, under ``--var``)."""
    if not ledger_url.startswith("sqlite:"):
        (rules_dir / "zz-ledger.yaml").write_text(f"relay:\n  ledger: {{url: '{ledger_url}'}}\n")
    return ledger_url


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "RELAY_SECRET": TEST_SECRET,
        "RELAY_SPOOL": f"sqlite:///{tmp_path}/spool.db",
        "BACKEND_SIGNING_SECRET": BACKEND_SECRET,
        "ARCHIVE_PATH": str(tmp_path / "events.jsonl"),
    }


@pytest.fixture
async def relay_app(
    rules_dir: Path, env: dict[str, str], tmp_path: Path
) -> AsyncIterator[Starlette]:
    (rules_dir / "destinations.yaml").write_text(
        (rules_dir / "destinations.yaml").read_text().replace("var/events.jsonl", "${ARCHIVE_PATH}")
    )
    app = create_app(rules_dir, var_dir=tmp_path / "var", env=env)
    yield app
    runtime: Runtime = app.state.relay
    await runtime.stop()


@pytest.fixture
async def client(relay_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=relay_app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        yield c


def receiver(*messages: dict[str, Any]) -> Callable[[], Awaitable[dict[str, Any]]]:
    """An ASGI ``receive`` that hands out ``messages`` in order."""
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    return receive
