"""PostHog: what posthog-js (1.449) sends to ``{api_host}/e/``, ``/i/v0/e/``, ``/batch/``
and ``/flags/``.

Bodies, as ``lib/src/request.js`` encodes them:

- gzip (``compression: gzip-js``, the default once remote config allows it, and always
  with ``CompressionStream``): the JSON gzipped, ``Content-Type: text/plain``, no hint in
  the URL (the capture service detects gzip by its magic bytes, and so does the proxy,
  which undoes and redoes the gzip around this module: ``relay.proxy.rewrite``);
- base64 (``?compression=base64``, what ``sendBeacon`` uses): a form body
  ``data=<urlencoded base64 of the JSON>``;
- JSON (``disable_compression``): ``application/json``;
- legacy GETs and forms carry ``data=`` (JSON or base64) in the query or body.

The JSON is one event, a list of them, ``{"api_key", "batch": [...], "sent_at"}``, or a
``/flags/`` request (``{"token", "distinct_id", "person_properties", ...}``). Each is
re-encoded the way it came. ``lz64`` (an old posthog-js compression) is refused: the
library no longer sends it.

A hit the consent gate stops is answered ``200 {"status": 1}``: posthog-js retries every
answer but 200 and 4xx up to ten times (``retry-queue.js``), and PostHog's capture endpoint
answers 200 with that body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relay.proxy.vendors.base import (
    Answer,
    Encoded,
    Field,
    Payload,
    Query,
    Shape,
    Undecodable,
    VendorFormat,
    b64decode,
    b64encode,
    dumps,
    loads,
    looks_like_json,
    parse_pairs,
    query_value,
    render_pairs,
)

# Keys of an event's properties that are posthog-js bookkeeping, kept as they are: every
# "$" property (the ones with a meaning are fields below), the token, the ids, the
# campaign parameters the library copies from the URL (utm_*: campaign, not identity).
_SYSTEM = frozenset({"token", "distinct_id", "title"})


def _system(key: str) -> bool:
    return key.startswith("$") or key in _SYSTEM or key.startswith("utm_")


# Where posthog-js puts properties: the event's, and the person's ($set, $set_once: at the
# top of the event, or inside its properties).
_CONTAINERS = ("properties", "$set", "$set_once", "properties.$set", "properties.$set_once")
# URLs and referrers posthog-js copies into those (the person's first and latest pages).
_URLS = ("$current_url", "$session_entry_url", "$initial_current_url", "$prev_pageview_url")
_REFERRERS = ("$referrer", "$session_entry_referrer", "$initial_referrer")
_PRIMARY = {"properties.$current_url", "properties.$referrer"}

EVENT = Shape(
    fields=(
        Field("context.ip", "properties.$ip"),
        Field("context.user_agent", "properties.$raw_user_agent"),
        Field("context.page.url", "properties.$current_url"),
        Field("context.page.referrer", "properties.$referrer"),
        Field("context.page.title", "properties.title"),
        Field("user.id", "properties.distinct_id"),
    ),
    properties="properties",
    system=_system,
    user="$set",
    also=(
        Field("user.id", "distinct_id"),
        Field("user.id", "properties.$user_id"),
        Field("context.ip", "ip"),
        *(Field("context.ip", f"{c}.$ip") for c in _CONTAINERS[1:]),
        *(Field("context.user_agent", f"{c}.$raw_user_agent") for c in _CONTAINERS[1:]),
        *(Field("context.page.url", f"{c}.{k}") for c in _CONTAINERS for k in _URLS
          if f"{c}.{k}" not in _PRIMARY),
        *(Field("context.page.referrer", f"{c}.{k}") for c in _CONTAINERS for k in _REFERRERS
          if f"{c}.{k}" not in _PRIMARY),
        Field("user", "$set_once"),
        Field("user", "properties.$set"),
        Field("user", "properties.$set_once"),
    ),
    click_ids=_CONTAINERS,
    click_prefixes=("", "$session_entry_", "$initial_"),
)
FLAGS = Shape(
    fields=(Field("user.id", "distinct_id"),),
    user="person_properties",
    system=lambda key: key.startswith("$"),
    also=(Field("context.page.url", "person_properties.$current_url"),),
)


def _shape(item: dict[str, Any]) -> Shape:
    return EVENT if "event" in item else FLAGS


def _items(data: Any) -> list[tuple[dict[str, Any], Shape]]:
    if isinstance(data, dict) and isinstance(data.get("batch"), list):
        events = data["batch"]
    elif isinstance(data, list):
        events = data
    elif isinstance(data, dict):
        events = [data]
    else:
        raise Undecodable("the JSON is not an event, a list of events or a batch")
    if not all(isinstance(e, dict) for e in events):
        raise Undecodable("the batch holds something that is not an event")
    return [(e, _shape(e)) for e in events]


def _json(raw: bytes | str, base64_: bool, what: str) -> Any:
    if base64_:
        return loads(b64decode(raw, what), what)
    return loads(raw, what)


def _form_data(value: str, hint: str | None) -> tuple[Any, bool]:
    """A form's ``data`` value: JSON, or base64 JSON (with or without the hint)."""
    if hint == "base64" or not looks_like_json(value.encode()):
        return _json(value, True, "the data field"), True
    return _json(value, False, "the data field"), False


def decode(body: bytes, headers: Mapping[str, str], query: Query) -> Payload:
    hint = query_value(query, "compression")
    if hint == "lz64":
        raise Undecodable("compression=lz64 is not decoded; configure posthog-js with its "
                          "defaults (gzip) or disable_compression")
    if not body:
        data_q = query_value(query, "data")
        if data_q is None:
            return Payload([], query, None)
        data, b64 = _form_data(data_q, hint)
        return Payload(_items(data), query, ("query", b64, data))
    ctype = headers.get("content-type", "").lower()
    text = body.decode("latin-1")
    if ctype.startswith("application/x-www-form-urlencoded") or text.startswith("data="):
        pairs = parse_pairs(text)
        value = next((p.value for p in pairs if p.name == "data"), None)
        if value is None:
            raise Undecodable("the form body has no data field")
        data, b64 = _form_data(value, hint)
        return Payload(_items(data), query, ("form", b64, data, pairs))
    if hint == "base64" or not looks_like_json(body):
        data = _json(body, True, "the body")
        return Payload(_items(data), query, ("base64", True, data))
    data = _json(body, False, "the body")
    return Payload(_items(data), query, ("json", False, data))


def encode(payload: Payload) -> Encoded:
    if payload.state is None:
        return Encoded(b"", payload.query)
    kind, b64, data = payload.state[:3]
    raw = dumps(data)
    value = b64encode(raw) if b64 else raw.decode()
    if kind == "json":
        return Encoded(raw, payload.query)
    if kind == "base64":
        return Encoded(value.encode(), payload.query)
    if kind == "query":
        pairs = parse_pairs(payload.query)
        values = {p.name: p.value for p in pairs}
        values["data"] = value
        return Encoded(b"", render_pairs(pairs, values))
    pairs = payload.state[3]
    values = {p.name: p.value for p in pairs}
    values["data"] = value
    return Encoded(render_pairs(pairs, values).encode(), payload.query)


def answer(query: Query) -> Answer:
    return Answer(200, b'{"status": 1}', "application/json")


FORMAT = VendorFormat("posthog", decode, encode, answer, doc=__doc__ or "")
