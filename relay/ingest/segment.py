"""``POST {prefix}/v1/{call}``: Segment's HTTP tracking API, for Segment's libraries.

The calls are Segment's: ``track``, ``page``, ``screen``, ``identify``, ``group``, ``alias``,
``batch`` (and ``import``, its old name), and the one-letter paths analytics.js posts to
(``t``, ``p``, ``s``, ``i``, ``g``, ``a``, ``b``). The write key names the source: the HTTP
basic user, or ``writeKey`` in the JSON body (analytics.js up to 1.83 sends only that); when
both are sent they must be the same key. Bodies may be gzip-compressed. The limits are
Segment's: 500 KiB a request (decompressed too), 32 KiB a message, 2,500 messages.

Each message becomes a relay envelope (``segment_map``). The answer is Segment's own:
200 ``{"success": true}``; errors are ``{"success": false, "code", "message"}`` (what
Segment's Python library reports) with the relay's ``error`` (the same text).
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import orjson
from starlette.types import Receive, Scope

from relay.engine.envelope import kind_of
from relay.ingest import origin
from relay.ingest.body import decompress, media_type
from relay.ingest.commit import process_trusted
from relay.ingest.endpoint import Answer
from relay.ingest.segment_map import MessageError, envelope
from relay.observe.log import LOG, hop
from relay.rules.model import Source
from relay.web import Problem, RawHeaders, header_map, read_body

if TYPE_CHECKING:
    from relay.runtime import Runtime

# The call in the path -> the type of its message (None: a batch, each message names its own).
CALLS: Final[dict[str, str | None]] = {
    "track": "track", "t": "track",
    "page": "page", "p": "page",
    "screen": "screen", "s": "screen",
    "identify": "identify", "i": "identify",
    "group": "group", "g": "group",
    "alias": "alias", "a": "alias",
    "batch": None, "b": None, "import": None,
}
MAX_REQUEST_BYTES = 500 * 1024  # Segment's batch limit; also after decompression
MAX_MESSAGE_BYTES = 32 * 1024  # Segment's limit for one message (its libraries check it)
MAX_MESSAGES = 2500  # Segment's limit for one batch request
CONTENT_TYPES = ("application/json", "text/plain")  # analytics.js sends text/plain
# Envelope fields as Segment's libraries name them, for the answer's messages.
_FIELD_NAMES: Final = (
    ("event_id", "messageId"),
    ("time", "timestamp"),
    ("anonymous_id", "anonymousId"),
    ("user.id", "userId"),
    ("context.user_agent", "context.userAgent"),
    ("context.group_id", "context.groupId"),
)
_PART = re.compile(r"(^|; )([^:;]+)(?=:)")


def fail(status: int, code: str, message: str, headers: Mapping[str, str] | None = None,
         **extra: Any) -> Answer:
    """An error answer in Segment's shape (``code``, ``message``) plus the relay's ``error``."""
    body = {"success": False, "code": code, "message": message, "error": message, **extra}
    raw: RawHeaders = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return status, body, raw


def _problem(p: Problem, code: str) -> Answer:
    return fail(p.status, code, p.message, p.headers)


def basic_write_key(headers: Mapping[str, str]) -> str | None:
    """The basic-auth user (Segment's ``base64("<writeKey>:")``); None without basic auth.
    Raises ``ValueError`` for a basic header that is not base64 of ``user:password``."""
    given = headers.get("authorization", "")
    if given[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(given[6:].strip(), validate=True).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ValueError("Authorization: Basic is not base64 of '<writeKey>:'") from exc
    return decoded.split(":", 1)[0]


def segment_error(error: str, kind: str | None) -> str:
    """An envelope or contract error in Segment's names: ``event_id: ...`` ->
    ``messageId: ...``; for ``identify`` and ``group``, ``properties.plan`` -> ``traits.plan``
    (their traits are the event's properties)."""
    def rename(m: re.Match[str]) -> str:
        field = m.group(2)
        for ours, theirs in _FIELD_NAMES:
            if field == ours or field.startswith(ours + "."):
                field = theirs + field[len(ours):]
                break
        else:
            if kind in ("identify", "group") and field.startswith("properties"):
                field = "traits" + field[len("properties"):]
        return m.group(1) + field
    return _PART.sub(rename, error)


def _write_key(rt: Runtime, headers: Mapping[str, str], body: Any,
               basic: str | None) -> Source | str:
    """The source the request's write key names, or why not (the 401's message)."""
    in_body = body.get("writeKey") if isinstance(body, dict) else None
    if in_body is not None and not isinstance(in_body, str):
        return "writeKey: expected a string"
    if basic is not None and in_body is not None and basic != in_body:
        return ("the writeKey in the body is not the one in the Authorization header; send "
                "one key, or the same in both")
    key = basic if basic is not None else in_body
    if not key:
        return ("missing writeKey: send it as the HTTP basic user (Authorization: Basic "
                "base64('<writeKey>:')) or as writeKey in the JSON body")
    source = rt.segment_source(key)
    if source is None:
        return "unknown writeKey: it is not among the write_keys of a segment source"
    return source


class _Refused(Exception):
    def __init__(self, answer: Answer) -> None:
        self.answer = answer


def _messages(call: str, data: Any) -> tuple[str | None, list[Any], Any]:
    """(the type the call implies, the messages, the request's sentAt); ``_Refused`` with
    the answer when the body is not what the call takes."""
    kind = CALLS[call]
    if not isinstance(data, dict):
        raise _Refused(fail(400, "invalid_request",
                            f"body: expected a JSON object, got {kind_of(data)}"))
    if kind is not None:
        return kind, [data], None
    batch = data.get("batch")
    if not isinstance(batch, list):
        raise _Refused(fail(400, "invalid_request", 'batch: expected {"batch": [messages...]}'))
    if not batch:
        raise _Refused(fail(400, "invalid_request", "batch: no messages"))
    if len(batch) > MAX_MESSAGES:
        raise _Refused(fail(413, "payload_too_large",
                            f"batch: {len(batch)} messages, at most {MAX_MESSAGES} a request"))
    return None, batch, data.get("sentAt")


async def segment(rt: Runtime, scope: Scope, receive: Receive) -> Answer:
    started = time.perf_counter()
    call = scope["path_params"]["call"]
    if call not in CALLS:
        LOG.warning("segment: POST .../v1/%s is no Segment call (answered 404)",
                    rt.engine.masker.text(call[:64]))
        return fail(404, "not_found", f"no Segment call '{call}': use track, page, screen, "
                    "identify, group, alias or batch (or t, p, s, i, g, a, b)")
    headers = header_map(scope["headers"])
    try:
        basic = basic_write_key(headers)
    except ValueError as exc:
        return _unauthorized(str(exc))
    if basic is not None and rt.segment_source(basic) is None:
        return _unauthorized("unknown writeKey: it is not among the write_keys of a segment "
                             "source")
    raw = await read_body(receive, headers.get("content-length"), MAX_REQUEST_BYTES)
    if raw is None:
        return fail(413, "payload_too_large", f"body over {MAX_REQUEST_BYTES} bytes (Segment's "
                    "limit for a request)", {"Connection": "close"})
    body = decompress(raw, headers.get("content-encoding"), MAX_REQUEST_BYTES)
    if isinstance(body, Problem):
        return _problem(body, "payload_too_large" if body.status == 413 else "invalid_request")
    mt = media_type(headers.get("content-type"))
    if mt not in CONTENT_TYPES:
        return fail(415, "unsupported_media_type",
                    f"content type '{mt or 'none'}' not accepted; send application/json")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return fail(400, "invalid_json", f"body: invalid JSON ({exc})")
    source = _write_key(rt, headers, data, basic)
    if isinstance(source, str):
        return _unauthorized(source)
    if source.allowed_origins is not None:  # analytics.js's write key is public: opt-in check
        refused = origin.refused(source.allowed_origins, headers.get("origin"),
                                 headers.get("referer"), headers.get("host"),
                                 headers.get("x-forwarded-host"))
        if refused is not None:
            rt.metrics.origin_refused.labels(source.name).inc()
            return fail(403, "forbidden", f"origin {refused} may not post events here "
                        f"(sources.{source.name}.allowed_origins)")
    try:
        kind, messages, sent_at = _messages(call, data)
    except _Refused as refused:
        return refused.answer
    return await _ingest(rt, source, headers, kind, messages, sent_at, started)


def _unauthorized(why: str) -> Answer:
    LOG.warning("segment: %s (answered 401)", why.split(":", 1)[0])
    return fail(401, "unauthorized", why)


async def _ingest(rt: Runtime, source: Source, headers: Mapping[str, str], kind: str | None,
                  messages: list[Any], sent_at: Any, started: float) -> Answer:
    received_ms = int(time.time() * 1000)
    envelopes: list[Any] = []
    positions: list[int] = []  # each envelope's index among the messages
    refused: list[dict[str, Any]] = []
    for index, msg in enumerate(messages):
        try:
            size = len(orjson.dumps(msg))
            if size > MAX_MESSAGE_BYTES:
                raise MessageError(f"message: {size} bytes, over Segment's limit of "
                                   f"{MAX_MESSAGE_BYTES} for one message")
            envelopes.append(envelope(kind, msg, sent_at=sent_at, received_ms=received_ms))
            positions.append(index)
        except MessageError as exc:
            rt.metrics.events_rejected.labels(source.name, "envelope").inc()
            hop("rejected", source=source.name, reason="envelope",
                error=str(exc).split(":", 1)[0] + ": refused")
            refused.append({"index": index, "error": str(exc)})
    accepted = duplicates = 0
    if envelopes:
        batch = await process_trusted(rt, source, headers, envelopes)
        if isinstance(batch, Problem):
            return _problem(batch, "unavailable")
        accepted, duplicates = batch.accepted, batch.duplicates
        for result in batch.results:
            if result.status == "rejected":
                msg_kind = kind or _type_of(messages[positions[result.index]])
                refused.append({"index": positions[result.index],
                                "error": segment_error(result.error or "rejected", msg_kind)})
    refused.sort(key=lambda r: r["index"])
    rt.metrics.ingest_latency.observe(time.perf_counter() - started)
    if accepted == 0 and duplicates == 0:
        return fail(400, "invalid_message", refused[0]["error"], rejected=refused)
    answer: dict[str, Any] = {"success": True}
    if refused:
        answer["rejected"] = refused
    return 200, answer, []


def _type_of(msg: Any) -> str | None:
    kind = msg.get("type") if isinstance(msg, dict) else None
    return kind if isinstance(kind, str) else None
