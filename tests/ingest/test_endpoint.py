"""``Endpoint``: every ingest endpoint reads its body, and treats a client that goes away, one
way. A client that disconnects mid-body gets no answer, and nothing is logged as an error.

The same requests against a real ``relay serve`` are in tests/e2e/test_e2e_disconnect.py.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.exceptions
from starlette.applications import Starlette

from relay.app import create_app
from relay.runtime import Runtime
from relay.state import Mark
from tests.conftest import receiver

WRITE_KEY = "test-segment-write-key"
BODY = orjson.dumps({"event": "page_view", "event_id": "d-1", "type": "track",
                     "messageId": "d-1", "userId": "u-1", "properties": {"pad": "x" * 100}})
HEADERS: dict[str, list[tuple[bytes, bytes]]] = {
    "/e": [(b"cf-ipcountry", b"US")],
    "/hook/backend": [(b"x-relay-signature", b"t=1,v1=00")],
    "/v1/track": [(b"authorization", b"Basic " + base64.b64encode(WRITE_KEY.encode() + b":"))],
}


@pytest.fixture
async def app(rules_dir: Path, env: dict[str, str], tmp_path: Path) -> Any:
    (rules_dir / "zz-segment.yaml").write_text(
        f"sources:\n  apps: {{type: segment, write_keys: [{WRITE_KEY}]}}\n"
    )
    relay_app = create_app(rules_dir, var_dir=tmp_path / "var", env=env)
    yield relay_app
    runtime: Runtime = relay_app.state.relay
    await runtime.stop()


def _scope(path: str, length: int | None) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json"), (b"host", b"127.0.0.1"), *HEADERS[path]]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(),
            "root_path": "", "query_string": b"", "headers": headers,
            "client": ("203.0.113.7", 5000), "server": ("127.0.0.1", 8000),
            "scheme": "http", "http_version": "1.1"}


async def _call(app: Starlette, scope: dict[str, Any], *messages: dict[str, Any]) -> list[Any]:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receiver(*messages), send)
    return sent


@pytest.mark.parametrize("path", list(HEADERS))
@pytest.mark.parametrize("length", [len(BODY), None], ids=["content-length", "chunked"])
async def test_a_client_that_leaves_mid_body_gets_no_answer_and_no_error_is_logged(
    app: Starlette, path: str, length: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    half = {"type": "http.request", "body": BODY[: len(BODY) // 2], "more_body": True}
    with caplog.at_level(logging.INFO, logger="relay"):
        sent = await _call(app, _scope(path, length), half, {"type": "http.disconnect"})
    assert sent == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "ClientDisconnect" not in caplog.text and "Traceback" not in caplog.text


@pytest.mark.parametrize("path", list(HEADERS))
async def test_a_body_that_stalls_is_cut_with_408(
    rules_dir: Path, env: dict[str, str], tmp_path: Path, path: str
) -> None:
    (rules_dir / "zz-segment.yaml").write_text(
        f"sources:\n  apps: {{type: segment, write_keys: [{WRITE_KEY}]}}\n"
        "relay:\n  limits: {body_seconds: 1}\n"
    )
    relay_app = create_app(rules_dir, var_dir=tmp_path / "var", env=env)
    stalled = asyncio.Event()  # never set: the rest of the body never comes
    first = [{"type": "http.request", "body": BODY[:10], "more_body": True}]

    async def receive() -> dict[str, Any]:
        if first:
            return first.pop()
        await stalled.wait()
        raise AssertionError("unreachable")

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    try:
        await asyncio.wait_for(relay_app(_scope(path, len(BODY)), receive, send), 30)
    finally:
        await relay_app.state.relay.stop()
    assert sent[0]["status"] == 408, sent
    assert (b"connection", b"close") in sent[0]["headers"], sent
    assert b"did not arrive within 1 s" in sent[1]["body"], sent


@pytest.mark.parametrize("path", list(HEADERS))
async def test_the_relay_keeps_serving_after_a_disconnect(app: Starlette, path: str) -> None:
    await _call(app, _scope(path, None), {"type": "http.disconnect"})
    whole = {"type": "http.request", "body": b'{"event":"page_view"}', "more_body": False}
    sent = await _call(app, _scope("/e", None), whole)
    assert sent[0]["status"] == 202, sent


async def test_answers_of_5xx_are_counted_per_endpoint_and_status(
    app: Starlette, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing of a 5xx answer was accepted: counted, for an alert to say so."""
    runtime: Runtime = app.state.relay
    whole = {"type": "http.request", "body": b'{"event":"page_view"}', "more_body": False}
    await runtime.ensure_started()

    async def buggy(keys: Sequence[str], token: str, ttl: float) -> list[Mark]:
        raise RuntimeError("a bug")

    mark = runtime.state.mark
    runtime.state.mark = buggy  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="relay"):
        sent = await _call(app, _scope("/e", None), whole)
    assert sent[0]["status"] == 500
    # The state store unreachable: nothing accepted, and a retry later is safe.
    for error in (redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:1"),
                  redis.exceptions.TimeoutError("Timeout reading from socket"),
                  ConnectionRefusedError(111, "refused"), TimeoutError()):
        async def failing(keys: Sequence[str], token: str, ttl: float,
                          error: Exception = error) -> list[Mark]:
            raise error

        runtime.state.mark = failing  # type: ignore[method-assign]
        sent = await _call(app, _scope("/e", None), whole)
        assert sent[0]["status"] == 503, sent
        assert (b"retry-after", b"5") in sent[0]["headers"], sent
        assert b"state store unreachable; nothing was accepted" in sent[1]["body"], sent
    await runtime.spool.close()  # the spool cannot commit: 503
    runtime.state.mark = mark  # type: ignore[method-assign]
    sent = await _call(app, _scope("/e", None), whole)
    assert sent[0]["status"] == 503
    failures = runtime.metrics.ingest_failures.children
    assert {k: c.value for k, c in failures.items()} == {("browser", "500"): 1,
                                                         ("browser", "503"): 5}


async def test_every_endpoint_times_its_accepted_requests(app: Starlette) -> None:
    runtime: Runtime = app.state.relay
    hooks = _scope("/v1/track", None)
    sent = await _call(app, hooks, {"type": "http.request", "body": BODY, "more_body": False})
    assert sent[0]["status"] == 200, sent
    assert sum(runtime.metrics.ingest_latency.counts) == 1
