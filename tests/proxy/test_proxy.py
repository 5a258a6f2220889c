"""The first-party proxy in-process: routing, hygiene both ways, the consent gate, query
cleaning, limits and errors. The upstream is an ``httpx.MockTransport`` that records every
request it is asked for; the script cache is in test_proxy_cache.py, the SSRF cases in
test_proxy_ssrf.py and real sockets in test_proxy_socket.py."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from relay.app import create_admin_app
from tests.conftest import TEST_SECRET
from tests.proxy.support import Proxied, Upstream, metric, open_proxied

# -- routing ---------------------------------------------------------------------------


async def test_exact_route_forwards_to_its_upstream(proxied: Proxied) -> None:
    r = await proxied.client.post("/t/g/collect?v=2&tid=G-1&en=page_view",
                                  content=b"payload", headers={"cf-ipcountry": "US"})
    assert r.status_code == 200 and r.text == "upstream says hi"
    sent = proxied.upstream.last
    assert str(sent.url) == "https://region1.google-analytics.com/g/collect?v=2&tid=G-1&en=page_view"
    assert sent.headers["host"] == "region1.google-analytics.com"
    assert proxied.upstream.bodies == [b"payload"]
    assert 'relay_proxy_requests_total{route="ga",status="200"} 1.0' in metric(
        proxied.runtime, "relay_proxy_requests_total")


async def test_prefix_route_and_sub_paths(proxied: Proxied) -> None:
    c = proxied.client
    assert (await c.post("/t/ph/e/?ip=1", content=b"{}")).status_code == 200
    assert (await c.get("/t/ph/static/recorder.js")).status_code == 200
    assert (await c.get("/t/ph/decide")).status_code == 200
    assert (await c.get("/t/ph/")).status_code == 200
    urls = [str(r.url) for r in proxied.upstream.requests]
    assert urls == [
        "https://eu.i.posthog.com/e/?ip=1",
        "https://eu-assets.i.posthog.com/static/recorder.js",
        "https://decide.example/v3",
        "https://eu.i.posthog.com/",
    ]


async def test_longest_route_path_wins(proxied: Proxied) -> None:
    assert (await proxied.client.get("/t/ph/static/array.js")).status_code == 200
    assert str(proxied.upstream.last.url) == "https://pinned.example/array.js"


async def test_unknown_paths_and_the_relays_own_routes_are_untouched(proxied: Proxied) -> None:
    c = proxied.client
    assert (await c.get("/t/nothing-here")).status_code == 404
    r = await c.get("/t/ph")  # the prefix route is /ph/: Starlette redirects to it
    assert r.status_code == 307 and r.headers["location"] == "http://shop.example/t/ph/"
    assert (await c.get("/t/healthz")).status_code == 200
    assert (await c.get("/t/e")).status_code == 405  # the relay's route, not a proxy 404
    assert proxied.upstream.requests == []


async def test_methods(proxied: Proxied) -> None:
    c = proxied.client
    r = await c.put("/t/ph/e/", content=b"x")
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST, HEAD"
    assert (await c.head("/t/ph/e/")).status_code == 200
    assert (await c.get("/t/api/event")).status_code == 405
    assert [r.method for r in proxied.upstream.requests] == ["HEAD"]


# -- request hygiene -------------------------------------------------------------------


async def test_request_headers_are_cleaned(proxied: Proxied) -> None:
    token = proxied.runtime.signer.issue(None).value
    headers = {
        "cf-ipcountry": "US",
        "cookie": f"_ga=GA1.1.1; _ga_ABC=GS1; other=secret; _rc={token}; _gat=1",
        "authorization": "Bearer site-token",
        "x-forwarded-for": "198.51.100.1",
        "x-forwarded-host": "evil.example",
        "forwarded": "for=198.51.100.1",
        "true-client-ip": "198.51.100.2",
        "cf-connecting-ip": "198.51.100.3",
        "x-real-ip": "198.51.100.4",
        "connection": "keep-alive, x-secret-hop",
        "x-secret-hop": "1",
        "keep-alive": "timeout=5",
        "te": "trailers",
        "upgrade": "h2c",
        "proxy-authorization": "Basic abc",
        "via": "1.1 cdn",
        "accept-language": "de-DE",
        "content-type": "text/plain",
        "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                      "(KHTML, like Gecko) Chrome/120.0.6099.71 Safari/537.36",
    }
    r = await proxied.client.post("/t/g/collect", content=b"x", headers=headers)
    assert r.status_code == 200
    sent = proxied.upstream.last.headers
    assert sent["cookie"] == "_ga=GA1.1.1; _ga_ABC=GS1"
    assert sent["x-forwarded-for"] == "203.0.113.0"  # the TCP peer (no client_ip rule), /24
    for gone in ("authorization", "x-forwarded-host", "forwarded", "true-client-ip",
                 "cf-connecting-ip", "cf-ipcountry", "x-real-ip", "x-secret-hop", "keep-alive",
                 "te", "upgrade", "proxy-authorization", "via"):
        assert gone not in sent, gone
    assert sent["accept-language"] == "de-DE" and sent["content-type"] == "text/plain"
    assert sent["user-agent"] == "Mozilla/5.0 (Windows) Chrome/120"  # generalized by default
    assert sent["accept-encoding"] == "gzip, deflate"  # as the browser asked


async def test_ip_ua_and_country_per_route(proxied: Proxied) -> None:
    ua = "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/121.0"
    common = {"user-agent": ua, "cf-ipcountry": "US"}
    await proxied.client.post("/t/ph/e/", content=b"{}", headers=common)
    ph = proxied.upstream.last.headers
    assert ph["x-forwarded-for"] == "203.0.113.77" and ph["user-agent"] == ua
    assert ph["x-visitor-country"] == "US" and "cf-ipcountry" not in ph
    await proxied.client.get("/t/tr?id=1", headers=common)
    meta = proxied.upstream.last.headers
    assert "x-forwarded-for" not in meta and "user-agent" not in meta  # strip, strip
    assert "x-visitor-country" not in meta


async def test_client_hints_go_with_the_user_agent(proxied: Proxied) -> None:
    hints = {"sec-ch-ua": '"Chromium";v="126"', "sec-ch-ua-mobile": "?0",
             "sec-ch-ua-platform": '"Linux"', "sec-ch-ua-model": '"Pixel"',
             "sec-ch-ua-full-version-list": '"Chromium";v="126.0.1"',
             "sec-ch-ua-platform-version": '"6.5"'}
    await proxied.client.post("/t/ph/e/", content=b"{}", headers=hints)  # user_agent: pass
    assert all(proxied.upstream.last.headers[h] == v for h, v in hints.items())
    await proxied.client.post("/t/g/collect", content=b"x", headers=hints)  # generalize
    sent = {h for h in proxied.upstream.last.headers if h.startswith("sec-ch-ua")}
    assert sent == {"sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform"}
    await proxied.client.get("/t/tr?id=1", headers=hints)  # strip
    assert not [h for h in proxied.upstream.last.headers if h.startswith("sec-ch-ua")]


async def test_client_ip_comes_from_trusted_hops_only(
    rules_dir: Path, env: dict[str, str], tmp_path: Path, upstream: Upstream
) -> None:
    relay_yaml = rules_dir / "relay.yaml"
    relay_yaml.write_text(relay_yaml.read_text().replace(
        "  country_header: CF-IPCountry",
        "  country_header: CF-IPCountry\n  client_ip: {header: X-Forwarded-For, trusted_hops: 1}"))
    async with open_proxied(rules_dir, env, tmp_path, upstream) as p:
        await p.client.post("/t/ph/e/", content=b"{}",
                            headers={"x-forwarded-for": "6.6.6.6, 198.51.100.9"})
    assert upstream.last.headers["x-forwarded-for"] == "198.51.100.9"


async def test_query_loses_click_ids_and_dropped_params_only(proxied: Proxied) -> None:
    await proxied.client.post("/t/g/collect?v=2&tid=G-1&gclid=abc&dl=https%3A%2F%2Fs.example%2F",
                              content=b"", headers={"cf-ipcountry": "US"})
    assert proxied.upstream.last.url.query == b"v=2&tid=G-1&dl=https%3A%2F%2Fs.example%2F"
    # meta keeps click ids while ads is granted (US, no GPC), drops ud_em always
    await proxied.client.get("/t/tr?id=1&fbclid=F1&ud_em=abc&ev=PageView",
                             headers={"cf-ipcountry": "US"})
    assert proxied.upstream.last.url.query == b"id=1&fbclid=F1&ev=PageView"


async def test_referer_query_is_cleaned(proxied: Proxied) -> None:
    await proxied.client.get("/t/ph/e/", headers={"referer": "https://shop.example/p?gclid=x&a=1"})
    assert proxied.upstream.last.headers["referer"] == "https://shop.example/p?a=1"


# -- response hygiene ------------------------------------------------------------------


async def test_response_headers_and_cookies(upstream: Upstream, proxied: Proxied) -> None:
    async def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"ok", headers=[
            ("content-type", "text/plain"),
            ("connection", "close, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("alt-svc", 'h3=":443"'),
            ("strict-transport-security", "max-age=1"),
            ("set-cookie", "_ga=GA1.2.3; Domain=.google-analytics.com; Path=/; Max-Age=63072000;"
                           " Secure; SameSite=None"),
            ("set-cookie", "_ga_ABC=GS1; domain=google-analytics.com; path=/g"),
            ("set-cookie", "NID=tracking; Domain=.google.com; Path=/"),
            ("x-vendor", "kept"),
        ])

    upstream.handler = answer
    r = await proxied.client.post("/t/g/collect", content=b"", headers={"cf-ipcountry": "US"})
    assert r.status_code == 200
    assert r.headers.get_list("set-cookie") == [
        "_ga=GA1.2.3; Max-Age=63072000; Secure; SameSite=None; Path=/t/g/collect",
        "_ga_ABC=GS1; Path=/t/g/collect",
    ]
    for gone in ("connection", "x-hop", "keep-alive", "alt-svc", "strict-transport-security"):
        assert gone not in r.headers, gone
    assert r.headers["x-vendor"] == "kept"


async def test_the_shared_client_keeps_no_cookie(upstream: Upstream, proxied: Proxied) -> None:
    async def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"set-cookie": "_ga=user-a; Path=/; Max-Age=999"})

    upstream.handler = answer
    a = await proxied.client.post("/t/g/collect", content=b"", headers={"cf-ipcountry": "US"})
    assert a.headers["set-cookie"] == "_ga=user-a; Max-Age=999; Path=/t/g/collect"
    proxied.client.cookies.clear()
    await proxied.client.post("/t/g/collect", content=b"", headers={"cf-ipcountry": "US"})
    assert "cookie" not in proxied.upstream.last.headers  # user b never gets user a's cookie
    assert proxied.runtime.client is not None and len(proxied.runtime.client.cookies.jar) == 0


async def test_gzip_passes_through_undecoded(upstream: Upstream, proxied: Proxied) -> None:
    body = gzip.compress(b"window.vendor = 1;" * 500)

    async def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={
            "content-encoding": "gzip", "content-type": "application/javascript",
            "content-length": str(len(body))})

    upstream.handler = answer
    async with proxied.client.stream("GET", "/t/ph/static/x.js",
                                     headers={"accept-encoding": "gzip"}) as r:
        raw = b"".join([chunk async for chunk in r.aiter_raw()])
    assert r.headers["content-encoding"] == "gzip"
    assert raw == body
    assert upstream.last.headers["accept-encoding"] == "gzip"


async def test_redirects_go_to_the_browser(upstream: Upstream, proxied: Proxied) -> None:
    async def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "https://elsewhere.example/x"})

    upstream.handler = answer
    r = await proxied.client.get("/t/ph/e/")
    assert r.status_code == 302 and r.headers["location"] == "https://elsewhere.example/x"
    assert upstream.hosts == {"eu.i.posthog.com"} and len(upstream.requests) == 1


# -- the consent gate ------------------------------------------------------------------


@pytest.mark.parametrize(("query", "headers", "forwarded"), [
    ("", {"cf-ipcountry": "US"}, True),
    ("", {"cf-ipcountry": "DE"}, False),  # region default: EU denied
    ("", {}, True),  # no country: "*"
    ("?gcs=G111", {"cf-ipcountry": "DE"}, True),  # Consent Mode granted analytics_storage
    ("?gcs=G110", {"cf-ipcountry": "DE"}, False),
    ("?gcs=G100", {"cf-ipcountry": "US"}, False),  # explicitly denied beats the default
    ("?gcs=G1--", {"cf-ipcountry": "DE"}, False),  # unknown: the default
    ("", {"cf-ipcountry": "US", "sec-gpc": "1"}, True),  # analytics does not honour GPC
])
async def test_consent_gate_analytics(
    proxied: Proxied, query: str, headers: dict[str, str], forwarded: bool
) -> None:
    r = await proxied.client.post(f"/t/g/collect{query}", content=b"x", headers=headers)
    assert r.status_code == (200 if forwarded else 204)
    assert len(proxied.upstream.requests) == (1 if forwarded else 0)
    if not forwarded:
        assert r.content == b""


async def test_gpc_denies_ads(proxied: Proxied) -> None:
    r = await proxied.client.get("/t/tr?id=1", headers={"cf-ipcountry": "US", "sec-gpc": "1"})
    assert r.status_code == 204 and proxied.upstream.requests == []
    # Consent Mode: ad_storage granted is explicit, and explicit beats GPC
    r = await proxied.client.get("/t/tr?id=1&gcs=G110",
                                 headers={"cf-ipcountry": "US", "sec-gpc": "1"})
    assert r.status_code == 200
    assert 'relay_proxy_requests_total{route="meta",status="204"} 1.0' in metric(
        proxied.runtime, "relay_proxy_requests_total")


async def test_explicit_relay_consent_from_the_state_store(proxied: Proxied) -> None:
    rt = proxied.runtime
    correlation = rt.signer.issue(None)
    await rt.state.remember_consent(correlation.id, {"analytics": "granted"}, 600)
    cookies = {"_rc": correlation.value}
    r = await proxied.client.post("/t/g/collect?gcs=G100", content=b"x",
                                  headers={"cf-ipcountry": "DE", "cookie": f"_rc={cookies['_rc']}"})
    assert r.status_code == 200  # the relay's explicit grant beats Consent Mode and the region
    assert "cookie" not in proxied.upstream.last.headers  # the relay's own cookie never leaves
    bad = {"cookie": "_rc=forged.value.sig", "cf-ipcountry": "DE"}
    assert (await proxied.client.post("/t/g/collect", content=b"x", headers=bad)).status_code == 204


async def test_explicit_consent_hook(proxied: Proxied) -> None:
    seen: list[str] = []

    async def hook(correlation_id: str) -> dict[str, str]:
        seen.append(correlation_id)
        return {"analytics": "denied"}

    proxied.proxy.explicit_consent = hook
    correlation = proxied.runtime.signer.issue(None)
    headers = {"cf-ipcountry": "US", "cookie": f"_rc={correlation.value}"}
    r = await proxied.client.post("/t/g/collect", content=b"x", headers=headers)
    assert r.status_code == 204 and seen == [correlation.id]
    assert (await proxied.client.post("/t/ph/e/", content=b"x")).status_code == 200
    assert seen == [correlation.id]  # routes without a purpose never ask


# -- limits and errors -----------------------------------------------------------------


async def test_body_limit_by_length_and_while_streaming(proxied: Proxied) -> None:
    assert (await proxied.client.post("/t/ph/e/", content=b"x" * 1000)).status_code == 200
    r = await proxied.client.post("/t/ph/e/", content=b"x" * 1001)
    assert r.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"y" * 100  # no Content-Length: chunked, counted as it arrives

    r = await proxied.client.post("/t/ph/e/", content=chunks())
    assert r.status_code == 413
    assert len(proxied.upstream.requests) == 1
    assert proxied.proxy.inflight["ph"] == 0


@pytest.mark.parametrize(("exc", "status"), [
    (httpx.ConnectError("refused"), 502),
    (httpx.RemoteProtocolError("garbage"), 502),
    (httpx.ReadTimeout("slow"), 504),
    (httpx.ConnectTimeout("slow"), 504),
])
async def test_upstream_errors(
    upstream: Upstream, proxied: Proxied, exc: Exception, status: int
) -> None:
    async def answer(request: httpx.Request) -> httpx.Response:
        raise exc

    upstream.handler = answer
    r = await proxied.client.post("/t/ph/e/", content=b"{}")
    assert r.status_code == status and "proxy ph" in r.json()["error"]
    assert proxied.proxy.inflight["ph"] == 0


async def test_concurrency_limit(upstream: Upstream, proxied: Proxied) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def answer(request: httpx.Request) -> httpx.Response:
        entered.set()
        await release.wait()
        return httpx.Response(202)

    upstream.handler = answer
    first = asyncio.create_task(proxied.client.post("/t/api/event", content=b"{}"))
    await entered.wait()
    busy = await proxied.client.post("/t/api/event", content=b"{}")
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    release.set()
    assert (await first).status_code == 202
    assert (await proxied.client.post("/t/api/event", content=b"{}")).status_code == 202
    assert proxied.proxy.inflight["plain"] == 0


async def test_timeout_is_per_route(
    rules_dir: Path, env: dict[str, str], tmp_path: Path, upstream: Upstream
) -> None:
    timeouts: list[object] = []

    async def answer(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"])
        return httpx.Response(200)

    upstream.handler = answer
    rules = "proxy:\n  p: {path: /p, upstream: 'https://x.example/p', timeout: 2500ms}\n"
    async with open_proxied(rules_dir, env, tmp_path, upstream, rules) as p:
        assert (await p.client.get("/t/p")).status_code == 200
    assert timeouts == [{"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}]


async def test_admin_metrics_show_proxy_series(proxied: Proxied) -> None:
    await proxied.client.get("/t/ph/e/")
    admin = create_admin_app(proxied.app.routes[0].app)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=admin),
                                 base_url="http://a") as c:
        text = (await c.get("/metrics")).text
    assert 'relay_proxy_requests_total{route="ph",status="200"} 1.0' in text
    assert TEST_SECRET not in text
