"""The demo shop: its page, and the tiny backend that confirms orders to the relay.

``POST /demo/checkout`` is what a shop's backend does once an order is paid: it posts the
authoritative ``purchase`` to the relay's webhook (``{prefix}/hook/backend``), signed with
the source's HMAC secret, with the ``event_id`` the browser used, the correlation cookie it
read from the request as ``correlation_id``, and the consent the shopper chose (read from the
consent tool's cookie, as a backend would). The relay keeps the browser's copy of the
purchase until this one arrives, merges the browser's page, click ids and user agent into
it, and delivers it once per destination. The backend knows its customer: the event carries
the customer number (``user.id``) and the email the receipt goes to.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from relay.demo.changes import COOKIE_VALUE
from relay.demo.context import Demo
from relay.signature import SIGNATURE_HEADER, sign
from relay.snippet import install_block
from relay.types import Event

BACKEND_SOURCE = "backend"  # the webhook source in relay/demo/rules/relay.yaml
CONSENT_COOKIE = "demo_consent"  # the shop's consent tool stores the choice here
CURRENCY = "EUR"
# Arriving "from an ad" on Meta: UTM parameters and Meta's click id (fbclid) show URL cleaning
# at every vendor, and what reaches the ad platforms only when ads is granted.
LANDING_QUERY = "utm_source=newsletter&utm_medium=email&utm_campaign=spring&fbclid=demo-fbclid-42"
# Something the backend knows and no vendor should get: the purchase contract drops it.
INTERNAL_NOTE = "fraud score 0.02; picked in warehouse B"
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_ITEMS = 50
MAX_EMAIL = 254
PAGE = (Path(__file__).parent / "static" / "shop.html").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    name: str
    price: float
    blurb: str


PRODUCTS = (
    Product("mug", "Relay mug", 12.0, "Holds coffee, not cookies."),
    Product("tee", "Edge T-shirt", 25.0, "First-party cotton."),
    Product("stickers", "Sticker pack", 4.5, "Seven stickers, zero trackers."),
)
CATALOG = {p.id: p for p in PRODUCTS}


@dataclass(frozen=True, slots=True)
class Order:
    event_id: str
    order_id: str
    items: tuple[tuple[Product, int], ...]
    email: str | None

    @property
    def value(self) -> float:
        return round(sum(p.price * n for p, n in self.items), 2)


def parse_order(body: Any) -> Order | str:
    """``{"event_id", "order_id", "items": [product ids], "email"}`` -> an Order, or what is
    wrong. Prices come from the catalog, never from the browser."""
    if not isinstance(body, dict):
        return "expected a JSON object"
    event_id, order_id = body.get("event_id"), body.get("order_id")
    for name, value in (("event_id", event_id), ("order_id", order_id)):
        if not isinstance(value, str) or not _ID.match(value):
            return f"{name}: expected 1 to 64 letters, digits or _ . : -"
    items = body.get("items")
    if not isinstance(items, list) or not items or len(items) > MAX_ITEMS:
        return f"items: expected 1 to {MAX_ITEMS} product ids"
    unknown = [i for i in items if i not in CATALOG]
    if unknown:
        return f"items: unknown product {unknown[0]!r}"
    email = body.get("email")
    if email is not None and (not isinstance(email, str) or len(email) > MAX_EMAIL):
        return f"email: expected a string of at most {MAX_EMAIL} characters"
    counted = Counter(items)
    return Order(
        event_id=str(event_id),
        order_id=str(order_id),
        items=tuple((CATALOG[i], n) for i, n in counted.items()),
        email=(email.strip() or None) if isinstance(email, str) else None,
    )


def parse_consent(cookie: str | None, purposes: tuple[str, ...]) -> dict[str, str]:
    """The consent tool's cookie (``analytics:granted|ads:denied``) -> ``{purpose: state}``.

    >>> parse_consent("analytics:granted|ads:denied|x:granted|ads", ("analytics", "ads"))
    {'analytics': 'granted', 'ads': 'denied'}
    """
    out: dict[str, str] = {}
    for part in unquote(cookie or "").split("|"):
        purpose, _, state = part.partition(":")
        if purpose in purposes and state in ("granted", "denied"):
            out[purpose] = state
    return out


def customer_id(email: str) -> str:
    """The shop's customer number for an email (its own records, in a real shop).

    >>> customer_id(" Ann@Example.com ") == customer_id("ann@example.com")
    True
    """
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()
    return f"C{int(digest[:8], 16) % 1_000_000:06d}"


def backend_event(
    order: Order, consent: dict[str, str], correlation: str | None, ip: str | None
) -> Event:
    """The authoritative purchase as the shop's backend knows it: the order from its own
    records, the customer (number and email), the shopper's address and consent, and the
    correlation cookie's value (the relay verifies it and links the browser's copy)."""
    event: Event = {"event": "purchase", "event_id": order.event_id}
    if consent:
        event["consent"] = consent
    if order.email:
        event["user"] = {"id": customer_id(order.email), "email": order.email}
    if ip:
        event["context"] = {"ip": ip}
    event["properties"] = {
        "order_id": order.order_id,
        "value": order.value,
        "currency": CURRENCY,
        "internal_note": INTERNAL_NOTE,
    }
    if correlation:
        event["correlation_id"] = correlation
    return event


def _demo(request: Request) -> Demo:
    demo: Demo = request.app.state.demo
    return demo


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


async def page(request: Request) -> Response:
    if not request.url.query:
        return RedirectResponse("/?" + LANDING_QUERY, 302)
    demo = _demo(request)
    products = [{"id": p.id, "name": p.name, "price": p.price, "blurb": p.blurb}
                for p in PRODUCTS]
    html = (
        PAGE.replace("{{INSTALL_BLOCK}}", install_block(demo.rules.relay.prefix))
        .replace("{{PREFIX}}", demo.rules.relay.prefix)
        .replace("{{PRODUCTS}}", orjson.dumps(products).decode().replace("</", "<\\/"))
        .replace("{{CURRENCY}}", CURRENCY)
        .replace("{{CONSENT_COOKIE}}", CONSENT_COOKIE)
        .replace("{{RULES}}", str(demo.rules_dir))
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


async def checkout(request: Request) -> Response:
    """The demo backend: confirm the order to the relay, signed, over loopback."""
    demo = _demo(request)
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return _json({"error": "invalid JSON"}, 400)
    order = parse_order(body)
    if isinstance(order, str):
        return _json({"error": order}, 400)
    rules = demo.rules
    consent = parse_consent(request.cookies.get(CONSENT_COOKIE), tuple(rules.purposes))
    event = backend_event(
        order,
        consent,
        request.cookies.get(rules.relay.cookie.name),
        request.client.host if request.client else None,
    )
    raw = orjson.dumps(event)
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(demo.backend_secret, raw, int(time.time())),
    }
    url = f"{demo.base_url}{rules.relay.prefix}/hook/{BACKEND_SOURCE}"
    try:
        answer = await demo.client().post(url, content=raw, headers=headers)
    except httpx.HTTPError as exc:
        return _json({"error": f"could not reach the relay at {url}: {exc!r}"}, 502)
    try:
        relay_answer: Any = answer.json()
    except ValueError:
        relay_answer = answer.text
    if "correlation_id" in event:  # HttpOnly for a reason: never hand it to page scripts
        event["correlation_id"] = COOKIE_VALUE
    return _json(
        {
            "order_id": order.order_id,
            "event_id": order.event_id,
            "value": order.value,
            "posted_to": url,
            "relay_status": answer.status_code,
            "relay_answer": relay_answer,
            "sent": event,
        },
        200 if answer.status_code < 300 else 502,
    )


async def reset(request: Request) -> Response:
    """Start over as a new visitor: forget the consent choice and the correlation cookie."""
    cookie = _demo(request).rules.relay.cookie
    response = RedirectResponse("/", 303)
    response.delete_cookie(cookie.name, path=cookie.path)
    response.delete_cookie(CONSENT_COOKIE, path="/")
    return response
