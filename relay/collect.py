"""Ingestion: the browser endpoint, backend webhooks and Segment-compatible calls.

Parsing is pure (``parse_body``, ``parse_segment``, ``check_auth``); the handlers only read
the request, call the engine, commit to the spool and answer. Whatever a client sends, the
answer is a 2xx or a 4xx naming the problem; 503 means the spool could not commit and
nothing was accepted.
"""

from __future__ import annotations

import base64
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive

from relay.destinations.base import verify
from relay.errors import SpoolUnavailable
from relay.observe.log import LOG, hop
from relay.results import Batch, Meta
from relay.rules.model import BearerAuth, HmacAuth, Source

if TYPE_CHECKING:
    from relay.app import Runtime

JSON_TYPES = ("application/json", "text/plain")
SIGNATURE_HEADER = "x-relay-signature"
SEGMENT_CALLS = ("track", "page", "screen", "identify", "group", "alias", "batch")


@dataclass(frozen=True, slots=True)
class Problem:
    status: int
    message: str
    headers: Mapping[str, str] | None = None

    def response(self) -> Response:
        return json_response({"error": self.message}, self.status, self.headers)


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body), status, headers=dict(headers or {}), media_type="application/json"
    )


# -- pure parsing ------------------------------------------------------------------------


def media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def parse_body(
    body: bytes, content_type: str | None, max_batch: int, allowed: tuple[str, ...] = JSON_TYPES
) -> list[Any] | Problem:
    """One object, an array, or ``{"batch": [...]}`` -> the list of raw events."""
    mt = media_type(content_type)
    if mt not in allowed:
        return Problem(
            415, f"content type '{mt or 'none'}' not accepted; send {' or '.join(allowed)}"
        )
    if not body.strip():
        return Problem(400, 'body: empty; send a JSON object, an array or {"batch": [...]}')
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return Problem(400, f"body: invalid JSON ({exc})")
    if isinstance(data, dict) and "batch" in data and "event" not in data:
        data = data["batch"]
        if not isinstance(data, list):
            return Problem(400, "batch: expected an array of events")
    items = data if isinstance(data, list) else [data]
    if not items:
        return Problem(400, "body: no events")
    if len(items) > max_batch:
        return Problem(413, f"batch: {len(items)} events, at most {max_batch} in one request")
    return items


def check_auth(source: Source, headers: Mapping[str, str], body: bytes, now: float) -> str | None:
    """None when the request is authentic, else why not (the 401's message)."""
    auth = source.auth
    if isinstance(auth, BearerAuth):
        given = headers.get("authorization", "")
        if not given.lower().startswith("bearer "):
            return "missing Authorization: Bearer <token>"
        token = given[7:].strip().encode()
        if not any(hmac.compare_digest(token, t.encode()) for t in auth.tokens):
            return "bearer token not accepted"
        return None
    if isinstance(auth, HmacAuth):
        header = headers.get(SIGNATURE_HEADER)
        if not header:
            return "missing X-Relay-Signature: t=<unix seconds>,v1=<hex hmac-sha256 of 't.body'>"
        if not verify(auth.secrets, header, body, now, auth.tolerance):
            return "signature does not match, or its timestamp is outside the tolerance"
        return None
    return None


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


# -- handlers ----------------------------------------------------------------------------


def too_large(limit: int) -> Problem:
    """413 for a body over ``limit``. The rest of the body is left unread, so the connection
    cannot carry another request: say so, rather than let the client find a dropped socket."""
    return Problem(413, f"body over {limit} bytes", {"Connection": "close"})


async def read_body(receive: Receive, declared: str | None, limit: int) -> bytes | None:
    """The body from ASGI ``receive``, or None when it is over ``limit`` bytes (``declared``,
    the Content-Length, already says so, or the body grows past it: read no further).
    Raises ``ClientDisconnect`` when the client goes away first."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def commit(rt: Runtime, batch: Batch) -> Problem | None:
    """Commit the batch's copies to the spool; a Problem (503) when that failed."""
    try:
        await rt.spool.put(batch.rows, batch.quarantined)
    except SpoolUnavailable as exc:
        await rt.engine.rollback(batch)
        LOG.error("spool: cannot commit, answering 503: %s", exc)
        return Problem(
            503, "spool not writable; nothing was accepted, retry later", {"Retry-After": "5"}
        )
    for row in batch.rows:
        hop("spooled", event_id=row.event_id, destination=row.destination)
        rt.metrics.spooled.labels(row.destination).inc()
    for dest in batch.destinations():
        rt.dispatcher.notify(dest)
    rt.debug_feed(batch)
    return None


def ingest_answer(batch: Batch, single: bool) -> tuple[int, dict[str, Any]]:
    """The status and body that answer an ingest request: 202, or 400 when nothing in it
    was usable."""
    body: dict[str, Any] = {
        "accepted": batch.accepted,
        "duplicates": batch.duplicates,
        "rejected": batch.rejected(),
    }
    if batch.quarantined:
        body["quarantined"] = len(batch.quarantined)
    if batch.accepted == 0 and batch.duplicates == 0 and batch.rejected():
        if single:
            body["error"] = batch.rejected()[0]["error"]
        return 400, body
    return 202, body


async def _trusted(
    request: Request, source: Source, items: list[Any]
) -> tuple[Batch, Problem | None]:
    rt: Runtime = request.app.state.relay
    relay = rt.engine.rules.relay
    meta = Meta(
        source=source,
        received_ms=int(time.time() * 1000),
        country=request.headers.get(relay.country_header) if relay.country_header else None,
        verify_correlation=rt.verify_correlation,
    )
    batch = await rt.engine.process(items, meta)
    return batch, await commit(rt, batch)


async def webhook(request: Request) -> Response:
    rt: Runtime = request.app.state.relay
    await rt.ensure_started()
    started = time.perf_counter()
    relay = rt.engine.rules.relay
    name = request.path_params["source"]
    source = rt.engine.rules.sources.get(name)
    if source is None or source.type != "webhook":
        return Problem(404, f"no webhook source named '{name}'").response()
    body = await read_body(
        request.receive, request.headers.get("content-length"), relay.limits.body_bytes
    )
    if body is None:
        return too_large(relay.limits.body_bytes).response()
    why = check_auth(source, request.headers, body, time.time())
    if why:
        return Problem(401, f"source {name}: {why}").response()
    items = parse_body(
        body,
        request.headers.get("content-type"),
        relay.limits.batch_events,
        allowed=("application/json",),
    )
    if isinstance(items, Problem):
        return items.response()
    batch, problem = await _trusted(request, source, items)
    if problem:
        return problem.response()
    rt.metrics.ingest_latency.observe(time.perf_counter() - started)
    status, answer = ingest_answer(batch, single=len(items) == 1)
    return json_response(answer, status)


async def segment(request: Request) -> Response:
    rt: Runtime = request.app.state.relay
    await rt.ensure_started()
    relay = rt.engine.rules.relay
    call = request.path_params["call"]
    if call not in SEGMENT_CALLS:
        return Problem(404, f"unknown Segment call '{call}'").response()
    key = segment_write_key(request.headers)
    source = rt.segment_source(key) if key else None
    if source is None:
        return Problem(
            401, "missing or unknown writeKey (send it as the HTTP basic user)"
        ).response()
    body = await read_body(
        request.receive, request.headers.get("content-length"), relay.limits.body_bytes
    )
    if body is None:
        return too_large(relay.limits.body_bytes).response()
    items = parse_body(
        body,
        request.headers.get("content-type"),
        relay.limits.batch_events,
        allowed=("application/json", "text/plain"),
    )
    if isinstance(items, Problem):
        return items.response()
    envelopes = [parse_segment(call, item) for item in items]
    batch, problem = await _trusted(request, source, envelopes)
    if problem:
        return problem.response()
    if batch.accepted == 0 and batch.duplicates == 0 and batch.rejected():
        return json_response({"success": False, "rejected": batch.rejected()}, 400)
    return json_response({"success": True, "rejected": batch.rejected()}, 200)


async def healthz(request: Request) -> Response:
    return Response("ok\n", media_type="text/plain")
