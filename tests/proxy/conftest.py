"""Fixtures of the proxy tests: a recording upstream, and the relay mounted with the proxy
rules of ``tests/proxy/support.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.proxy.support import Proxied, Upstream, open_proxied


@pytest.fixture
def upstream() -> Upstream:
    """A recording stand-in for every upstream the proxy may contact."""
    return Upstream()


@pytest.fixture
async def proxied(
    rules_dir: Path, env: dict[str, str], tmp_path: Path, upstream: Upstream
) -> AsyncIterator[Proxied]:
    """The relay with the proxy rules of tests/proxy/support.py, mounted under ``/t``."""
    async with open_proxied(rules_dir, env, tmp_path, upstream) as p:
        yield p
