"""The debug view: ``GET /debug`` (the page, ``relay/static/debug.html``) and
``GET /debug/stream`` (its feed, server-sent events from ``relay.observe.debug``).

The page is one file with its style and script inline, served with a Content-Security-Policy
that allows exactly those two (by their SHA-256) and connections to its own origin: nothing
else loads, and nothing a feed entry holds can run.

The stream shows one browser's events when the request carries a valid relay cookie, or
those of ``?cid=<digest>``; ``?all=1`` shows every browser's. Its first event, named
``viewer``, says which (``{"by": "cookie" | "cid" | "all", "cid", "cookie", "destinations",
"events"}``), so the page can say so; then each entry is an unnamed event, one JSON object
per ``data:`` line.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import AsyncIterator
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse

from relay.observe.log import digest

if TYPE_CHECKING:
    from relay.runtime import Runtime

KEEP_ALIVE_SECONDS = 15.0
RECONNECT_MS = 1000  # the browser's EventSource waits this long before it reconnects
_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.S)


@cache
def page() -> tuple[str, str]:
    """The page's HTML and its Content-Security-Policy (read once)."""
    html = (files("relay") / "static" / "debug.html").read_text(encoding="utf-8")
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for tag, body in _INLINE.findall(html):
        sha = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        hashes[tag].append(f"'sha256-{sha}'")
    policy = "; ".join([
        "default-src 'none'",
        "script-src " + " ".join(hashes["script"]),
        "style-src " + " ".join(hashes["style"]),
        "connect-src 'self'",
        "img-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ])
    return html, policy


async def debug_page(request: Request) -> Response:
    html, policy = page()
    return HTMLResponse(html, headers={
        "Content-Security-Policy": policy,
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",  # the URL may carry ?token=
        "X-Content-Type-Options": "nosniff",
    })


def viewer(rt: Runtime, request: Request) -> dict[str, Any]:
    """Whose events this request is for, and the names the page's filters offer."""
    cookie = request.cookies.get(rt.rules.relay.cookie.name)
    own = rt.signer.verify(cookie) if cookie else None
    mine = digest(own) if own else None
    cid = request.query_params.get("cid") or None
    if request.query_params.get("all") == "1":
        by, want = "all", None
    elif cid is not None:
        by, want = "cid", cid
    else:
        by, want = ("cookie", mine) if mine else ("all", None)
    rules = rt.rules
    return {
        "by": by,
        "cid": want,
        "cookie": mine,
        "destinations": {
            d.name: {"type": d.type, "purpose": d.purpose, "pipeline": d.pipeline}
            for d in rules.destinations.values()
        },
        "events": sorted(n for n in rules.events.contracts if n != "*"),
    }


async def debug_stream(request: Request) -> Response:
    rt: Runtime = request.app.state.relay
    hello = viewer(rt, request)
    queue = rt.debug.subscribe(hello["cid"])

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield b": connected\nretry: %d\n\n" % RECONNECT_MS
            yield b"event: viewer\ndata: " + orjson.dumps(hello) + b"\n\n"
            while True:
                try:
                    entry = await asyncio.wait_for(queue.get(), KEEP_ALIVE_SECONDS)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                yield b"data: " + orjson.dumps(entry) + b"\n\n"
        finally:
            rt.debug.unsubscribe(queue)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )
