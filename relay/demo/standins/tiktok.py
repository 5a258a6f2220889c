"""TikTok's Events API 2.0: ``POST /open_api/v1.3/event/track/`` with the ``Access-Token``
header and ``{"event_source": "web", "event_source_id": <pixel code>, "data": [...]}``.

Like TikTok it answers HTTP 200 for its own errors, with a ``code``: 40104 (no token), 40105
(a wrong one), 40001 (another pixel), 40002 (a malformed body or event). Problems: ``email``,
``phone`` or ``external_id`` not SHA-256 hex, an ``ip``, ``user_agent`` or ``ttclid`` that is,
an ``event_time`` that is not Unix seconds, an email address in the clear in ``user``.
"""

from __future__ import annotations

from typing import Any

from relay.demo.standins.base import (
    Answer,
    Call,
    StandIn,
    Took,
    View,
    first,
    is_sha256,
    put,
    raw_email_in,
    section,
)

PATH = "/open_api/v1.3/event/track/"
MAX_EVENTS = 1000
HASHED = {"email": "user.email", "phone": "user.phone", "external_id": "user.id"}
UNHASHED = {"ip": "context.ip", "user_agent": "context.user_agent", "locale": "context.locale",
            "ttclid": "context.click_ids.ttclid", "ttp": "context.cookies._ttp"}
_CONTENTS = (("content_id", "product_id"), ("quantity", "quantity"), ("price", "price"),
             ("content_name", "name"))


def tiktok_answer(code: int, message: str) -> Answer:
    return Answer.json(200, {"code": code, "message": message, "request_id": "relay-demo",
                             "data": {}})


class TikTokStandIn(StandIn):
    kind = "tiktok"

    def handle(self, call: Call) -> Took:
        if call.method != "POST" or call.path != PATH:
            return Took(Answer.json(404, {"code": 40400, "message": "route not found"}))
        body = call.json()
        data = body.get("data") if isinstance(body, dict) else None
        items = list(data) if isinstance(data, list) else []
        took = Took(tiktok_answer(0, "OK"), items)
        token = call.headers.get("access-token")
        if not token:
            took.answer = tiktok_answer(40104, "Access token is null, please check.")
        elif token != self.settings.access_token:
            took.answer = tiktok_answer(40105, "Access token is incorrect or has been revoked.")
        elif not isinstance(body, dict) or body.get("event_source") != "web":
            took.answer = tiktok_answer(40002, "event_source: must be one of web, app, "
                                        "offline, crm")
        elif body.get("event_source_id") != self.settings.pixel_code:
            took.answer = tiktok_answer(40001, "No permission to operate pixel code: "
                                        f"{body.get('event_source_id')}")
        elif not items or len(items) > MAX_EVENTS:
            took.answer = tiktok_answer(40002, f"data: 1 to {MAX_EVENTS} events")
        else:
            for i, event in enumerate(items):
                why = _event(f"data[{i}]", event, took.problems)
                if why is not None:
                    took.answer = tiktok_answer(40002, why)
                    break
        return took

    def view(self, item: Any) -> View:
        out: View = {}
        page = section(item, "page")
        put(out, "context.page.url", "page.url", page.get("url"))
        put(out, "context.page.referrer", "page.referrer", page.get("referrer"))
        user = section(item, "user")
        for theirs, ours in HASHED.items():
            put(out, ours, f"user.{theirs}", first(user.get(theirs)))
        for theirs, ours in UNHASHED.items():
            put(out, ours, f"user.{theirs}", user.get(theirs))
        props = section(item, "properties")
        for key, value in props.items():
            if key not in ("contents", "content_type"):
                put(out, f"properties.{key}", f"properties.{key}", value)
        contents = props.get("contents")
        if isinstance(contents, list) and len(contents) == 1 and isinstance(contents[0], dict):
            for theirs, ours in _CONTENTS:
                put(out, f"properties.{ours}", f"properties.contents[].{theirs}",
                    contents[0].get(theirs))
        return out

    def event_name(self, item: Any) -> str:
        return str(item.get("event", "?")) if isinstance(item, dict) else "?"

    def secrets(self) -> dict[str, str]:
        return {self.settings.access_token: "settings.access_token"}


def _event(where: str, event: Any, problems: list[str]) -> str | None:
    """TikTok's refusal (40002) of the request for this event, or None (problems noted)."""
    if not isinstance(event, dict):
        return f"{where}: must be an object"
    if not isinstance(event.get("event"), str) or not event["event"]:
        return f"{where}.event: field is required"
    t = event.get("event_time")
    if isinstance(t, bool) or not isinstance(t, int):
        return f"{where}.event_time: must be an integer"
    if t > 10_000_000_000:
        problems.append(f"{where}: event_time {t} is not Unix seconds")
    user = section(event, "user")
    for key, value in user.items():
        if key in HASHED:
            values = value if isinstance(value, list) else [value]
            if not all(is_sha256(v) for v in values):
                problems.append(f"{where}: user.{key} is not SHA-256 hex")
        elif key in UNHASHED:
            if not isinstance(value, str) or is_sha256(value):
                problems.append(f"{where}: user.{key} must be sent unhashed")
        else:
            problems.append(f"{where}: unknown user field {key}")
    if raw_email_in({k: v for k, v in user.items() if k != "user_agent"}):
        problems.append(f"{where}: an email address in the clear in user")
    if not isinstance(event.get("limited_data_use", False), bool):
        problems.append(f"{where}: limited_data_use is not a boolean")
    return None
