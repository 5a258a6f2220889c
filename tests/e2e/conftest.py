"""Fixtures for end-to-end tests: relay processes, stand-in vendors, rule dirs, Redis.

Every process and server a test starts is stopped at teardown, whatever happened. Redis is
required, never optional: a test that asks for ``redis_url`` fails loudly without it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from .relayproc import RelayProcess
from .rulesdir import make_rules
from .vendor import StandInVendor

# A dedicated database, flushed before and after (RELAY_TEST_REDIS_E2E picks another, so two
# checkouts can run their suites side by side). Under pytest-xdist (``-n N``) each worker
# has its own: 15 for the first, then 13, 12, ... (14 is the unit tests', keyed per test);
# RELAY_TEST_REDIS_E2E then lists one URL per worker, comma-separated.
_XDIST_DBS = (15, 13, 12, 11, 10, 9, 8, 7)


def _e2e_redis_url() -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")  # gw0, gw1, ...
    n = int(worker) if worker.isdigit() else 0
    given = [u for u in os.environ.get("RELAY_TEST_REDIS_E2E", "").split(",") if u]
    choices = given or [f"redis://127.0.0.1:6379/{db}" for db in _XDIST_DBS]
    if n >= len(choices):
        raise RuntimeError(
            f"pytest-xdist worker gw{n} has no Redis database of its own for the e2e tests: "
            f"RELAY_TEST_REDIS_E2E lists {len(choices)}; list one URL per worker "
            "(comma-separated) or run fewer workers (-n)")
    return choices[n]


REDIS_URL = _e2e_redis_url()

MakeRelay = Callable[..., RelayProcess]
MakeVendor = Callable[..., StandInVendor]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def vendors() -> Iterator[MakeVendor]:
    """``vendors(secret=..., batch=..., name=...)`` -> a started ``StandInVendor``."""
    started: list[StandInVendor] = []

    def make(**kwargs: Any) -> StandInVendor:
        vendor = StandInVendor(**kwargs)
        started.append(vendor)
        return vendor

    yield make
    for vendor in started:
        vendor.close()


@pytest.fixture
def relays(tmp_path: Path) -> Iterator[MakeRelay]:
    """``relays(rules_dir=None, env=None, name="relay", start=True, args=(), **sections)``
    -> a ``RelayProcess`` working in its own folder under ``tmp_path`` (``args``: more
    ``relay serve`` arguments). Without ``rules_dir`` the shipped rules are copied there,
    plus ``sections`` (see ``rulesdir.make_rules``)."""
    made: list[RelayProcess] = []

    def make(rules_dir: Path | None = None, *, env: dict[str, str] | None = None,
             name: str = "relay", start: bool = True, workdir: Path | None = None,
             args: Sequence[str] = (), **sections: Any) -> RelayProcess:
        workdir = workdir or tmp_path / name
        if rules_dir is None:
            rules_dir = make_rules(workdir / "rules", **sections)
        relay = RelayProcess(workdir, rules_dir, env=env, name=name, args=args)
        made.append(relay)
        if start:
            relay.start()
        return relay

    yield make
    for relay in made:
        relay.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The dedicated Redis database, flushed. Fails (never skips) when Redis is unreachable."""
    import redis

    r = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        r.ping()
    except redis.RedisError as exc:
        r.close()
        pytest.fail(f"Redis is required for this test at {REDIS_URL} and is not reachable: "
                    f"{exc!r}. Start it (redis-server) and run again.", pytrace=False)
    r.flushdb()
    try:
        yield REDIS_URL
    finally:
        r.flushdb()
        r.close()


@pytest.fixture(params=["sqlite", "redis"])
def spool_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment that puts a relay's spool on each backend in turn: the SQLite file
    under its ``--var``, or Redis (the dedicated database, flushed)."""
    if request.param == "sqlite":
        return {}
    url: str = request.getfixturevalue("redis_url")
    return {"RELAY_SPOOL": url}
