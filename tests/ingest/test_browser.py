"""The browser endpoint's own ASGI handling: headers, body, cookies, failures.

What it answers for each kind of request is covered in test_collect.py (through the mounted
Starlette app) and tests/e2e (through ``relay serve``'s direct dispatch).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
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


# -- abuse controls: origin allow-list, rate limit, bots --------------------------------

HEADLESS_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
               "HeadlessChrome/131.0.0.0 Safari/537.36")
GOOGLEBOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


@contextlib.asynccontextmanager
async def _abuse_app(rules_dir: Any, env: dict[str, str], tmp_path: Any, *, relay: str = "",
                     browser: str = "{type: browser}") -> AsyncIterator[tuple[Starlette, Runtime]]:
    """The shipped rules with ``relay`` added to the relay section and the browser source
    replaced by ``browser``: the app and its runtime, stopped afterwards."""
    from relay.app import create_app

    relay_yaml = rules_dir / "relay.yaml"
    relay_yaml.write_text(relay_yaml.read_text().replace("  prefix: /t\n",
                                                         "  prefix: /t\n" + relay))
    sources = rules_dir / "sources.yaml"
    sources.write_text(sources.read_text().replace("browser: {type: browser}",
                                                   f"browser: {browser}"))
    app = create_app(rules_dir, var_dir=tmp_path / "var", env=env)
    rt: Runtime = app.state.relay
    try:
        yield app, rt
    finally:
        await rt.stop()


async def _post(app: Starlette, headers: dict[str, str], ip: str = "203.0.113.7"
                ) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(ip, 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.example") as c:
        return await c.post("/e", content=PAGE_VIEW,
                            headers={"content-type": "text/plain", **headers})


async def test_a_foreign_origin_is_refused_403_and_counted(
    rules_dir: Any, env: dict[str, str], tmp_path: Any
) -> None:
    browser = "{type: browser, allowed_origins: [https://shop.example]}"
    async with _abuse_app(rules_dir, env, tmp_path, browser=browser) as (app, rt):
        r = await _post(app, {"origin": "https://evil.example"})
        assert r.status_code == 403
        assert r.json() == {"error": "origin https://evil.example may not post events here "
                                     "(sources.browser.allowed_origins)"}
        assert "set-cookie" not in r.headers
        assert (await _post(app, {"origin": "https://shop.example"})).status_code == 202
        assert (await _post(app, {"referer": "https://shop.example/cart"})).status_code == 202
        assert (await _post(app, {})).status_code == 202  # not a browser
        get = rt.metrics.registry.get_sample_value
        assert get("relay_origin_refused_total", {"source": "browser"}) == 1


async def test_without_allowed_origins_the_own_host_and_loopback_may_post(
    rules_dir: Any, env: dict[str, str], tmp_path: Any
) -> None:
    async with _abuse_app(rules_dir, env, tmp_path) as (app, _rt):
        assert (await _post(app, {"origin": "https://shop.example"})).status_code == 202
        assert (await _post(app, {"origin": "http://localhost:3000"})).status_code == 202
        assert (await _post(app, {"origin": "https://evil.example"})).status_code == 403


async def test_over_the_rate_the_answer_is_429_with_retry_after_per_address(
    rules_dir: Any, env: dict[str, str], tmp_path: Any
) -> None:
    limit = "  rate_limit: {per_second: 0.2, burst: 2}\n"
    async with _abuse_app(rules_dir, env, tmp_path, relay=limit) as (app, rt):
        assert [(await _post(app, {})).status_code for _ in range(2)] == [202, 202]
        r = await _post(app, {})
        assert r.status_code == 429
        assert r.json()["error"].startswith("rate limited")
        assert 1 <= int(r.headers["retry-after"]) <= 5  # a token every 5 s, rounded up
        assert (await _post(app, {}, ip="198.51.100.9")).status_code == 202
        get = rt.metrics.registry.get_sample_value
        assert get("relay_rate_limited_total", {"endpoint": "browser"}) == 1


async def test_bots_are_dropped_flagged_or_kept_and_counted(
    rules_dir: Any, env: dict[str, str], tmp_path: Any
) -> None:
    async with _abuse_app(rules_dir, env, tmp_path) as (app, rt):
        dropped = await _post(app, {"user-agent": GOOGLEBOT_UA})
        assert dropped.status_code == 202
        assert dropped.json() == {"accepted": 0, "duplicates": 0, "rejected": [],
                                  "dropped_bot": 1}
        seen: list[Any] = []
        original = rt.engine.process

        async def spy(items: Any, meta: Any, commit: Any = None) -> Any:
            seen.append(meta)
            return await original(items, meta, commit)

        rt.engine.process = spy  # type: ignore[method-assign,assignment]
        flagged = await _post(app, {"user-agent": HEADLESS_UA})
        assert flagged.status_code == 202 and flagged.json()["accepted"] == 1
        assert seen[-1].bot is True
        person = await _post(app, {"user-agent": "Mozilla/5.0 (X11; Linux) Firefox/133.0"})
        assert person.json()["accepted"] == 1 and seen[-1].bot is False
        get = rt.metrics.registry.get_sample_value
        assert get("relay_bot_events_total", {"source": "browser", "action": "drop"}) == 1
        assert get("relay_bot_events_total", {"source": "browser", "action": "flag"}) == 1


async def test_when_the_buckets_cannot_answer_the_request_passes(
    rules_dir: Any, env: dict[str, str], tmp_path: Any
) -> None:
    class Down:
        rate, burst = 1.0, 1.0

        async def take(self, client: str) -> float:
            raise ConnectionError("Redis is away")

    limit = "  rate_limit: {per_second: 1, burst: 1}\n"
    async with _abuse_app(rules_dir, env, tmp_path, relay=limit) as (app, rt):
        await rt.ensure_started()
        rt.limiter = Down()
        assert [(await _post(app, {})).status_code for _ in range(3)] == [202, 202, 202]
