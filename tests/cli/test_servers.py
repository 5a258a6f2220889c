"""``relay.cli.servers``: the listening sockets, each server's settings, and the in-flight
count granian's stop waits on (the servers themselves run in tests/e2e/test_e2e_servers.py)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from relay.cli import servers
from relay.cli.servers import DEFAULT_SERVER, SERVERS, hypercorn_config, listen


def test_listen_binds_every_address_or_none() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            listen([("127.0.0.1", 0), ("127.0.0.1", port)])
    sockets = listen([("127.0.0.1", 0), ("127.0.0.1", 0)])
    try:
        ports = {s.getsockname()[1] for s in sockets}
        assert len(ports) == 2 and all(s.get_inheritable() for s in sockets)
    finally:
        for s in sockets:
            s.close()


def test_the_default_server_is_one_of_the_three() -> None:
    assert SERVERS == ("uvicorn", "granian", "hypercorn")
    assert DEFAULT_SERVER in SERVERS


def test_hypercorn_adds_no_date_server_or_access_log_and_has_its_limits() -> None:
    config = hypercorn_config()
    assert config.include_date_header is False and config.include_server_header is False
    assert config.accesslog is None
    assert config.keep_alive_timeout == servers.KEEP_ALIVE
    assert config.read_timeout == servers.READ_TIMEOUT
    assert config.h11_max_incomplete_size == servers.MAX_HEAD
    assert config.graceful_timeout == servers.GRACE


async def test_the_in_flight_count_waits_for_requests_to_finish() -> None:
    release = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()

    tracked = servers._Inflight(app)
    request = asyncio.ensure_future(tracked({"type": "http"}, None, None))
    await asyncio.sleep(0)
    assert tracked.active == 1
    assert await tracked.drained(0.01) is False
    release.set()
    assert await tracked.drained(5.0) is True
    await request
    await tracked({"type": "lifespan"}, None, None)  # not a request: not counted
    assert tracked.active == 0
