"""Vendor destinations for end-to-end tests: the rule entry for a stand-in, dead letters,
and the events the vendor tests send (a browser page view with an email and a click id, a
backend purchase with the user's own IP and user agent)."""

from __future__ import annotations

from typing import Any

import httpx

from .relayproc import RelayProcess
from .rulesdir import FAST_BREAKER, FAST_RETRY
from .wire import CHROME_UA, new_event_id, wait_until

RAW_IP = "203.0.113.77"
TRUNCATED_IP = "203.0.113.0"
EMAIL = "Vendor.Probe@Example.org"


def destination(kind: str, settings: dict[str, Any], *, events: str | list[str] = "*",
                purpose: str = "analytics", pipeline: str | None = "minimize",
                **extra: Any) -> dict[str, Any]:
    dest: dict[str, Any] = {
        "type": kind, "purpose": purpose, "events": events, "settings": settings,
        "timeout": "2s", "retry": dict(FAST_RETRY), "circuit_breaker": dict(FAST_BREAKER),
        "legal_basis": "consent", "retention": "1 day"}
    if pipeline is not None:
        dest["pipeline"] = pipeline
    dest.update(extra)
    return dest


def browser_page_view(**extra: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event": "page_view", "event_id": new_event_id("pv"),
        "user": {"email": EMAIL},
        "context": {"page": {"url": "https://shop.example/p/1?utm_source=news&gclid=g1",
                             "referrer": "https://search.example/", "title": "Shoes"}}}
    ev.update(extra)
    return ev


def backend_purchase(**extra: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event": "purchase", "event_id": new_event_id("ord"),
        "user": {"id": "u_42", "email": EMAIL},
        "context": {"ip": RAW_IP, "user_agent": CHROME_UA, "country": "US",
                    "page": {"url": "https://shop.example/checkout"}},
        "properties": {"order_id": "O-" + new_event_id()[-8:], "value": 149.5,
                       "currency": "USD"}}
    ev.update(extra)
    return ev


def dead_letters(http: httpx.Client, relay: RelayProcess, destination: str, n: int,
                 timeout: float = 20) -> list[dict[str, Any]]:
    """``GET /dlq`` for ``destination`` once it holds at least ``n`` dead letters."""
    def found() -> list[dict[str, Any]]:
        r = http.get(relay.admin_url("/dlq"), params={"destination": destination})
        assert r.status_code == 200, r.text
        letters: list[dict[str, Any]] = r.json()
        return letters if len(letters) >= n else []

    return wait_until(found, timeout, f"{n} dead letter(s) of {destination}")
