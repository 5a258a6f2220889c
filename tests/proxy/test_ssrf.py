"""The proxy reaches only the upstream named by its route (SPEC section 8).

Each case sends a crafted request target straight into the ASGI app (an HTTP client would
normalize most of them away) and fails if any host but the route's is contacted. The
absolute-form target (``GET http://evil.example/ HTTP/1.1``) needs a real server: see
test_proxy_socket.py.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from tests.proxy.support import Proxied, Upstream

PH_HOSTS = {"eu.i.posthog.com", "eu-assets.i.posthog.com", "decide.example"}


async def send_raw(
    p: Proxied, raw_target: bytes, method: str = "GET",
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> tuple[int, dict[str, str]]:
    """Call the host app with exactly this request target, as a server would pass it."""
    raw_path, _, query = raw_target.partition(b"?")
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1", "method": method, "scheme": "http",
        "path": unquote(raw_path.decode("latin-1")), "raw_path": raw_path,
        "query_string": query, "root_path": "",
        "headers": [(b"host", b"shop.example"), *headers],
        "client": ("203.0.113.77", 50000), "server": ("shop.example", 80),
    }
    messages: list[MutableMapping[str, Any]] = []
    sent_request = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        messages.append(message)

    await p.app(scope, receive, send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}


def only_route_hosts(p: Proxied, allowed: set[str]) -> None:
    assert p.upstream.hosts <= allowed, f"contacted {p.upstream.hosts - allowed}"


@pytest.mark.parametrize("target", [
    b"/t/ph/../../evil",
    b"/t/ph/static/../../x",
    b"/t/ph/./x",
    b"/t/ph/x/..",
])
async def test_dot_dot_traversal(proxied: Proxied, target: bytes) -> None:
    status, _ = await send_raw(proxied, target)
    assert status in (400, 404)
    assert proxied.upstream.requests == []


@pytest.mark.parametrize("target", [b"/t/ph//evil.example/x", b"//evil.example/t/ph/x",
                                    b"/t//evil.example/ph/x"])
async def test_double_slash_host(proxied: Proxied, target: bytes) -> None:
    status, _ = await send_raw(proxied, target)
    assert status in (400, 404)
    assert proxied.upstream.requests == []


@pytest.mark.parametrize("target", [
    b"/t/ph/%2e%2e/%2e%2e/evil",
    b"/t/ph/%2E%2E/x",
    b"/t/ph/static/%2e%2e/decide",
    b"/t/ph/.%2e/x",
])
async def test_percent_encoded_dots(proxied: Proxied, target: bytes) -> None:
    status, _ = await send_raw(proxied, target)
    assert status in (400, 404)
    assert proxied.upstream.requests == []


@pytest.mark.parametrize("target", [
    b"/t/ph/%2f%2fevil.example/x",
    b"/t/ph/..%2f..%2fx",
    b"/t/ph/static%2F..%2F..%2Fx",
])
async def test_percent_encoded_slash(proxied: Proxied, target: bytes) -> None:
    status, _ = await send_raw(proxied, target)
    assert status == 400
    assert proxied.upstream.requests == []


@pytest.mark.parametrize("target", [
    b"/t/ph/\\evil.example/x",
    b"/t/ph/\\\\evil.example\\x",
    b"/t/ph/..\\..\\x",
    b"/t/ph/%5c%5cevil.example/x",
    b"/t/ph/%5C..%5C..%5Cx",
])
async def test_backslash_tricks(proxied: Proxied, target: bytes) -> None:
    status, _ = await send_raw(proxied, target)
    assert status == 400
    assert proxied.upstream.requests == []


@pytest.mark.parametrize("target", [b"/t/ph/x%0d%0aHost:%20evil.example", b"/t/ph/x%00y"])
async def test_control_characters(proxied: Proxied, target: bytes) -> None:
    status, _ = await send_raw(proxied, target)
    assert status in (400, 404)  # a newline does not even match the relay's mount
    assert proxied.upstream.requests == []


async def test_at_sign_stays_a_path(proxied: Proxied) -> None:
    for target in (b"/t/ph/@evil.example/x", b"/t/ph/static/@evil.example",
                   b"/t/ph/user:pass@evil.example/x", b"/t/ph/x?@evil.example"):
        status, _ = await send_raw(proxied, target)
        assert status == 200, target
    only_route_hosts(proxied, PH_HOSTS)
    assert [str(r.url) for r in proxied.upstream.requests] == [
        "https://eu.i.posthog.com/@evil.example/x",
        "https://eu-assets.i.posthog.com/static/@evil.example",
        "https://eu.i.posthog.com/user:pass@evil.example/x",
        "https://eu.i.posthog.com/x?@evil.example",
    ]
    status, _ = await send_raw(proxied, b"/t/lib/gtag.js@evil.example")  # exact routes: exact
    assert status == 404
    only_route_hosts(proxied, PH_HOSTS)


async def test_absolute_form_in_the_scope_path(proxied: Proxied) -> None:
    status, _ = await send_raw(proxied, b"http://evil.example/t/ph/x")
    assert status == 404
    assert proxied.upstream.requests == []


async def test_host_and_forwarding_headers_are_ignored(proxied: Proxied) -> None:
    status, _ = await send_raw(proxied, b"/t/ph/e/", headers=(
        (b"host", b"evil.example"), (b"x-forwarded-host", b"evil.example"),
        (b"x-forwarded-proto", b"http"), (b"forwarded", b"host=evil.example"),
        (b"x-original-url", b"http://evil.example/"),
    ))
    assert status == 200
    only_route_hosts(proxied, {"eu.i.posthog.com"})
    assert proxied.upstream.last.headers["host"] == "eu.i.posthog.com"


async def test_upstream_redirects_are_never_followed(
    proxied: Proxied, upstream: Upstream
) -> None:
    async def redirect(request: httpx.Request) -> httpx.Response:
        if request.url.host != "eu.i.posthog.com":
            return httpx.Response(599)
        return httpx.Response(307, headers={"location": "http://127.0.0.1:9901/metrics"})

    upstream.handler = redirect
    status, headers = await send_raw(proxied, b"/t/ph/e/", method="POST")
    assert status == 307 and headers["location"] == "http://127.0.0.1:9901/metrics"
    assert len(upstream.requests) == 1
    only_route_hosts(proxied, {"eu.i.posthog.com"})
