"""What the in-process proxy tests share: the proxy rules they run, a recording stand-in
for every upstream, and the relay mounted under ``/t`` in a host app. The fixtures that use
them (``upstream``, ``proxied``) are in conftest.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from starlette.applications import Starlette

from relay.app import create_app
from relay.proxy.state import ProxyState
from relay.runtime import Runtime

PROXY_RULES = """
proxy:
  gtag: {path: /lib/gtag.js, upstream: "https://www.googletagmanager.com/gtag/js", cache: 1h}
  ga:
    path: /g/collect
    upstream: "https://region1.google-analytics.com/g/collect"
    purpose: analytics
    forward_ip: truncate
    cookies: [_ga, "_ga_*"]
  ph:
    path: /ph/
    upstream: "https://eu.i.posthog.com"
    paths: {"static/": "https://eu-assets.i.posthog.com/static/", "decide": "https://decide.example/v3"}
    user_agent: pass
    forward_ip: keep
    forward_country: X-Visitor-Country
    max_body: 1000
  ph_array: {path: /ph/static/array.js, upstream: "https://pinned.example/array.js"}
  meta:
    path: /tr
    upstream: "https://www.facebook.com/tr"
    purpose: ads
    user_agent: strip
    query: {drop_params: [ud_em]}
    click_ids: {keep_for: ads}
  plain:
    {path: /api/event, upstream: "http://127.0.0.1:9/api/event", methods: [POST], concurrency: 1,
     queue: {size: 0}}
"""

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


async def _ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"upstream says hi", headers={"content-type": "text/plain"})


class Upstream:
    """A stand-in for every vendor: records each request; ``handler`` answers."""

    def __init__(self, handler: Handler = _ok) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.bodies.append(request.content)
        answer = await self.handler(request)
        # As a real transport does: the body still to be read (``content=`` reads it at once).
        return httpx.Response(answer.status_code, headers=answer.headers, stream=answer.stream)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    @property
    def hosts(self) -> set[str]:
        return {r.url.host for r in self.requests}

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


@dataclass
class Proxied:
    client: httpx.AsyncClient
    runtime: Runtime
    upstream: Upstream
    app: Starlette  # the host app: the relay mounted under /t
    proxy: ProxyState


def write_rules(rules_dir: Path, text: str = PROXY_RULES) -> None:
    (rules_dir / "proxy.yaml").write_text(text)


def open_proxied(
    rules_dir: Path, env: dict[str, str], tmp_path: Path, upstream: Upstream,
    rules: str = PROXY_RULES,
) -> _Opened:
    write_rules(rules_dir, rules)
    return _Opened(rules_dir, env, tmp_path, upstream)


class _Opened:
    def __init__(self, rules_dir: Path, env: dict[str, str], tmp_path: Path, up: Upstream) -> None:
        relay_app = create_app(rules_dir, var_dir=tmp_path / "var", env=env,
                               transport=up.transport())
        self.host = Starlette()
        self.host.mount("/t", relay_app)
        self.runtime: Runtime = relay_app.state.relay
        self.proxy: ProxyState = relay_app.state.proxy
        self.upstream = up

    async def __aenter__(self) -> Proxied:
        transport = httpx.ASGITransport(app=self.host, client=("203.0.113.77", 50000))
        self.client = httpx.AsyncClient(transport=transport, base_url="http://shop.example")
        return Proxied(self.client, self.runtime, self.upstream, self.host, self.proxy)

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        await self.runtime.stop()


def metric(runtime: Runtime, name: str) -> str:
    text = runtime.metrics.render().decode()
    return "\n".join(line for line in text.splitlines() if line.startswith(name))
