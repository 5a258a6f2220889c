"""A stand-in for Segment's HTTP tracking API: ``POST /v1/batch`` as Segment checks it.

What it checks, as Segment does (its HTTP API docs, and what its libraries guard against):

- the write key as the HTTP basic user with an empty password (``base64("<key>:")``), or
  ``writeKey`` in the body; a wrong or missing key is 401;
- ``Content-Type: application/json``; a body of JSON (else 400 ``Invalid JSON``), at most
  500 KB (else 400 ``Exceed payload limit``), ``{"batch": [...]}`` of at most 2,500 messages;
- each message at most 32 KB (else the request is 400 ``Exceed payload limit``), with a known
  ``type``, a ``messageId``, a ``userId`` or an ``anonymousId``, an ``event`` for a track, a
  ``groupId`` for a group, a ``previousId`` (and ``userId``) for an alias, ISO-8601
  ``timestamp`` and ``sentAt``, and only the spec's top-level fields.

Segment answers 200 to a message it cannot use and drops it (its debugger says why): such a
message is recorded as a problem (a relay bug) and not accepted. Messages are deduplicated by
``messageId``, as Segment does: a repeat is counted in ``duplicates`` and not accepted again.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from datetime import datetime
from typing import Any

from .base import Reply, Request, StandIn

MAX_REQUEST_BYTES = 500_000
MAX_MESSAGE_BYTES = 32 * 1024
MAX_MESSAGES = 2500
TYPES = ("track", "page", "screen", "identify", "group", "alias")
SPEC_FIELDS = frozenset({
    "type", "event", "messageId", "userId", "anonymousId", "timestamp", "originalTimestamp",
    "sentAt", "receivedAt", "properties", "traits", "context", "integrations", "name",
    "category", "groupId", "previousId", "version", "writeKey", "_metadata", "channel",
})
OK = Reply.json(200, {"success": True})


def _iso(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


class SegmentStandIn(StandIn):
    name = "segment"

    def __init__(self, write_key: str) -> None:
        self.write_key = write_key
        self.duplicates = 0
        self._seen: set[str] = set()
        self._seen_lock = threading.Lock()
        super().__init__()

    def _key(self, request: Request, body: Any) -> str | None:
        given = request.headers.get("authorization", "")
        if given.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(given[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            if not decoded.endswith(":"):
                request.problem("basic auth: the write key must be followed by ':' (an "
                                "empty password)")
            return decoded.split(":", 1)[0]
        key = body.get("writeKey") if isinstance(body, dict) else None
        return key if isinstance(key, str) else None

    public_api_token = "sgp_e2ePublicApiToken01"
    REGULATION_TYPES = ("SUPPRESS_WITH_DELETE", "SUPPRESS_WITH_DELETE_INTERNAL", "DELETE_ONLY",
                        "DELETE_INTERNAL", "SUPPRESS_ONLY", "UNSUPPRESS")

    @property
    def regulations(self) -> list[Any]:
        """The regulations created (``POST /regulations`` of the Public API)."""
        with self._lock:
            return [r.json() for r in self.requests
                    if r.path == "/regulations" and r.reply and r.reply.status == 200]

    def _regulate(self, request: Request) -> Reply:
        if request.headers.get("authorization") != f"Bearer {self.public_api_token}":
            return Reply.json(401, {"errors": [{"type": "unauthorized",
                                                "message": "Unauthorized"}]})
        body = request.json()
        if not isinstance(body, dict):
            return Reply.json(422, {"errors": [{"type": "validation", "message": "body"}]})
        ids = body.get("subjectIds")
        if (body.get("regulationType") not in self.REGULATION_TYPES
                or body.get("subjectType") not in ("USER_ID", "OBJECT_ID")
                or not isinstance(ids, list) or not 1 <= len(ids) <= 5000
                or not all(isinstance(i, str) and i for i in ids)):
            return Reply.json(422, {"errors": [{"type": "validation",
                                                "message": "Validation failure"}]})
        return Reply.json(200, {"data": {"regulateId": f"reg{len(self.requests) + 1:08d}"}})

    def check(self, request: Request) -> Reply:
        if request.method == "POST" and request.path == "/regulations":
            return self._regulate(request)
        if request.method != "POST" or request.path != "/v1/batch":
            request.problem(f"{request.method} {request.path}: the relay posts to /v1/batch")
            return Reply.json(404, {"success": False, "message": "Not Found"})
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            request.problem("Content-Type must be application/json")
        if len(request.body) > MAX_REQUEST_BYTES:
            request.problem(f"request of {len(request.body)} bytes, over 500 KB")
            return Reply.json(400, {"success": False, "message": "Exceed payload limit"})
        body = request.json()
        if body is None:
            return Reply.json(400, {"success": False, "message": "Invalid JSON"})
        if self._key(request, body) != self.write_key:
            return Reply.json(401, {"success": False, "message": "Invalid write key"})
        batch = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(batch, list) or not batch:
            request.problem('body: expected {"batch": [messages...]}')
            return Reply.json(400, {"success": False, "message": "Invalid batch"})
        if len(batch) > MAX_MESSAGES:
            request.problem(f"{len(batch)} messages, over {MAX_MESSAGES}")
            return Reply.json(400, {"success": False, "message": "Exceed payload limit"})
        if "sentAt" in body and not _iso(body["sentAt"]):
            request.problem("sentAt: not an ISO-8601 time")
        unknown = set(body) - {"batch", "sentAt", "writeKey", "context", "integrations"}
        if unknown:
            request.problem(f"unknown top-level keys {sorted(unknown)}")
        for msg in batch:
            if len(json.dumps(msg, separators=(",", ":")).encode()) > MAX_MESSAGE_BYTES:
                request.problem("a message over 32 KB")
                return Reply.json(400, {"success": False, "message": "Exceed payload limit"})
        for index, msg in enumerate(batch):
            why = self._message_problem(msg)
            if why:
                request.problem(f"batch[{index}]: {why}")  # Segment: 200, dropped
                continue
            with self._seen_lock:
                if msg["messageId"] in self._seen:
                    self.duplicates += 1
                    continue
                self._seen.add(msg["messageId"])
            request.accept(msg)
        return OK

    @staticmethod
    def _message_problem(msg: Any) -> str | None:
        if not isinstance(msg, dict):
            return "not an object"
        kind = msg.get("type")
        if kind not in TYPES:
            return f"type {kind!r} is not one of {TYPES}"
        extra = set(msg) - SPEC_FIELDS
        if extra:
            return f"fields outside Segment's spec: {sorted(extra)}"
        if not isinstance(msg.get("messageId"), str) or not msg["messageId"]:
            return "no messageId (Segment would make one, and retries would not deduplicate)"
        if not msg.get("userId") and not msg.get("anonymousId"):
            return "no userId or anonymousId (no_user_anon_id)"
        if "timestamp" in msg and not _iso(msg["timestamp"]):
            return "timestamp: not an ISO-8601 time"
        if kind == "track" and not (isinstance(msg.get("event"), str) and msg["event"]):
            return "a track without an event name"
        if kind == "group" and msg.get("groupId") is None:
            return "a group without a groupId"
        if kind == "alias" and (msg.get("previousId") is None or not msg.get("userId")):
            return "an alias without previousId and userId"
        for key in ("properties", "traits", "context"):
            if key in msg and not isinstance(msg[key], dict):
                return f"{key}: not an object"
        return None

