"""``POST {prefix}/v1/{call}``: Segment's HTTP tracking API, for Segment's libraries.

The write key is the HTTP basic user (as Segment's API takes it) and names the source;
each message becomes a relay envelope (``parse_segment``). The answer is Segment's own:
200 ``{"success": true}``.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.types import Receive, Scope

from relay.ingest.body import parse_body
from relay.ingest.commit import process_trusted
from relay.ingest.endpoint import Answer, problem
from relay.web import Problem, header_map, read_body, too_large

if TYPE_CHECKING:
    from relay.runtime import Runtime

SEGMENT_CALLS = ("track", "page", "screen", "identify", "group", "alias", "batch")

def segment_write_key(headers: Mapping[str, str]) -> str | None:
    given = headers.get("authorization", "")
    if not given.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(given[6:].strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return decoded.split(":", 1)[0]


_SEGMENT_NAMES = {
    "page": "page_view",
    "screen": "screen_view",
    "identify": "identify",
    "group": "group",
    "alias": "alias",
}


def parse_segment(call: str, msg: Any) -> Any:
    """A Segment message -> a relay envelope (anything unmappable is returned as is, so the
    envelope check reports it)."""
    if not isinstance(msg, dict):
        return msg
    kind = msg.get("type", call)
    out: dict[str, Any] = {}
    out["event"] = msg.get("event") if kind == "track" else _SEGMENT_NAMES.get(kind, kind)
    if "messageId" in msg:
        out["event_id"] = msg["messageId"]
    if "timestamp" in msg:
        out["time"] = msg["timestamp"]
    user: dict[str, Any] = {}
    if msg.get("userId") is not None:
        user["id"] = msg["userId"]
    if isinstance(msg.get("traits"), dict):
        for key in ("email", "phone"):
            if key in msg["traits"]:
                user[key] = msg["traits"][key]
    if user:
        out["user"] = user
    if msg.get("anonymousId") is not None:
        out["anonymous_id"] = msg["anonymousId"]
    ctx_in = msg.get("context")
    if isinstance(ctx_in, dict):
        ctx: dict[str, Any] = {}
        for theirs, ours in (
            ("ip", "ip"),
            ("userAgent", "user_agent"),
            ("page", "page"),
            ("locale", "locale"),
        ):
            if theirs in ctx_in:
                ctx[ours] = ctx_in[theirs]
        if isinstance(ctx_in.get("consent"), dict):
            prefs = ctx_in["consent"].get("categoryPreferences")
            if isinstance(prefs, dict):
                out["consent"] = prefs
        out["context"] = ctx
    props = msg.get("properties")
    if isinstance(props, dict):
        out["properties"] = props
    return out



async def segment(rt: Runtime, scope: Scope, receive: Receive) -> Answer:
    started = time.perf_counter()
    relay = rt.engine.rules.relay
    call = scope["path_params"]["call"]
    if call not in SEGMENT_CALLS:
        return problem(Problem(404, f"unknown Segment call '{call}'"))
    headers = header_map(scope["headers"])
    key = segment_write_key(headers)
    source = rt.segment_source(key) if key else None
    if source is None:
        return problem(Problem(401, "missing or unknown writeKey (send it as the HTTP basic user)"))
    body = await read_body(receive, headers.get("content-length"), relay.limits.body_bytes)
    if body is None:
        return problem(too_large(relay.limits.body_bytes))
    items = parse_body(
        body,
        headers.get("content-type"),
        relay.limits.batch_events,
        allowed=("application/json", "text/plain"),
    )
    if isinstance(items, Problem):
        return problem(items)
    envelopes = [parse_segment(call, item) for item in items]
    batch, failed = await process_trusted(rt, source, headers, envelopes)
    if failed:
        return problem(failed)
    rt.metrics.ingest_latency.observe(time.perf_counter() - started)
    if batch.accepted == 0 and batch.duplicates == 0 and batch.rejected():
        return 400, {"success": False, "rejected": batch.rejected()}, []
    return 200, {"success": True, "rejected": batch.rejected()}, []
