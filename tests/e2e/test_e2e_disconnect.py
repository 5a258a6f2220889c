"""Clients that go away mid-body, or send a broken chunked body, against a real ``relay serve``.

Each ingest endpoint (``/e``, ``/hook/{source}``, ``/v1/{call}``) is sent the headers and half
of a body before the socket closes, and a chunked body whose framing is broken. The relay must
log no traceback for any of them and keep serving: the next ordinary event is accepted.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator

import pytest

from .relayproc import RelayProcess
from .rulesdir import make_rules
from .wire import client, new_event_id, page_view, post_backend, post_browser, purchase

WRITE_KEY = "e2e-segment-write-key-7d41c0"
BASIC = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
SIGNATURE = "t=1,v1=00"  # never checked: the body never arrives whole


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    workdir = tmp_path_factory.mktemp("disconnect")
    rules = make_rules(workdir / "rules",
                       sources={"apps": {"type": "segment", "write_keys": [WRITE_KEY]}},
                       events={"Order Completed": {}})
    proc = RelayProcess(workdir, rules, name="disconnect")
    try:
        proc.start()
        yield proc
    finally:
        proc.close()


ENDPOINTS = {
    "browser": ("/t/e", "CF-IPCountry: US\r\n"),
    "webhook": ("/t/hook/backend", f"X-Relay-Signature: {SIGNATURE}\r\n"),
    "segment": ("/t/v1/track", f"Authorization: Basic {BASIC}\r\n"),
}
BODY = json.dumps({"event": "page_view", "event_id": "half-1", "type": "track",
                   "messageId": "half-1", "properties": {"pad": "x" * 4000}}).encode()


def _head(path: str, extra: str, framing: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"{extra}{framing}\r\n").encode()


def _half_body(relay: RelayProcess, path: str, extra: str) -> None:
    """Headers that announce the whole body, half of it, then the socket closes."""
    with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as sock:
        sock.sendall(_head(path, extra, f"Content-Length: {len(BODY)}\r\n"))
        sock.sendall(BODY[: len(BODY) // 2])
        time.sleep(0.2)  # the relay is reading the body when the client goes


def _half_chunked(relay: RelayProcess, path: str, extra: str) -> None:
    """A chunked body cut off inside a chunk."""
    with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as sock:
        sock.sendall(_head(path, extra, "Transfer-Encoding: chunked\r\n"))
        sock.sendall(b"%x\r\n" % len(BODY) + BODY[:1000])
        time.sleep(0.2)


def _broken_chunked(relay: RelayProcess, path: str, extra: str) -> bytes:
    """A chunk-size line that is not hexadecimal: the framing is broken. Returns what the
    server answered, if anything, before it closed the connection."""
    with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as sock:
        sock.sendall(_head(path, extra, "Transfer-Encoding: chunked\r\n"))
        sock.sendall(b"10\r\n" + BODY[:16] + b"\r\nzz-not-hex\r\n" + BODY[16:64] + b"\r\n")
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
        return answer


def _still_serving(relay: RelayProcess) -> None:
    with client() as http:
        r = post_browser(http, relay, page_view())
        assert r.status_code == 202, r.text
        r = post_backend(http, relay, purchase())
        assert r.status_code == 202, r.text
        r = http.post(relay.url("/v1/track"), headers={"Authorization": f"Basic {BASIC}"},
                      json={"type": "track", "event": "Order Completed", "userId": "u_1",
                            "messageId": new_event_id("seg")})
        assert r.status_code == 200 and r.json()["success"] is True, r.text


def _no_traceback(relay: RelayProcess, before: int) -> None:
    time.sleep(0.3)  # let the server write whatever it would log
    log = relay.log_text()[before:]
    assert "Traceback" not in log and "ClientDisconnect" not in log, log[-4000:]


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_a_client_that_leaves_mid_body_leaves_no_traceback(relay: RelayProcess,
                                                           endpoint: str) -> None:
    path, extra = ENDPOINTS[endpoint]
    before = len(relay.log_text())
    _half_body(relay, path, extra)
    _half_chunked(relay, path, extra)
    _no_traceback(relay, before)
    _still_serving(relay)
    assert relay.running


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_a_broken_chunked_body_leaves_no_traceback(relay: RelayProcess, endpoint: str) -> None:
    path, extra = ENDPOINTS[endpoint]
    before = len(relay.log_text())
    answer = _broken_chunked(relay, path, extra)
    assert b"Traceback" not in answer, answer
    assert not answer.startswith((b"HTTP/1.1 2", b"HTTP/1.1 5")), answer  # never accepted
    _no_traceback(relay, before)
    _still_serving(relay)
    assert relay.running
