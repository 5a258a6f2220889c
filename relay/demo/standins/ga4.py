"""Google Analytics 4's Measurement Protocol: ``POST /mp/collect?measurement_id=&api_secret=``.

Google answers 204 to whatever it receives, a wrong secret or a malformed event included,
and then discards what it cannot use: so does this stand-in, and what Google would discard
is a problem (an unknown stream or secret, a missing ``client_id``, more than 25 events or
parameters, an event or parameter name GA4 refuses, a purchase without ``transaction_id``,
``user_data`` without ``user_id`` or not SHA-256, an email address in the clear).
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

PATH = "/mp/collect"
MAX_EVENTS = MAX_PARAMS = 25
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")
_RESERVED = ("_", "firebase_", "ga_", "google_", "gtag.")
_TOP = {"client_id", "user_id", "timestamp_micros", "user_properties", "user_data", "consent",
        "non_personalized_ads", "user_location", "ip_override", "device", "user_agent", "events"}
_OWN_PARAMS = {"page_location", "page_referrer", "page_title", "session_id",
               "engagement_time_msec", "transaction_id", "value", "currency"}
NO_CONTENT = Answer(204, b"", None)


class Ga4StandIn(StandIn):
    kind = "ga4"

    def handle(self, call: Call) -> Took:
        if call.path != PATH or call.method != "POST":
            return Took(Answer(404, b"<html>Not Found</html>", "text/html"))
        took = Took(NO_CONTENT)
        problem = took.problems.append
        if call.param("measurement_id") != self.settings.measurement_id:
            problem("measurement_id is not the stream's: Google discards the events")
        if call.param("api_secret") != self.settings.api_secret:
            problem("api_secret is not one of the stream's: Google discards the events")
        if not call.headers.get("content-type", "").startswith("application/json"):
            problem("Content-Type is not application/json")
        body = call.json()
        if not isinstance(body, dict) or not isinstance(body.get("events"), list):
            problem("the body is not a Measurement Protocol object with events")
            return took
        head = {k: v for k, v in body.items() if k != "events"}
        took.items = [{**head, "events": [ev]} for ev in body["events"]]
        for key in set(body) - _TOP:
            problem(f"unknown field {key}")
        if not isinstance(body.get("client_id"), str) or not body["client_id"]:
            problem("client_id is required for web streams")
        if not 1 <= len(body["events"]) <= MAX_EVENTS:
            problem(f"{len(body['events'])} events: 1 to {MAX_EVENTS}")
        if "user_data" in body:
            _user_data(body, problem)
        if raw_email_in(body):
            problem("an email address in the clear")
        for i, ev in enumerate(body["events"]):
            _event(f"events[{i}]", ev, problem)
        return took

    def view(self, item: Any) -> View:
        out: View = {}
        data = section(item, "user_data")
        put(out, "user.id", "user_id", item.get("user_id"))
        put(out, "user.email", "user_data.sha256_email_address",
            first(data.get("sha256_email_address")))
        put(out, "user.phone", "user_data.sha256_phone_number",
            first(data.get("sha256_phone_number")))
        put(out, "context.ip", "ip_override", item.get("ip_override"))
        put(out, "context.user_agent", "user_agent", item.get("user_agent"))
        device = section(item, "device")
        for ours, theirs in (("type", "category"), ("os", "operating_system"),
                             ("browser", "browser")):
            put(out, f"context.device.{ours}", f"device.{theirs}", device.get(theirs))
        put(out, "context.country", "user_location.country_id",
            section(item, "user_location").get("country_id"))
        events = item.get("events") or [{}]
        params = section(events[0], "params")
        where = "events[].params."
        for ours, theirs in (("url", "page_location"), ("referrer", "page_referrer"),
                             ("title", "page_title")):
            put(out, f"context.page.{ours}", where + theirs, params.get(theirs))
        for ours, theirs in (("order_id", "transaction_id"), ("value", "value"),
                             ("currency", "currency")):
            put(out, f"properties.{ours}", where + theirs, params.get(theirs))
        for key, value in params.items():
            if key not in _OWN_PARAMS:
                put(out, f"properties.{key}", where + key, value)
        return out

    def event_name(self, item: Any) -> str:
        events = item.get("events") if isinstance(item, dict) else None
        return str(events[0].get("name")) if events and isinstance(events[0], dict) else "?"

    def secrets(self) -> dict[str, str]:
        return {self.settings.api_secret: "settings.api_secret"}


def _user_data(body: dict[str, Any], problem: Any) -> None:
    if "user_id" not in body:
        problem("user_data without user_id: Google ignores it")
    for key, values in section(body, "user_data").items():
        if key == "address":
            continue
        if not isinstance(values, list) or not all(is_sha256(v) for v in values):
            problem(f"user_data.{key} is not a list of SHA-256 hex digests")


def _event(where: str, ev: Any, problem: Any) -> None:
    if not isinstance(ev, dict):
        problem(f"{where} is not an object")
        return
    name = ev.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.startswith(_RESERVED):
        problem(f"{where}.name {name!r}: GA4 discards the event")
    params = ev.get("params", {})
    if not isinstance(params, dict) or len(params) > MAX_PARAMS:
        problem(f"{where}.params: an object of at most {MAX_PARAMS} parameters")
        return
    for key, value in params.items():
        if not _NAME.fullmatch(key) or key.startswith(_RESERVED):
            problem(f"{where}.params.{key}: not a parameter name GA4 takes")
        if key != "items" and (isinstance(value, bool) or not isinstance(value, str | int | float)):
            problem(f"{where}.params.{key}: a parameter value is a string or a number")
    if name in ("purchase", "refund") and not params.get("transaction_id"):
        problem(f"{where}: a {name} without transaction_id")
    if "currency" in params and not re.fullmatch(r"[A-Z]{3}", str(params["currency"])):
        problem(f"{where}.params.currency: not an ISO 4217 code")
