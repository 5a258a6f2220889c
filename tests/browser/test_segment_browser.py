"""analytics.js (``@segment/analytics-next`` 1.84 and 1.83, their standalone bundles from
tests/js/node_modules) in headless Chromium, against a real ``relay serve``.

The test site is analytics.js's CDN too: it serves the bundle, its lazily loaded chunks
(``/analytics-next/bundles/...``, found through ``analytics._cdn``) and the source's settings
(``/v1/projects/<writeKey>/settings``), so the page loads nothing from the network; every
request the browser makes that is not to the test site is aborted and fails the test. The
settings point the ``Segment.io`` destination at the relay (``apiHost: <site>/t/v1``), as a
site would with the relay on its own origin.

1.84 sends the write key as the basic user and in the body and posts each call to its
one-letter path (``/t/v1/t``, ``/p``, ...), or a batch to ``/t/v1/b``; 1.83 sends it only as
``writeKey`` in the body. Every message must reach the relay's archive with its
``messageId`` as ``event_id``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Route

from ..e2e.relayproc import REPO_ROOT
from ..e2e.wire import US, wait_until
from .conftest import MakeStack, Stack

WRITE_KEY = "browser-segment-write-key-6e2d"
MODULES = REPO_ROOT / "tests" / "js" / "node_modules"
VERSIONS = {"1.84": MODULES / "@segment" / "analytics-next",
            "1.83": MODULES / "analytics-next-1.83"}
EVENTS = {
    "Order Completed": {"properties": {"order_id": {"type": "string", "required": True}}},
    "identify": {"properties": {"plan": {"type": "string", "enum": ["free", "pro"]}}},
    "group": {}, "alias": {}, "screen_view": {},
}
CALLS = """
analytics.page();
analytics.track('Order Completed', {order_id: 'O-1', revenue: 12.5});
analytics.identify('u_42', {plan: 'pro', email: 'ann@example.com', firstName: 'Ann'});
analytics.screen('Home');
analytics.group('acme', {name: 'Acme'});
analytics.alias('u_42');
"""
EXPECTED = ["page_view", "Order Completed", "identify", "screen_view", "group", "alias"]


def version_of(path: Path) -> str:
    return str(json.loads((path / "package.json").read_text())["version"])


def serve_analytics_js(stack: Stack, version: str, delivery: dict[str, Any] | None) -> str:
    """Put analytics.js ``version`` on the test site with settings aimed at the relay; the
    page's URL."""
    dist = VERSIONS[version] / "dist" / "umd"
    assert dist.is_dir(), f"{dist} is missing: run `npm ci` in tests/js (.ci/run does)"
    site = stack.site
    for f in dist.iterdir():
        if f.suffix == ".js":
            site.files[f"/analytics-next/bundles/{f.name}"] = ("text/javascript", f.read_bytes())
    site.files["/ajs/standalone.js"] = ("text/javascript", (dist / "standalone.js").read_bytes())
    host = f"127.0.0.1:{site.port}"
    segment_io: dict[str, Any] = {"apiKey": WRITE_KEY, "apiHost": f"{host}/t/v1",
                                  "protocol": "http"}
    if delivery is not None:
        segment_io["deliveryStrategy"] = delivery
    settings = {"integrations": {"Segment.io": segment_io}, "plan": {},
                "metrics": {"sampleRate": 0}, "enabledMiddleware": {}, "remotePlugins": []}
    site.files[f"/v1/projects/{WRITE_KEY}/settings"] = (
        "application/json", json.dumps(settings).encode())
    # The Segment snippet's stub: calls queue until the bundle loads and replays them.
    head = f"""<script>
window.analytics = [];
analytics._writeKey = {json.dumps(WRITE_KEY)};
analytics._cdn = location.origin;
analytics._loadOptions = {{integrations: {{'Segment.io': {json.dumps(segment_io)}}}}};
['page', 'track', 'identify', 'screen', 'group', 'alias'].forEach(function (m) {{
  analytics[m] = function () {{
    var args = Array.prototype.slice.call(arguments); args.unshift(m);
    analytics.push(args); return analytics;
  }};
}});
{CALLS}
</script><script src="/ajs/standalone.js"></script>"""
    return site.add("ajs.html", f"<!doctype html><html><head>{head}</head><body>ajs</body></html>")


def messages(stack: Stack) -> list[tuple[str, dict[str, str], dict[str, Any], int]]:
    """Each message analytics.js posted to the relay: (path, headers, message, status)."""
    out = []
    for method, target, post in stack.site.forwarded:
        if method != "POST" or not target.startswith("/t/v1/"):
            continue
        body = json.loads(post.body)
        for msg in body["batch"] if target == "/t/v1/b" else [body]:
            out.append((target, post.headers, msg, post.status))
    return out


def archived(stack: Stack) -> dict[str, dict[str, Any]]:
    path = stack.relay.archive_path
    if not path.exists():
        return {}
    return {e["event_id"]: e for e in map(json.loads, path.read_text().splitlines())}


@pytest.mark.parametrize(("version", "delivery", "paths"), [
    ("1.84", None, {"/t/v1/p", "/t/v1/t", "/t/v1/i", "/t/v1/s", "/t/v1/g", "/t/v1/a"}),
    ("1.84", {"strategy": "batching", "config": {"size": 3, "timeout": 300}}, {"/t/v1/b"}),
    ("1.83", None, {"/t/v1/p", "/t/v1/t", "/t/v1/i", "/t/v1/s", "/t/v1/g", "/t/v1/a"}),
], ids=["1.84-standard", "1.84-batching", "1.83-standard"])
def test_analytics_js_events_arrive_with_their_message_ids(
    chromium: Browser, stack: MakeStack, version: str, delivery: dict[str, Any] | None,
    paths: set[str],
) -> None:
    assert version_of(VERSIONS[version]).startswith(version + ".")
    s = stack(sources={"ajs": {"type": "segment", "write_keys": [WRITE_KEY]}}, events=EVENTS)
    url = serve_analytics_js(s, version, delivery)
    outside: list[str] = []

    def local_only(route: Route) -> None:
        if route.request.url.startswith(s.site.origin + "/"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    ctx = s.context(chromium, extra_http_headers=US)
    ctx.route("**/*", local_only)
    page = ctx.new_page()
    errors: list[str] = []
    console: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.goto(url)
    def posted() -> list[tuple[str, dict[str, str], dict[str, Any], int]] | None:
        page.wait_for_timeout(100)  # Playwright runs the route handler only while it waits
        found = messages(s)
        return found if len(found) >= len(EXPECTED) else None

    try:
        sent = wait_until(posted, 20, f"analytics.js {version} posting six messages")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nforwarded: {[t for _, t, _ in s.site.forwarded]}\n"
                             f"outside: {outside}\nerrors: {errors}\nconsole: {console}"
                             ) from None
    ids = [msg["messageId"] for _, _, msg, _ in sent]
    got = wait_until(lambda: a if set(ids) <= set(a := archived(s)) else None, 20,
                     "every message in the relay's archive")
    ctx.close()
    assert outside == [] and errors == []
    assert {path for path, _, _, _ in sent} == paths
    assert {status for _, _, _, status in sent} == {200}
    assert sorted(got[i]["event"] for i in ids) == sorted(EXPECTED)
    for _, headers, msg, _ in sent:
        assert msg["writeKey"] == WRITE_KEY  # every version puts it in the body
        # 1.84 also sends it as the basic user; 1.83 only in the body.
        assert ("authorization" in headers) == (version == "1.84")
    identify = next(got[i] for i in ids if got[i]["event"] == "identify")
    assert identify["properties"] == {"plan": "pro"}
    assert identify["user"]["id"] == "u_42" and identify["user"]["first_name"] == "Ann"
    assert len(identify["user"]["email"]) == 64  # hashed by the shipped pipeline
    page_view = next(got[i] for i in ids if got[i]["event"] == "page_view")
    assert page_view["context"]["page"]["url"].startswith(s.site.origin)
