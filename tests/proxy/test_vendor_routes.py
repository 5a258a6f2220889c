"""Vendor-aware routes in-process (``vendor:`` and ``pipeline:``): the body the upstream
gets, bodies that cannot be read, the consent gate's answer per vendor, and what stays as
it was (responses stream back raw; routes without a vendor are untouched)."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

from relay.proxy.rewrite import DECODED_FACTOR
from tests.proxy.support import Proxied, Upstream, metric, open_proxied
from tests.proxy.vendors.support import EMAIL, UA, captured

RULES = """
proxy:
  ph:
    path: /ph/
    upstream: "https://eu.i.posthog.com"
    vendor: posthog
    pipeline: minimize
    purpose: analytics
    forward_ip: truncate
  mp:
    path: /mp/
    upstream: "https://api-eu.mixpanel.com"
    vendor: mixpanel
    pipeline: minimize
    purpose: analytics
    max_body: 20000
  ga: {path: /g/collect, upstream: "https://region1.google-analytics.com/g/collect",
       vendor: ga4, pipeline: minimize, purpose: analytics}
  pl: {path: /api/event, upstream: "https://plausible.io/api/event", vendor: plausible,
       purpose: analytics}
  mt: {path: /matomo.php, upstream: "https://matomo.example/matomo.php", vendor: matomo,
       purpose: analytics}
  seg: {path: /seg/, upstream: "https://api.segment.io/", vendor: segment, purpose: analytics}
  plain: {path: /plain, upstream: "https://plain.example/hit", purpose: analytics}
"""
(PAGEVIEW, *_) = captured("posthog_ph_e")
(TRACK,) = captured("mixpanel_mp_track")


@pytest.fixture
async def proxied(
    rules_dir: Path, env: dict[str, str], tmp_path: Path, upstream: Upstream
) -> AsyncIterator[Proxied]:
    async with open_proxied(rules_dir, env, tmp_path, upstream, RULES) as p:
        yield p


async def test_posthog_hit_reaches_the_upstream_cleaned(proxied: Proxied) -> None:
    r = await proxied.client.post("/t/ph/e/", content=PAGEVIEW.body, headers={
        "content-type": "text/plain", "cf-ipcountry": "US", "user-agent": UA})
    assert r.status_code == 200 and r.text == "upstream says hi"
    sent = proxied.upstream.last
    assert str(sent.url) == "https://eu.i.posthog.com/e/"
    body = proxied.upstream.bodies[-1]
    assert sent.headers["content-length"] == str(len(body))
    assert "content-encoding" not in sent.headers and sent.headers["content-type"] == "text/plain"
    props = json.loads(gzip.decompress(body))["batch"][0]["properties"]
    assert "$raw_user_agent" not in props and "?" not in props["$current_url"]
    assert "gclid" not in props
    assert sent.headers["x-forwarded-for"] == "203.0.113.0"
    counted = metric(proxied.runtime, "relay_fields_redacted_total")
    assert 'transform="user_agent"' in counted and 'transform="url"' in counted


async def test_a_gzip_content_encoding_stays(proxied: Proxied) -> None:
    event = {"event": "signup", "properties": {"email": EMAIL, "distinct_id": "u1"}}
    body = gzip.compress(json.dumps(event).encode())
    r = await proxied.client.post("/t/ph/i/v0/e/", content=body, headers={
        "content-type": "application/json", "content-encoding": "gzip"})
    assert r.status_code == 200
    sent = proxied.upstream.last
    assert sent.headers["content-encoding"] == "gzip"
    out = json.loads(gzip.decompress(proxied.upstream.bodies[-1]))
    assert out["properties"] == {"email": "[email]", "distinct_id": "u1"}


async def test_mixpanel_ip_0_and_base64_form(proxied: Proxied) -> None:
    r = await proxied.client.post(f"/t/mp/track/?{TRACK.query}", content=TRACK.body,
                                  headers={"content-type": TRACK.content_type})
    assert r.status_code == 200
    sent = proxied.upstream.last
    query = parse_qs(sent.url.query.decode())
    assert query["ip"] == ["0"] and query["verbose"] == ["1"]  # forward_ip: strip (default)
    assert "x-forwarded-for" not in sent.headers
    assert proxied.upstream.bodies[-1].startswith(b"data=")
    assert EMAIL.encode() not in proxied.upstream.bodies[-1]


async def test_get_hits_are_cleaned_too(proxied: Proxied) -> None:
    r = await proxied.client.get(
        "/t/g/collect?v=2&tid=G-1&en=page_view&dl=https%3A%2F%2Fs.example%2F%3Fq%3D1&_uip=1.2.3.4")
    assert r.status_code == 200
    query = parse_qs(proxied.upstream.last.url.query.decode())
    assert query["dl"] == ["https://s.example/"] and "_uip" not in query


@pytest.mark.parametrize(("path", "body", "why"), [
    ("/t/ph/e/", b"\x1f\x8b\x08\x00garbage", "gzip body is cut short"),
    ("/t/ph/e/", b"\x1f\x8bnot gzip at all", "not valid gzip"),
    ("/t/mp/track/?ip=1", b"nodata=1", "no data field"),
    ("/t/api/event", b"[1]", "not a JSON object"),
    ("/t/seg/v1/t", b"{oops", "not JSON"),
])
async def test_a_body_that_cannot_be_read_is_refused(
    proxied: Proxied, path: str, body: bytes, why: str
) -> None:
    r = await proxied.client.post(path, content=body)
    assert r.status_code == 400 and why in r.json()["error"]
    assert "the relay can read" in r.json()["error"]
    assert proxied.upstream.requests == []


async def test_unknown_content_encoding_is_refused(proxied: Proxied) -> None:
    r = await proxied.client.post("/t/seg/v1/t", content=b"x", headers={"content-encoding": "br"})
    assert r.status_code == 400 and "Content-Encoding br" in r.json()["error"]


async def test_bodies_over_max_body_are_413(proxied: Proxied) -> None:
    r = await proxied.client.post("/t/mp/track/", content=b"data=" + b"x" * 20000)
    assert r.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(30):
            yield b"x" * 1000

    r = await proxied.client.post("/t/mp/track/", content=chunks())
    assert r.status_code == 413
    bomb = gzip.compress(b"data=" + b"A" * (20000 * DECODED_FACTOR + 10))
    r = await proxied.client.post("/t/mp/track/", content=bomb)
    assert r.status_code == 413 and "decompressed" in r.json()["error"]
    assert proxied.upstream.requests == []


@pytest.mark.parametrize(("path", "status", "body"), [
    ("/t/ph/e/", 200, {"status": 1}),
    ("/t/mp/track/?verbose=1&ip=1", 200, {"status": 1, "error": None}),
    ("/t/mp/track/?ip=1", 200, 1),
    ("/t/g/collect?v=2&en=page_view", 204, None),
    ("/t/api/event", 202, None),
    ("/t/matomo.php?idsite=1&rec=1", 204, None),
    ("/t/seg/v1/t", 200, {"success": True}),
    ("/t/plain", 204, None),
])
async def test_a_denied_purpose_gets_the_vendors_success_answer(
    proxied: Proxied, path: str, status: int, body: object
) -> None:
    r = await proxied.client.post(path, content=b"{}", headers={"cf-ipcountry": "DE"})
    assert r.status_code == status
    assert r.headers["cache-control"] == "no-store"
    if body is None:
        assert r.content in (b"", b"ok")
    else:
        assert r.json() == body
    assert proxied.upstream.requests == []


async def test_the_response_streams_back_raw(
    rules_dir: Path, env: dict[str, str], tmp_path: Path
) -> None:
    packed = gzip.compress(b'{"status": 1}')

    async def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=packed, headers={"content-encoding": "gzip"})

    async with open_proxied(rules_dir, env, tmp_path, Upstream(answer), RULES) as p:
        r = await p.client.post("/t/seg/v1/t", content=b'{"type": "track"}',
                                headers={"accept-encoding": "gzip"})
        assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
        assert r.json() == {"status": 1}  # httpx decoded what the relay passed on untouched


async def test_the_referer_is_cleaned_as_a_page_url(proxied: Proxied) -> None:
    referer = {"referer": "https://shop.example/p?q=ann%40example.com&utm_source=news&gclid=g"}
    await proxied.client.post("/t/ph/e/", content=b'{"event": "x"}', headers=referer)
    assert proxied.upstream.last.headers["referer"] == "https://shop.example/p"
    # without a pipeline, what the route removes: click ids
    await proxied.client.post("/t/seg/v1/t", content=b'{"type": "track"}', headers=referer)
    assert proxied.upstream.last.headers["referer"] == (
        "https://shop.example/p?q=ann%40example.com&utm_source=news")
