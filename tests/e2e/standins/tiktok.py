"""TikTok's Events API 2.0, standing in: ``POST /open_api/v1.3/event/track/``.

Like TikTok it answers HTTP 200 for its own errors, with a non-zero ``code``: a missing
``Access-Token`` is 40104, a wrong one 40105, a wrong ``event_source_id`` 40001 (no
permission for the pixel), a malformed body or event 40002, more than 1,000 events 40061
(TikTok's ``NumericErrorCodes``). Recorded as problems (relay bugs TikTok might not refuse):
``email``, ``phone`` or ``external_id`` not 64 lowercase hex, an ``ip``, ``user_agent``,
``ttclid`` or ``ttp`` that is hashed, an ``event_time`` in milliseconds, a raw email or phone
anywhere in ``user``, unknown fields, ``limited_data_use`` that is not a boolean.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from .base import Reply, Request, StandIn

PATH = "/open_api/v1.3/event/track/"
MAX_EVENTS = 1000
HASHED = frozenset({"email", "phone", "external_id"})
UNHASHED = frozenset({"ttclid", "ttp", "ip", "user_agent", "locale"})
EVENT_KEYS = frozenset({"event", "event_time", "event_id", "user", "page", "properties",
                        "limited_data_use"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_EMAIL = re.compile(r"[^@\s']+@[^@\s']+\.[a-z]{2,}", re.IGNORECASE)


def tiktok_answer(code: int, message: str) -> Reply:
    return Reply.json(200, {"code": code, "message": message,
                            "request_id": time.strftime("%Y%m%d%H%M%S") + uuid.uuid4().hex[:12],
                            "data": {}})


class TikTokStandIn(StandIn):
    name = "tiktok"

    def __init__(self, pixel_code: str = "C4E2ETESTPIXEL00001",
                 access_token: str = "tiktok-e2e-token") -> None:
        self.pixel_code = pixel_code
        self.access_token = access_token
        self.test_codes: list[str | None] = []
        super().__init__()

    def check(self, request: Request) -> Reply:
        if request.method != "POST" or request.path != PATH:
            return Reply.json(404, {"code": 40400, "message": "route not found"})
        token = request.headers.get("access-token")
        if not token:
            return tiktok_answer(40104, "Access token is null, please check.")
        if token != self.access_token:
            return tiktok_answer(40105, "Access token is incorrect or has been revoked.")
        if not request.headers.get("content-type", "").startswith("application/json"):
            request.problem("Content-Type is not application/json")
        body = request.json()
        if not isinstance(body, dict):
            return tiktok_answer(40002, "Invalid request body")
        for key in body:
            if key not in ("event_source", "event_source_id", "test_event_code", "data",
                           "partner_name"):
                request.problem(f"unknown top-level field {key}")
        if body.get("event_source") != "web":
            return tiktok_answer(40002, "event_source: must be one of web, app, offline, crm")
        if body.get("event_source_id") != self.pixel_code:
            return tiktok_answer(40001, "No permission to operate pixel code: "
                                 f"{body.get('event_source_id')}")
        data = body.get("data")
        if not isinstance(data, list) or not data:
            return tiktok_answer(40002, "data: field is required")
        if len(data) > MAX_EVENTS:
            return tiktok_answer(40061, f"data: at most {MAX_EVENTS} events")
        for index, event in enumerate(data):
            refused = self._event(request, index, event)
            if refused is not None:
                return refused
        for event in data:
            request.accept(event)
        with self._lock:
            self.test_codes.append(body.get("test_event_code"))
        return tiktok_answer(0, "OK")

    def _event(self, request: Request, index: int, event: Any) -> Reply | None:
        where = f"data[{index}]"
        if not isinstance(event, dict):
            return tiktok_answer(40002, f"{where}: must be an object")
        for key in event:
            if key not in EVENT_KEYS:
                request.problem(f"{where}: unknown field {key}")
        if not isinstance(event.get("event"), str) or not event["event"]:
            return tiktok_answer(40002, f"{where}.event: field is required")
        t = event.get("event_time")
        if not isinstance(t, int) or isinstance(t, bool):
            return tiktok_answer(40002, f"{where}.event_time: must be an integer")
        if t > time.time() + 60 or t < 1_000_000_000:
            request.problem(f"{where}: event_time {t} is not Unix seconds of the past")
            return tiktok_answer(40002, f"{where}.event_time: invalid timestamp")
        if not isinstance(event.get("event_id", ""), str):
            request.problem(f"{where}: event_id is not a string")
        if not isinstance(event.get("limited_data_use", False), bool):
            request.problem(f"{where}: limited_data_use is not a boolean")
        user = event.get("user", {})
        if not isinstance(user, dict):
            return tiktok_answer(40002, f"{where}.user: must be an object")
        for key, value in user.items():
            if key in HASHED:
                values = value if isinstance(value, list) else [value]
                for v in values:
                    if not (isinstance(v, str) and _HEX64.fullmatch(v)):
                        request.problem(f"{where}: user.{key} is not 64 lowercase hex")
            elif key in UNHASHED:
                if not isinstance(value, str) or _HEX64.fullmatch(value):
                    request.problem(f"{where}: user.{key} must be sent unhashed")
            else:
                request.problem(f"{where}: unknown user field {key}")
        if _EMAIL.search(str({k: v for k, v in user.items() if k != "user_agent"})):
            request.problem(f"{where}: a raw email in user")
        page = event.get("page", {})
        if not isinstance(page, dict) or not isinstance(page.get("url", ""), str):
            request.problem(f"{where}: page.url is not a string")
        props = event.get("properties", {})
        if not isinstance(props, dict):
            return tiktok_answer(40002, f"{where}.properties: must be an object")
        if "value" in props and (isinstance(props["value"], bool)
                                 or not isinstance(props["value"], int | float)):
            request.problem(f"{where}: properties.value is not a number")
        for content in props.get("contents", []):
            if not isinstance(content, dict) or not isinstance(content.get("content_id"), str):
                request.problem(f"{where}: properties.contents needs content_id")
        return None
