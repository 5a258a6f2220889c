"""``relay.cli.uvicorn_http``: uvicorn's httptools protocol with a bounded request head, in
size and in time, on a stand-in transport (over real sockets: tests/e2e/test_e2e_servers.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from relay.cli.uvicorn_http import TOO_LARGE, bounded


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: Any) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5000)}.get(
            name, default)


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _protocol(max_head: int, head_timeout: float) -> tuple[Any, Transport]:
    config = uvicorn.Config(_app, log_config=None, lifespan="off")
    config.load()
    protocol = bounded(max_head, head_timeout)(config=config, server_state=ServerState(),
                                               app_state={}, _loop=asyncio.get_running_loop())
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


async def test_a_head_over_the_limit_is_answered_431_and_closed() -> None:
    protocol, transport = _protocol(1000, 30)
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n")
    assert transport.written == TOO_LARGE and transport.closed
    protocol.connection_lost(None)


async def test_a_head_under_the_limit_is_served() -> None:
    protocol, transport = _protocol(1000, 30)
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    for _ in range(20):
        await asyncio.sleep(0)
    assert transport.written.startswith(b"HTTP/1.1 200") and not transport.closed
    protocol.connection_lost(None)


async def test_a_head_not_sent_in_time_closes_the_connection() -> None:
    protocol, transport = _protocol(1000, 0.05)
    protocol.data_received(b"GET / HTTP/1.1\r\n")  # and no more
    await asyncio.sleep(0.2)
    assert transport.closed and transport.written == b""
    protocol.connection_lost(None)
