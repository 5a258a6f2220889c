"""Plausible's Events API, as its ingestion takes a request (plausible/analytics:
``PlausibleWeb.Api.ExternalController.event``, ``Plausible.Ingestion.Request``,
``Plausible.Ingestion.Event``).

``POST /api/event`` answers ``202 ok`` when it takes the event, and also when it drops it
(a bot's user agent, a domain it does not know: ``x-plausible-dropped: 1``); ``400
{"errors": {...}}`` for a request it refuses (no url, a url over 2000 bytes, a ``data:``
url, a blank domain, a name over 120 characters, a prop key over 300 or value over 2000
bytes). What it would drop or cut without a word (more than 30 props, list or object
values, a revenue currency it does not know) is a ``problem``: the relay promised to fit
Plausible's limits itself.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from .base import Reply, Request, StandIn

_BOTS = re.compile(r"bot|crawler|spider|headless|python-httpx|python-requests|curl/",
                   re.IGNORECASE)
_CURRENCY = re.compile(r"[A-Z]{3}")
_OK = Reply(202, b"ok", (("Content-Type", "text/plain; charset=utf-8"),))


class PlausibleStandIn(StandIn):
    name = "plausible"

    def __init__(self, domains: tuple[str, ...] = ("shop.example",)) -> None:
        self.domains = domains
        super().__init__()

    def check(self, request: Request) -> Reply:
        if request.path != "/api/event" or request.method != "POST":
            return Reply(404, b"Not Found", (("Content-Type", "text/plain"),))
        kind = request.headers.get("content-type", "")
        if not kind.startswith(("application/json", "text/plain")):
            request.problem(f"Content-Type {kind!r}: Plausible takes application/json")
        body = request.json()
        if not isinstance(body, dict):
            return Reply.json(400, {"errors": {"request": [
                "Unable to parse request body as json"]}})
        errors = self._errors(body)
        if errors:
            for key, messages in errors.items():
                request.problem(f"400 {key}: {', '.join(messages)}")
            return Reply.json(400, {"errors": errors})
        self._silent(request, body)
        ua = request.headers.get("user-agent")
        if ua is not None and _BOTS.search(ua):
            request.problem(f"User-Agent {ua!r}: Plausible drops it as a bot's")
            return Reply(202, b"ok", (("Content-Type", "text/plain; charset=utf-8"),
                                      ("x-plausible-dropped", "1")))
        domain = str(body.get("domain") or body.get("d"))
        if any(d.strip() not in self.domains for d in domain.split(",")):
            request.problem(f"domain {domain!r} is not a site here: dropped")
            return Reply(202, b"ok", (("Content-Type", "text/plain; charset=utf-8"),
                                      ("x-plausible-dropped", "1")))
        xff = request.headers.get("x-forwarded-for")
        if xff is not None:
            try:
                ipaddress.ip_address(xff.split(",")[0].strip())
            except ValueError:
                request.problem(f"X-Forwarded-For {xff!r} is not an address")
        request.accept({"body": body, "user_agent": ua, "x_forwarded_for": xff})
        return _OK

    @staticmethod
    def _errors(body: dict[str, Any]) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        name = body.get("n") or body.get("name")
        if name is None:
            errors["event_name"] = ["can't be blank"]
        elif isinstance(name, bool) or not isinstance(name, str | int):
            errors["event_name"] = ["is invalid"]
        elif len(str(name)) > 120:
            errors["event_name"] = ["should be at most 120 character(s)"]
        elif name == "engagement" and "sd" not in body and "e" not in body:
            errors["event_name"] = ["engagement event requires a valid integer value for at "
                                    "least one of 'sd' or 'e' fields"]
        url = body.get("u") or body.get("url")
        if url is None:
            errors["url"] = ["is required"]
        elif not isinstance(url, str) or len(url.encode()) > 2000:
            errors["url"] = ["must be a valid url"]
        elif url.lower().startswith("data:"):
            errors["url"] = ["scheme is not allowed"]
        domain = body.get("d") or body.get("domain")
        if isinstance(domain, str) and not domain.strip():
            errors["domain"] = ["can't be blank"]
        props = body.get("p") or body.get("props") or {}
        if isinstance(props, dict) and any(
                len(str(k).encode()) > 300 or len(str(v).encode()) > 2000
                for k, v in props.items() if not isinstance(v, dict | list)):
            errors["props"] = ["keys should have at most 300 bytes and values 2000 bytes"]
        return errors

    @staticmethod
    def _silent(request: Request, body: dict[str, Any]) -> None:
        """What Plausible drops without saying so."""
        props = body.get("props", {})
        if not isinstance(props, dict):
            request.problem("props is not an object: Plausible ignores it")
        else:
            if len(props) > 30:
                request.problem(f"{len(props)} props: Plausible keeps 30")
            for key, value in props.items():
                if isinstance(value, dict | list) or value is None or value == "":
                    request.problem(f"props.{key}: Plausible drops such a value")
        revenue = body.get("revenue")
        if revenue is not None and not (
                isinstance(revenue, dict) and set(revenue) == {"amount", "currency"}
                and isinstance(revenue["currency"], str)
                and _CURRENCY.fullmatch(revenue["currency"])
                and isinstance(revenue["amount"], int | float | str)):
            request.problem(f"revenue {revenue!r}: Plausible ignores it")
        for key in set(body) - {"name", "url", "domain", "referrer", "props", "revenue",
                                "interactive", "screen_width"}:
            request.problem(f"unknown field {key}")
