"""A real ``relay serve`` proxying to upstreams that fail in each way a network can, over the
relay's client (``relay/transport.py``, aiohttp underneath): a port that refuses the
connection and an upstream that resets it answer 502, one that takes the request and never
answers answers 504 once the route's ``timeout`` has passed. A healthy route of the same
relay keeps answering between the failures."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import httpx
import pytest

from .conftest import MakeRelay
from .relayproc import RelayProcess, free_port
from .wire import metric


class Raw:
    """A loopback TCP server on its own thread that reads each request's head and then either
    resets the connection (``mode="reset"``), says nothing until closed (``"silent"``) or
    answers 200 (``"ok"``)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            if self.mode == "reset":  # RST instead of FIN: linger on, for no time
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            elif self.mode == "silent":
                self.held.append(conn)
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n"
                             b"\r\nok")
                conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def _refusing_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    return free_port()


@pytest.fixture
def servers() -> Iterator[dict[str, Raw]]:
    made = {mode: Raw(mode) for mode in ("reset", "silent", "ok")}
    yield made
    for raw in made.values():
        raw.close()


@pytest.fixture
def relay(relays: MakeRelay, servers: dict[str, Raw]) -> RelayProcess:
    def route(path: str, port: int, timeout: str = "10s") -> dict[str, str]:
        return {"path": path, "upstream": f"http://127.0.0.1:{port}/x", "timeout": timeout}

    return relays(proxy={
        "refused": route("/refused", _refusing_port()),
        "reset": route("/reset", servers["reset"].port),
        "silent": route("/silent", servers["silent"].port, timeout="1s"),
        "ok": route("/ok", servers["ok"].port),
    })


@pytest.mark.parametrize(("path", "status"), [
    ("/refused", 502), ("/reset", 502), ("/silent", 504),
])
def test_an_upstream_failure_has_its_status(relay: RelayProcess, path: str,
                                            status: int) -> None:
    with httpx.Client(timeout=30, trust_env=False) as http:
        answer = http.get(relay.url(path))
        assert answer.status_code == status, answer.text
        assert f"proxy {path.strip('/')}: upstream" in answer.json()["error"], answer.text
        healthy = http.get(relay.url("/ok"))
        assert (healthy.status_code, healthy.text) == (200, "ok")
        text = http.get(relay.admin_url("/metrics")).text
    route = path.strip("/")
    assert metric(text, "relay_proxy_requests_total", route=route, status=str(status)) == 1
