"""Spools of either backend for the shared suite (``tests/spool/test_spool.py``): SQLite in a
temporary directory, Redis in ``RELAY_TEST_REDIS`` under a key prefix of its own (deleted
after the test). Redis must be running: a Redis test fails, never skips, without it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from relay.spool.base import Row
from relay.spool.redis import RedisSpool
from relay.spool.sqlite import SqliteSpool

REDIS_URL = os.environ.get("RELAY_TEST_REDIS", "redis://127.0.0.1:6379/14")


class FakeClock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def rows(n: int, destination: str = "ga4", start: int = 0) -> list[Row]:
    return [Row(destination, f"e{i}", b'{"event":"x","event_id":"e%d"}' % i)
            for i in range(start, start + n)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Store:
    """One spool's storage, which tests may open several times (several processes)."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.prefix = f"relay-test:{uuid.uuid4().hex[:12]}:"
        self.path = str(tmp_path / "var" / "spool.db")
        self.url = (f"sqlite:///{self.path}" if kind == "sqlite"
                    else f"{REDIS_URL}?prefix={self.prefix}")

    def open(self, clock: FakeClock | None = None, **options: Any) -> Any:
        kw: dict[str, Any] = {} if clock is None else {"clock": clock}
        if self.kind == "sqlite":
            return SqliteSpool(self.path, **kw, **options)
        return RedisSpool(self.url, **kw, **options)


def redis_client() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        pytest.fail(f"Redis is required at {REDIS_URL} and is not reachable: {exc!r}",
                    pytrace=False)
    return client


def drop_prefix(prefix: str) -> None:
    client = redis_client()
    try:
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made = Store(request.param, tmp_path)
    if made.kind == "redis":
        redis_client().close()
    yield made
    if made.kind == "redis":
        drop_prefix(made.prefix)


@pytest.fixture
def redis_store(tmp_path: Path) -> Iterator[Store]:
    made = Store("redis", tmp_path)
    redis_client().close()
    yield made
    drop_prefix(made.prefix)
