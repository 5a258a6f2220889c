"""Meta's Conversions API, standing in: ``POST /{version}/{pixel_id}/events``.

It checks what Graph checks and answers as Graph does: the access token (``access_token`` in
the body or the query; missing: code 104, wrong: code 190), the pixel (code 100, subcode 33),
``data`` (1 to 1,000 events), each event's required fields and types, ``event_time`` in Unix
seconds no more than 7 days old (code 100, subcode 2804003, the whole request refused, as
Meta does), ``action_source``, and for website events ``client_user_agent`` and
``event_source_url``. What Meta would take but that shows a relay bug is recorded as a
problem: a hashed field that is not 64 lowercase hex digits, an unhashed one that is (IP,
user agent, fbc, fbp), an ``fbc`` not of the form ``fb.1.<ms>.<fbclid>``, a raw email in
``user_data``, the token in the URL, an unknown field, LDU without its country and state.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from .base import Reply, Request, StandIn

MAX_EVENTS = 1000
MAX_AGE = 7 * 86400
HASHED = frozenset({"em", "ph", "fn", "ln", "db", "ge", "ct", "st", "zp", "country",
                    "external_id"})
UNHASHED = frozenset({"client_ip_address", "client_user_agent", "fbc", "fbp"})
EVENT_KEYS = frozenset({"event_name", "event_time", "event_id", "action_source",
                        "event_source_url", "referrer_url", "user_data", "custom_data",
                        "data_processing_options", "data_processing_options_country",
                        "data_processing_options_state", "opt_out"})
ACTION_SOURCES = frozenset({"website", "app", "email", "phone_call", "chat", "physical_store",
                            "system_generated", "business_messaging", "other"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_FBC = re.compile(r"fb\.1\.[0-9]{13}\.\S+")
_FBP = re.compile(r"fb\.[0-9]\.[0-9]{13}\.[0-9]+")
_EMAIL = re.compile(r"[^@\s\"]+@[^@\s\"]+\.[a-z]{2,}", re.IGNORECASE)


def graph_error(code: int, message: str, subcode: int | None = None,
                title: str | None = None, status: int = 400) -> Reply:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code,
                             "fbtrace_id": "A" + uuid.uuid4().hex[:10]}
    if subcode is not None:
        error["error_subcode"] = subcode
        error["is_transient"] = False
    if title is not None:
        error["error_user_title"] = title
        error["error_user_msg"] = message
    return Reply.json(status, {"error": error})


class MetaStandIn(StandIn):
    name = "meta"

    def __init__(self, pixel_id: str = "1234567890", access_token: str = "meta-e2e-token",
                 max_age: float = MAX_AGE) -> None:
        self.pixel_id = pixel_id
        self.access_token = access_token
        self.max_age = max_age
        self.test_codes: list[str | None] = []
        super().__init__()

    def check(self, request: Request) -> Reply:
        m = re.fullmatch(r"/(v[0-9]{2}\.[0-9])/([0-9]+)/events", request.path)
        if request.method != "POST" or m is None:
            return graph_error(2500, "Unknown path components: " + request.path, status=400)
        if request.param("access_token") is not None:
            request.problem("the access token is in the URL (it belongs in the body)")
        body = request.json()
        if not isinstance(body, dict):
            return graph_error(100, "(#100) The parameter data is required")
        token = body.get("access_token") or request.param("access_token")
        if not token:
            return graph_error(104, "An access token is required to request this resource.")
        if token != self.access_token:
            return graph_error(190, "Invalid OAuth access token - Cannot parse access token")
        if m.group(2) != self.pixel_id:
            return graph_error(
                100, f"Unsupported post request. Object with ID '{m.group(2)}' does not exist, "
                "cannot be loaded due to missing permissions, or does not support this "
                "operation.", subcode=33)
        for key in body:
            if key not in ("data", "access_token", "test_event_code", "partner_agent"):
                request.problem(f"unknown top-level parameter {key}")
        data = body.get("data")
        if not isinstance(data, list) or not data:
            return graph_error(100, "(#100) The parameter data is required")
        if len(data) > MAX_EVENTS:
            return graph_error(100, f"(#100) data: at most {MAX_EVENTS} events", subcode=2804004)
        for index, event in enumerate(data):
            refused = self._event(request, index, event)
            if refused is not None:
                return refused
        for event in data:
            request.accept(event)
        with self._lock:
            self.test_codes.append(body.get("test_event_code"))
        return Reply.json(200, {"events_received": len(data), "messages": [],
                                "fbtrace_id": "A" + uuid.uuid4().hex[:10]})

    def _event(self, request: Request, index: int, event: Any) -> Reply | None:
        where = f"data[{index}]"
        if not isinstance(event, dict):
            return graph_error(100, f"(#100) {where} must be an object")
        for key in event:
            if key not in EVENT_KEYS:
                request.problem(f"{where}: unknown field {key}")
        for key in ("event_name", "event_time", "user_data", "action_source"):
            if key not in event:
                return graph_error(100, f"(#100) The parameter {key} is required", 2804019)
        if not isinstance(event["event_name"], str) or not event["event_name"]:
            return graph_error(100, f"(#100) {where}.event_name must be a non-empty string")
        t = event["event_time"]
        if not isinstance(t, int) or isinstance(t, bool):
            return graph_error(100, f"(#100) {where}.event_time must be an integer", 2804003)
        now = time.time()
        if t > now + 60 or t < 1_000_000_000:
            request.problem(f"{where}: event_time {t} is not Unix seconds of the past")
            return graph_error(100, "Invalid parameter", 2804004, "Event Timestamp In Future")
        if t < now - self.max_age:
            return graph_error(100, "The timestamp for this event is too far in the past.",
                               2804003, "Event Timestamp Too Old")
        if event["action_source"] not in ACTION_SOURCES:
            return graph_error(100, f"(#100) {where}.action_source is invalid")
        if not isinstance(event.get("event_id", ""), str):
            request.problem(f"{where}: event_id is not a string")
        user = event["user_data"]
        if not isinstance(user, dict) or not user:
            return graph_error(100, "Invalid parameter: user_data must contain at least one "
                               "customer information parameter", 2804050)
        if event["action_source"] == "website":
            if not isinstance(user.get("client_user_agent"), str):
                return graph_error(100, "The parameter client_user_agent is required for "
                                   "website events", 2804050)
            if not isinstance(event.get("event_source_url"), str):
                return graph_error(100, "The parameter event_source_url is required for "
                                   "website events", 2804050)
        self._user_data(request, where, user)
        custom = event.get("custom_data", {})
        if not isinstance(custom, dict):
            return graph_error(100, f"(#100) {where}.custom_data must be an object")
        if "value" in custom and (isinstance(custom["value"], bool)
                                  or not isinstance(custom["value"], int | float)):
            request.problem(f"{where}: custom_data.value is not a number")
        currency = custom.get("currency")
        if currency is not None and not (isinstance(currency, str)
                                         and re.fullmatch(r"[a-zA-Z]{3}", currency)):
            request.problem(f"{where}: custom_data.currency is not an ISO 4217 code")
        if event["event_name"] == "Purchase" and not ("value" in custom and currency):
            return graph_error(100, "Purchase events require custom_data.value and currency",
                               2804041)
        for content in custom.get("contents", []):
            if not isinstance(content, dict) or "id" not in content or "quantity" not in content:
                request.problem(f"{where}: custom_data.contents needs id and quantity")
        options = event.get("data_processing_options")
        if options is not None:
            if options != ["LDU"] and options != []:
                request.problem(f"{where}: data_processing_options {options!r}")
            if options == ["LDU"] and not (
                    event.get("data_processing_options_country") in (0, 1)
                    and event.get("data_processing_options_state") in (0, 1000)):
                request.problem(f"{where}: LDU without data_processing_options_country/_state")
        return None

    def _user_data(self, request: Request, where: str, user: dict[str, Any]) -> None:
        for key, value in user.items():
            if key in HASHED:
                values = value if isinstance(value, list) else [value]
                for v in values:
                    if not (isinstance(v, str) and _HEX64.fullmatch(v)):
                        request.problem(f"{where}: user_data.{key} is not 64 lowercase hex")
            elif key in UNHASHED:
                if not isinstance(value, str) or _HEX64.fullmatch(value):
                    request.problem(f"{where}: user_data.{key} must be sent unhashed")
            else:
                request.problem(f"{where}: unknown user_data field {key}")
        fbc = user.get("fbc")
        if isinstance(fbc, str) and not _FBC.fullmatch(fbc):
            request.problem(f"{where}: user_data.fbc is not fb.1.<creation ms>.<fbclid>")
        fbp = user.get("fbp")
        if isinstance(fbp, str) and not _FBP.fullmatch(fbp):
            request.problem(f"{where}: user_data.fbp is not fb.<n>.<creation ms>.<random>")
        # Hashed fields are checked above; the others must not smuggle an address in.
        if _EMAIL.search(str({k: v for k, v in user.items() if k != "client_user_agent"})):
            request.problem(f"{where}: a raw email in user_data")
