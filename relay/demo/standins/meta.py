"""Meta's Conversions API: ``POST /{api_version}/{pixel_id}/events`` with ``{"data": [...],
"access_token": ...}``.

Refused as Graph refuses them (HTTP 400 with Graph's ``error``): a missing token (code 104), a
wrong one (190), another pixel (100, subcode 33), no ``data``, an event without its required
fields, a website event without ``client_user_agent`` or ``event_source_url``, a Purchase
without value and currency. Problems: the token in the URL, a hashed field that is not
SHA-256 hex, an unhashed one that is, an ``fbc`` not of the form ``fb.1.<ms>.<fbclid>``, an
email address in the clear.
"""

from __future__ import annotations

import re
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

MAX_EVENTS = 1000
HASHED = {"em": "user.email", "ph": "user.phone", "fn": "user.first_name",
          "ln": "user.last_name", "db": "user.date_of_birth", "ge": "user.gender",
          "ct": "user.address.city", "st": "user.address.region",
          "zp": "user.address.postal_code", "country": "user.address.country",
          "external_id": "user.id"}
UNHASHED = {"client_ip_address": "context.ip", "client_user_agent": "context.user_agent",
            "fbp": "context.cookies._fbp"}
_PATH = re.compile(r"/v[0-9]{2}\.[0-9]/(?P<pixel>[0-9]+)/events")
_FBC = re.compile(r"fb\.1\.[0-9]{13}\.(?P<fbclid>\S+)")
_CONTENTS = (("id", "product_id"), ("quantity", "quantity"), ("item_price", "price"),
             ("title", "name"))


def graph_error(code: int, message: str, subcode: int | None = None) -> Answer:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code,
                             "fbtrace_id": "ARelayDemo"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return Answer.json(400, {"error": error})


class MetaStandIn(StandIn):
    kind = "meta_capi"

    def handle(self, call: Call) -> Took:
        m = _PATH.fullmatch(call.path)
        if call.method != "POST" or m is None:
            return Took(graph_error(2500, "Unknown path components: " + call.path))
        body = call.json()
        data = body.get("data") if isinstance(body, dict) else None
        items = list(data) if isinstance(data, list) else []
        problems: list[str] = []
        if call.param("access_token") is not None:
            problems.append("the access token is in the URL (it belongs in the body)")
        token = body.get("access_token") if isinstance(body, dict) else None

        def refuse(answer: Answer) -> Took:
            return Took(answer, items, problems)

        if not token:
            return refuse(graph_error(104, "An access token is required to request this "
                                      "resource."))
        if token != self.settings.access_token:
            return refuse(graph_error(190, "Invalid OAuth access token - Cannot parse access "
                                      "token"))
        if m.group("pixel") != self.settings.pixel_id:
            return refuse(graph_error(100, f"Unsupported post request. Object with ID "
                                      f"'{m.group('pixel')}' does not exist", 33))
        if not items or len(items) > MAX_EVENTS:
            return refuse(graph_error(100, f"(#100) data: 1 to {MAX_EVENTS} events"))
        for i, event in enumerate(items):
            refused = _event(f"data[{i}]", event, problems)
            if refused is not None:
                return refuse(refused)
        return Took(Answer.json(200, {"events_received": len(items), "messages": [],
                                      "fbtrace_id": "ARelayDemo"}), items, problems)

    def view(self, item: Any) -> View:
        out: View = {}
        put(out, "context.page.url", "event_source_url", item.get("event_source_url"))
        put(out, "context.page.referrer", "referrer_url", item.get("referrer_url"))
        user = section(item, "user_data")
        for theirs, ours in HASHED.items():
            put(out, ours, f"user_data.{theirs}", first(user.get(theirs)))
        for theirs, ours in UNHASHED.items():
            put(out, ours, f"user_data.{theirs}", user.get(theirs))
        fbc = _FBC.fullmatch(str(user.get("fbc", "")))
        if fbc:
            put(out, "context.click_ids.fbclid", "user_data.fbc", fbc.group("fbclid"))
        custom = section(item, "custom_data")
        for key, value in custom.items():
            if key not in ("contents", "content_ids", "content_type"):
                put(out, f"properties.{key}", f"custom_data.{key}", value)
        contents = custom.get("contents")
        if isinstance(contents, list) and len(contents) == 1 and isinstance(contents[0], dict):
            for theirs, ours in _CONTENTS:
                put(out, f"properties.{ours}", f"custom_data.contents[].{theirs}",
                    contents[0].get(theirs))
        return out

    def event_name(self, item: Any) -> str:
        return str(item.get("event_name", "?")) if isinstance(item, dict) else "?"

    def secrets(self) -> dict[str, str]:
        return {self.settings.access_token: "settings.access_token"}


def _event(where: str, event: Any, problems: list[str]) -> Answer | None:
    """Graph's refusal of the whole request for this event, or None (problems noted)."""
    if not isinstance(event, dict):
        return graph_error(100, f"(#100) {where} must be an object")
    for key in ("event_name", "event_time", "user_data", "action_source"):
        if key not in event:
            return graph_error(100, f"(#100) The parameter {key} is required", 2804019)
    if isinstance(event["event_time"], bool) or not isinstance(event["event_time"], int):
        return graph_error(100, f"(#100) {where}.event_time must be an integer", 2804003)
    user = event["user_data"]
    if not isinstance(user, dict) or not user:
        return graph_error(100, "Invalid parameter: user_data must contain at least one "
                           "customer information parameter", 2804050)
    if event["action_source"] == "website" and not (
            isinstance(user.get("client_user_agent"), str)
            and isinstance(event.get("event_source_url"), str)):
        return graph_error(100, "The parameters client_user_agent and event_source_url are "
                           "required for website events", 2804050)
    custom = section(event, "custom_data")
    if event["event_name"] == "Purchase" and not ("value" in custom and custom.get("currency")):
        return graph_error(100, "Purchase events require custom_data.value and currency",
                           2804041)
    for key, value in user.items():
        if key in HASHED:
            values = value if isinstance(value, list) else [value]
            if not all(is_sha256(v) for v in values):
                problems.append(f"{where}: user_data.{key} is not SHA-256 hex")
        elif key in UNHASHED or key == "fbc":
            if not isinstance(value, str) or is_sha256(value):
                problems.append(f"{where}: user_data.{key} must be sent unhashed")
        else:
            problems.append(f"{where}: unknown user_data field {key}")
    if "fbc" in user and not _FBC.fullmatch(str(user["fbc"])):
        problems.append(f"{where}: user_data.fbc is not fb.1.<creation ms>.<fbclid>")
    if raw_email_in({k: v for k, v in user.items() if k != "client_user_agent"}):
        problems.append(f"{where}: an email address in the clear in user_data")
    return None
