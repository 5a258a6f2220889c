"""The ``events[]`` entry of a GA4 Measurement Protocol body: the event's name and its
``params``, within Google's name rules and limits. Pure; used by ``relay.destinations.ga4``.

Names (events and parameters): at most 40 characters, letters, digits and ``_``, starting
with a letter; the prefixes ``_``, ``firebase_``, ``ga_``, ``google_`` (and ``gtag.``) and a
list of automatically collected names are reserved (developers.google.com/analytics/
devguides/collection/protocol/ga4/reference#reserved_names, sending-events#limitations).
A name with other characters is sent with ``_`` for them (``checkout:step/2`` ->
``checkout_step_2``), with a note; one that is still not a name, too long or reserved
drops the event (or the parameter), with a note: GA would discard it without a word.

A purchase with ``properties: {order_id: O1, value: 9.5, currency: eur}`` gets the params
``{"transaction_id": "O1", "value": 9.5, "currency": "EUR", ...}``; without an ``order_id``
its ``transaction_id`` is the ``event_id`` (GA4 deduplicates purchases by it).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from typing import Any

from relay.types import Event, StepContext

MAX_NAME = 40
MAX_PARAMS = 25  # per event
MAX_VALUE = 100  # characters of a parameter's string value
MAX_ITEMS = 200
PAGE_LIMITS = {"page_location": 1000, "page_referrer": 420, "page_title": 300}
RESERVED_PREFIXES = ("_", "firebase_", "ga_", "google_", "gtag.")
RESERVED_EVENTS = frozenset({
    "ad_activeview", "ad_click", "ad_exposure", "ad_impression", "ad_query", "ad_reward",
    "adunit_exposure", "app_background", "app_clear_data", "app_exception", "app_install",
    "app_remove", "app_store_refund", "app_store_subscription_cancel",
    "app_store_subscription_convert", "app_store_subscription_renew", "app_update",
    "app_upgrade", "dynamic_link_app_open", "dynamic_link_app_update",
    "dynamic_link_first_open", "error", "firebase_campaign", "firebase_in_app_message_action",
    "firebase_in_app_message_dismiss", "firebase_in_app_message_impression", "first_open",
    "first_visit", "in_app_purchase", "notification_dismiss", "notification_foreground",
    "notification_open", "notification_receive", "notification_send", "os_update",
    "screen_view", "session_start", "session_start_with_rollout", "user_engagement",
})
RESERVED_PARAMS = frozenset({"firebase_conversion"})

# The relay's, the Segment spec's and common names of e-commerce events -> GA4's recommended
# events (developers.google.com/analytics/devguides/collection/ga4/reference/events).
DEFAULT_EVENT_NAMES: Mapping[str, str] = {
    "page_view": "page_view", "Page Viewed": "page_view",
    "product_view": "view_item", "Product Viewed": "view_item",
    "product_list_view": "view_item_list", "Product List Viewed": "view_item_list",
    "product_click": "select_item", "Product Clicked": "select_item",
    "Product Added": "add_to_cart", "Product Removed": "remove_from_cart",
    "Cart Viewed": "view_cart",
    "checkout_started": "begin_checkout", "Checkout Started": "begin_checkout",
    "Payment Info Entered": "add_payment_info",
    "Order Completed": "purchase", "Order Refunded": "refund",
    "Product Added to Wishlist": "add_to_wishlist",
    "Promotion Viewed": "view_promotion", "Promotion Clicked": "select_promotion",
    "Products Searched": "search", "Product Shared": "share",
    "signup": "sign_up", "Signed Up": "sign_up", "Signed In": "login",
    "lead": "generate_lead",
}
# Property names -> GA4 parameter names; every other property keeps its name.
DEFAULT_PROPERTIES: Mapping[str, str] = {"order_id": "transaction_id", "products": "items"}
# Segment's product fields -> GA4 item parameters; GA-shaped items pass as they are.
ITEM_FIELDS: Mapping[str, str] = {
    "product_id": "item_id", "sku": "item_id", "name": "item_name",
    "category": "item_category", "brand": "item_brand", "variant": "item_variant",
    "position": "index",
}
TRANSACTION_EVENTS = ("purchase", "refund")  # GA4 requires transaction_id for these
_INVALID = re.compile(r"[^\w]+")
_DIGITS = re.compile(r"[0-9]+")
_CURRENCY = re.compile(r"[A-Za-z]{3}")


def name_problem(name: str, *, event: bool) -> str | None:
    """Why ``name`` is not a GA4 event (or parameter) name, or None."""
    if len(name) > MAX_NAME:
        return f"longer than {MAX_NAME} characters"
    if not name or not name[0].isalpha():
        return "does not start with a letter"
    if any(not (ch.isalnum() or ch == "_") for ch in name):
        return "has characters other than letters, digits and _"
    if name.startswith(RESERVED_PREFIXES):
        return "starts with a prefix GA4 reserves (_, firebase_, ga_, google_)"
    if name in (RESERVED_EVENTS if event else RESERVED_PARAMS):
        return "is a name GA4 reserves for its own events"
    return None


def _fitted(name: str, *, event: bool) -> tuple[str | None, str | None]:
    """(the name to send, None) or (None, why not). Other characters become ``_``."""
    if name_problem(name, event=event) is None:
        return name, None
    fixed = _INVALID.sub("_", name).strip("_")
    problem = name_problem(fixed, event=event)
    return (fixed, None) if problem is None else (None, problem)


def event_name(relay_name: str, names: Mapping[str, str], ctx: StepContext) -> str | None:
    """The GA4 name of the event ``relay_name`` (``names`` holds the defaults and the
    settings' ``event_names``), or None after noting why it cannot be sent."""
    mapped = names.get(relay_name, relay_name)
    name, problem = _fitted(mapped, event=True)
    if name is None:
        ctx.notes.append(f"event name '{mapped}' {problem}: GA4 would discard it (map it "
                         "with settings.event_names)")
    elif name != mapped:
        ctx.notes.append(f"event name '{mapped}' sent as '{name}'")
    return name


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def _scalar(key: str, value: Any, limit: int, ctx: StepContext) -> str | int | float | None:
    """A parameter value GA4 takes: a number, or a string of at most ``limit`` characters
    (longer ones are cut, with a note); booleans as ``"true"``/``"false"``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    number = _number(value)
    if number is not None:
        return number
    if isinstance(value, str):
        if len(value) > limit:
            ctx.notes.append(f"{key}: cut to the {limit} characters GA4 keeps")
            return value[:limit]
        return value
    if value is not None:
        ctx.notes.append(f"{key}: a list or an object, not sent (GA4 takes numbers and text)")
    return None


def _items(key: str, value: Any, ctx: StepContext) -> list[dict[str, Any]] | None:
    """GA4 ``items`` from GA-shaped items or Segment products (``ITEM_FIELDS``)."""
    if not isinstance(value, list):
        ctx.notes.append(f"{key}: not a list, not sent as items")
        return None
    if len(value) > MAX_ITEMS:
        ctx.notes.append(f"{key}: {len(value) - MAX_ITEMS} items over GA4's {MAX_ITEMS} "
                         "not sent")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value[:MAX_ITEMS]):
        if not isinstance(item, dict):
            ctx.notes.append(f"{key}[{i}]: not an object, not sent")
            continue
        mapped: dict[str, Any] = {}
        for field, raw in item.items():
            name, problem = _fitted(ITEM_FIELDS.get(str(field), str(field)), event=False)
            if name is None or name in mapped:
                why = f"parameter name {problem}" if name is None else f"a second '{name}'"
                ctx.notes.append(f"{key}[{i}].{field}: {why}, not sent")
                continue
            scalar = _scalar(f"{key}[{i}].{field}", raw, MAX_VALUE, ctx)
            if scalar is not None:
                mapped[name] = str(scalar) if name == "item_id" else scalar
        if mapped:
            out.append(mapped)
    return out


def session_id(event: Event) -> str | None:
    """``properties.session_id`` (digits) when given, else a stable number derived from the
    correlation id (the relay's cookie: one visit), else None."""
    props = event.get("properties")
    given = props.get("session_id") if isinstance(props, dict) else None
    if isinstance(given, int) and not isinstance(given, bool) and given >= 0:
        return str(given)
    if isinstance(given, str) and _DIGITS.fullmatch(given):
        return given
    cid = event.get("correlation_id")
    if isinstance(cid, str) and cid:
        digest = hashlib.sha256(b"relay.ga4.session_id:" + cid.encode()).digest()
        return str(1 + int.from_bytes(digest[:5], "big") % 9_999_999_999)
    return None


def params_of(
    event: Event, name: str, properties: Mapping[str, str], ctx: StepContext
) -> dict[str, Any] | None:
    """The event's ``params``: e-commerce first (transaction_id, value, currency, items),
    then session_id and engagement_time_msec, the page, and the other properties in order,
    at most 25. None (with a note) when GA4 cannot take the event: a refund without the
    order it refunds."""
    out: dict[str, Any] = {}
    props = event.get("properties")
    props = props if isinstance(props, dict) else {}
    custom: dict[str, Any] = {}
    for key, value in props.items():
        if key in ("session_id", "engagement_time_msec"):
            continue
        theirs, problem = _fitted(properties.get(key, key), event=False)
        where = f"properties.{key}"
        if theirs is None:
            ctx.notes.append(f"{where}: parameter name {problem}, not sent (map it with "
                             "settings.properties)")
            continue
        if theirs in out or theirs in custom:
            ctx.notes.append(f"{where}: a second '{theirs}', not sent")
            continue
        if theirs == "items":
            items = _items(where, value, ctx)
            if items is not None:
                out["items"] = items
        elif theirs == "value":
            number = _number(value)
            if number is None:
                ctx.notes.append(f"{where}: not a number, not sent as value")
            else:
                out["value"] = number
        elif theirs == "currency":
            if isinstance(value, str) and _CURRENCY.fullmatch(value.strip()):
                out["currency"] = value.strip().upper()
            else:
                ctx.notes.append(f"{where}: not a 3-letter ISO 4217 code, not sent")
        elif theirs == "transaction_id":
            scalar = _scalar(where, value, MAX_VALUE, ctx)
            if scalar is not None and str(scalar):
                out["transaction_id"] = str(scalar)
        else:
            scalar = _scalar(where, value, MAX_VALUE, ctx)
            if scalar is not None:
                custom[theirs] = scalar
    if name in TRANSACTION_EVENTS and "transaction_id" not in out:
        if name == "refund":
            ctx.notes.append("a refund needs properties.order_id, the transaction it "
                             "refunds: GA4 cannot take it")
            return None
        out["transaction_id"] = event["event_id"]  # GA4 deduplicates purchases by it
    if "value" in out and "currency" not in out:
        ctx.notes.append("value without currency: GA4 computes no revenue from it")
    session = session_id(event)
    if session is not None:
        out["session_id"] = session
    engagement = _number(props.get("engagement_time_msec"))
    if engagement is not None and engagement >= 0:
        out["engagement_time_msec"] = int(engagement)
    page = (event.get("context") or {}).get("page")
    if isinstance(page, dict):
        for ours, theirs in (("url", "page_location"), ("referrer", "page_referrer"),
                             ("title", "page_title")):
            value = page.get(ours)
            if isinstance(value, str) and value:
                out[theirs] = _scalar(f"context.page.{ours}", value, PAGE_LIMITS[theirs], ctx)
    for key, value in custom.items():
        out.setdefault(key, value)
    if len(out) > MAX_PARAMS:
        dropped = list(out)[MAX_PARAMS:]
        ctx.notes.append(f"{len(dropped)} parameter(s) over GA4's {MAX_PARAMS} not sent: "
                         + ", ".join(dropped))
        out = dict(list(out.items())[:MAX_PARAMS])
    return out
