"""What the ad platforms' mappings (``meta_capi``, ``tiktok``) share: reading the envelope,
its times as Unix seconds, the standard e-commerce properties as a list of products, and the
name maps. Each vendor normalizes and hashes identifiers its own way, in its own module.

    >>> unix_seconds("2026-11-28T12:00:00.000Z")
    1795867200
    >>> products({"items": [{"item_id": "sku1", "price": 10, "quantity": 2}]})
    [Product(id='sku1', quantity=2, price=10, name=None, brand=None, category=None)]
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from relay.destinations.base import parse_retry_after
from relay.types import Event

# Lists of products, by the names the relay's sources use: GA4's ``items`` and Segment's
# ``products``; a single-product event (``product_view``) has ``properties.product_id``.
PRODUCT_LISTS = ("items", "products")
PRODUCT_ID_KEYS = ("item_id", "product_id", "id", "sku")
PRODUCT_NAME_KEYS = ("item_name", "name")
PRODUCT_BRAND_KEYS = ("item_brand", "brand")
PRODUCT_CATEGORY_KEYS = ("item_category", "category")
MAX_PRODUCTS = 100  # more products in one event than any vendor takes; the rest are not sent


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    quantity: int | float | None = None
    price: int | float | None = None
    name: str | None = None
    brand: str | None = None
    category: str | None = None


def section(event: Event, *keys: str) -> dict[str, Any]:
    """The object at ``event[k1][k2]...``, or an empty dict when it is missing or not one."""
    value: Any = event
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, dict) else {}


def text(value: Any) -> str | None:
    """A non-empty string (a whole number taken as its digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    return None


def number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def unix_seconds(iso: Any) -> int | None:
    """An envelope time (``2026-11-28T12:00:00.000Z``) as whole Unix seconds, or None."""
    ms = unix_ms(iso)
    return None if ms is None else ms // 1000


def unix_ms(iso: Any) -> int | None:
    if not isinstance(iso, str):
        return None
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def age_seconds(event: Event) -> float | None:
    """How old the event was when the relay received it (``received_at - time``)."""
    happened, received = unix_ms(event.get("time")), unix_ms(event.get("received_at"))
    if happened is None or received is None:
        return None
    return (received - happened) / 1000


def _first(item: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        found = text(item.get(key))
        if found is not None:
            return found
    return None


def products(properties: Mapping[str, Any]) -> list[Product]:
    """The event's products: ``items`` or ``products`` (each with an ``item_id``,
    ``product_id``, ``id`` or ``sku``), else the single ``product_id`` of the properties."""
    for key in PRODUCT_LISTS:
        listed = properties.get(key)
        if isinstance(listed, list):
            out = [p for item in listed[:MAX_PRODUCTS]
                   if isinstance(item, dict) and (p := _product(item)) is not None]
            if out:
                return out
    single = text(properties.get("product_id")) or text(properties.get("sku"))
    if single is None:
        return []
    return [Product(single, number(properties.get("quantity")), number(properties.get("price")),
                    _first(properties, PRODUCT_NAME_KEYS), _first(properties, PRODUCT_BRAND_KEYS),
                    _first(properties, PRODUCT_CATEGORY_KEYS))]


def _product(item: Mapping[str, Any]) -> Product | None:
    pid = _first(item, PRODUCT_ID_KEYS)
    if pid is None:
        return None
    return Product(pid, number(item.get("quantity")), number(item.get("price")),
                   _first(item, PRODUCT_NAME_KEYS), _first(item, PRODUCT_BRAND_KEYS),
                   _first(item, PRODUCT_CATEGORY_KEYS))


def product_sources(leaf: str) -> list[str]:
    """Where a product field comes from, as dotted paths (``[]`` for a list), for
    ``fields``: ``product_sources("id")`` -> ``properties.items[].item_id``, ...)."""
    keys = {"id": PRODUCT_ID_KEYS, "quantity": ("quantity",), "price": ("price",),
            "name": PRODUCT_NAME_KEYS, "brand": PRODUCT_BRAND_KEYS,
            "category": PRODUCT_CATEGORY_KEYS}[leaf]
    out = [f"properties.{lst}[].{k}" for lst in PRODUCT_LISTS for k in keys]
    single = {"id": ("product_id", "sku")}.get(leaf, keys)
    return out + [f"properties.{k}" for k in single]


def merged(defaults: Mapping[str, str], given: Mapping[str, str]) -> dict[str, str]:
    """A name map: the type's defaults, overridden and extended by the settings."""
    return {**defaults, **given}


def mapped_properties(properties: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """The properties ``names`` maps, under the vendor's names (unmapped ones are not sent:
    a property reaches the vendor only when the type or the settings name it)."""
    out: dict[str, Any] = {}
    for ours, theirs in names.items():
        value = properties.get(ours)
        if value is not None and theirs not in out:
            out[theirs] = value
    return out


def retry_after(response: httpx.Response) -> float | None:
    """The answer's ``Retry-After`` in seconds, whatever its status (ad platforms send rate
    limits as 400 or 200 answers with an error code), measured on the vendor's clock."""
    header = response.headers.get("retry-after")
    if not header:
        return None
    now = time.time()
    date = response.headers.get("date")
    if date:
        with contextlib.suppress(TypeError, ValueError, IndexError):
            now = parsedate_to_datetime(date).timestamp()
    return parse_retry_after(header, now)
