"""Plausible's Events API: ``POST /api/event`` with one event, ``{"name", "url", "domain",
"referrer"?, "props"?, "revenue"?}``; the visitor's ``User-Agent`` and ``X-Forwarded-For``
are headers.

``202 ok`` when Plausible takes the event, and also when it drops it (a bot's user agent, a
domain it does not know: ``x-plausible-dropped: 1``, which is a problem here); ``400
{"errors": {...}}`` for no name, no url, a url over 2000 bytes, a blank domain. Problems:
what Plausible drops silently (more than 30 props, list or object values, a revenue without
a 3-letter currency), an email address in the clear.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from relay.demo.standins.base import (
    Answer,
    Call,
    StandIn,
    Took,
    View,
    put,
    raw_email_in,
    section,
)

PATH = "/api/event"
MAX_PROPS = 30
HEADERS = (("user-agent", "User-Agent"), ("x-forwarded-for", "X-Forwarded-For"))
_BOTS = re.compile(r"bot|crawler|spider|headless|python-httpx|python-requests|curl/", re.I)
_KEYS = {"name", "url", "domain", "referrer", "props", "revenue", "interactive", "screen_width"}
OK = Answer.text(202, "ok")
DROPPED = Answer.text(202, "ok", {"x-plausible-dropped": "1"})


class PlausibleStandIn(StandIn):
    kind = "plausible"

    def handle(self, call: Call) -> Took:
        if call.method != "POST" or call.path != PATH:
            return Took(Answer(404, b"Not Found", "text/plain"))
        body = call.json()
        if not isinstance(body, dict):
            return Took(Answer.json(400, {"errors": {"request": [
                "Unable to parse request body as json"]}}))
        headers = {name: call.headers[key] for key, name in HEADERS if key in call.headers}
        took = Took(OK, [{"body": body, "headers": headers} if headers else {"body": body}])
        errors: dict[str, list[str]] = {}
        if not isinstance(body.get("name"), str) or not body["name"]:
            errors["event_name"] = ["can't be blank"]
        url = body.get("url")
        if not isinstance(url, str) or not url or len(url.encode()) > 2000:
            errors["url"] = ["is required" if not url else "must be a valid url"]
        if not str(body.get("domain") or "").strip():
            errors["domain"] = ["can't be blank"]
        if errors:
            took.answer = Answer.json(400, {"errors": errors})
            return took
        self._silent(body, headers, took)
        return took

    def _silent(self, body: dict[str, Any], headers: dict[str, str], took: Took) -> None:
        problem = took.problems.append
        domains = {d.strip() for d in str(self.settings.domain).split(",")}
        if any(d.strip() not in domains for d in str(body["domain"]).split(",")):
            problem(f"domain {body['domain']!r} is not a site here: Plausible drops it")
            took.answer = DROPPED
        agent = headers.get("User-Agent")
        if agent is not None and _BOTS.search(agent):
            problem(f"User-Agent {agent!r}: Plausible drops it as a bot's")
            took.answer = DROPPED
        address = headers.get("X-Forwarded-For")
        if address is not None:
            try:
                ipaddress.ip_address(address.split(",")[0].strip())
            except ValueError:
                problem(f"X-Forwarded-For {address!r} is not an address")
        props = body.get("props", {})
        if not isinstance(props, dict) or len(props) > MAX_PROPS:
            problem(f"props: an object of at most {MAX_PROPS} (Plausible ignores the rest)")
        else:
            for key, value in props.items():
                if isinstance(value, dict | list) or value is None or value == "":
                    problem(f"props.{key}: Plausible drops such a value")
        revenue = body.get("revenue")
        if revenue is not None and not (
                isinstance(revenue, dict) and set(revenue) == {"amount", "currency"}
                and re.fullmatch(r"[A-Z]{3}", str(revenue["currency"]))):
            problem(f"revenue {revenue!r}: Plausible ignores it")
        for key in set(body) - _KEYS:
            problem(f"unknown field {key}")
        if raw_email_in(body):
            problem("an email address in the clear")

    def view(self, item: Any) -> View:
        out: View = {}
        body, headers = section(item, "body"), section(item, "headers")
        put(out, "context.page.url", "url", body.get("url"))
        put(out, "context.page.referrer", "referrer", body.get("referrer"))
        put(out, "context.ip", "X-Forwarded-For (header)", headers.get("X-Forwarded-For"))
        put(out, "context.user_agent", "User-Agent (header)", headers.get("User-Agent"))
        for key, value in section(body, "props").items():
            put(out, f"properties.{key}", f"props.{key}", value)
        revenue = section(body, "revenue")
        put(out, "properties.value", "revenue.amount", revenue.get("amount"))
        put(out, "properties.currency", "revenue.currency", revenue.get("currency"))
        return out

    def event_name(self, item: Any) -> str:
        return str(section(item, "body").get("name", "?"))
