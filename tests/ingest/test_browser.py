"""The browser endpoint's own ASGI handling: headers, body, cookies, failures.

What it answers for each kind of request is covered in test_collect.py (through the mounted
Starlette app) and tests/e2e (through ``relay serve``'s direct dispatch).
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette

from relay.ingest.browser import browser
from relay.ingest.endpoint import Endpoint
from relay.runtime import Runtime
from relay.web import cookie, header_map
from tests.conftest import receiver

PAGE_VIEW = orjson.dumps({"event": "page_view", "context": {"page": {"url": "https://a.example/"}}})


def test_header_map_keeps_the_first_of_repeated_headers() -> None:
    raw = [(b"x-forwarded-for", b"1.1.1.1"), (b"host", b"a"), (b"x-forwarded-for", b"2.2.2.2")]
    assert header_map(raw) == {"x-forwarded-for": "1.1.1.1", "host": "a"}


def test_header_map_decodes_latin1() -> None:
    assert header_map([(b"x-name", "é".encode("latin-1"))]) == {"x-name": "é"}


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("other=1", None),
        ("_rc=abc.def", "abc.def"),
        ("a=1; _rc=abc; b=2", "abc"),
        ("x_rc=1", None),
        ('_rc="quoted"', "quoted"),
    ],
)
def test_cookie(header: str | None, expected: str | None) -> None:
    assert cookie(header, "_rc") == expected


def _scope(method: str = "POST", headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    return {
        "type": "http",
        "method": method,
        "path": "/t/e",
        "root_path": "/t",
        "headers": headers
        if headers is not None
        else [(b"content-type", b"application/json"), (b"host", b"127.0.0.1")],
        "client": ("203.0.113.7", 5000),
    }


async def _call(endpoint: Endpoint, scope: Any, receive: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    await endpoint(scope, receive, send)
    return sent


async def test_other_methods_get_405(relay_app: Starlette) -> None:
    sent = await _call(Endpoint(relay_app.state.relay, browser), _scope("GET"), receiver())
    assert sent[0]["status"] == 405 and (b"allow", b"POST") in sent[0]["headers"]


async def test_a_client_gone_before_its_body_gets_no_answer(relay_app: Starlette) -> None:
    endpoint = Endpoint(relay_app.state.relay, browser)
    assert await _call(endpoint, _scope(), receiver({"type": "http.disconnect"})) == []


async def test_a_bug_answers_500_as_json_and_is_logged(
    relay_app: Starlette, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    runtime: Runtime = relay_app.state.relay
    await runtime.ensure_started()

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(runtime.engine, "process", broken)
    body = {"type": "http.request", "body": PAGE_VIEW, "more_body": False}
    sent = await _call(Endpoint(runtime, browser), _scope(), receiver(body))
    assert sent[0]["status"] == 500
    assert orjson.loads(sent[1]["body"]) == {"error": "internal error; nothing was accepted"}
    assert "POST /t/e failed" in caplog.text and "boom" in caplog.text


async def test_answer_headers(client: httpx.AsyncClient) -> None:
    r = await client.post("/e", content=PAGE_VIEW, headers={"content-type": "application/json"})
    assert r.status_code == 202
    assert r.headers["content-type"] == "application/json"
    assert r.headers["content-length"] == str(len(r.content))
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["set-cookie"].startswith("_rc=")


async def test_the_cookie_is_kept_across_requests(client: httpx.AsyncClient) -> None:
    first = await client.post("/e", content=PAGE_VIEW, headers={"content-type": "text/plain"})
    value = first.headers["set-cookie"].split(";", 1)[0]
    again = await client.post(
        "/e", content=PAGE_VIEW, headers={"content-type": "text/plain", "cookie": value}
    )
    assert again.headers["set-cookie"].split(";", 1)[0] == value


async def test_a_413_closes_the_connection(client: httpx.AsyncClient) -> None:
    r = await client.post("/e", content=b"x" * 70_000, headers={"content-type": "text/plain"})
    assert r.status_code == 413 and r.headers["connection"] == "close"
