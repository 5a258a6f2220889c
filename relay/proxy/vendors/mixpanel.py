"""Mixpanel: what mixpanel-browser (2.83) sends to ``{api_host}/track/``, ``/engage/`` and
``/groups/``.

``MixpanelLib.prototype._send_request`` POSTs ``application/x-www-form-urlencoded`` with the
body ``data=<encodeURIComponent(payload)>`` and the query ``verbose=1&ip=1&_=<ms>`` (batches,
the default) or ``ip=1&_=<ms>``; without XHR it GETs with ``data`` in the query. The payload
is base64 of the JSON for an ``api_host`` outside ``*.mixpanel.com`` (a first-party proxy,
``api_payload_format`` defaults to base64 there) and the JSON itself otherwise: both are
read, and written back the way they came. The JSON is one event or update, or a list.

``ip=1`` asks Mixpanel to geolocate the request's address; behind a proxy that is the
relay's, so a route with ``forward_ip: strip`` sends ``ip=0`` ("If present and equal to 0,
Mixpanel will not perform geolocation parsing using the IP address of the request", the
ingestion API's ``ip`` parameter). With ``truncate`` or ``keep``, ``ip`` stays as the library
sent it and Mixpanel reads ``X-Forwarded-For``, as Mixpanel's own proxy configuration sends.

A hit the consent gate stops is answered as Mixpanel answers success: ``{"status": 1,
"error": null}`` with ``verbose=1`` (what the batch sender parses), ``1`` without.
"""

from __future__ import annotations

import re
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
    replace_param,
)

# A JSONP callback the answer may call: a dotted name with [digits] (``mixpanel._jsc[42]``).
_CALLBACK = re.compile(r"^[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*|\[\d+\])*$")
_SYSTEM = frozenset({"token", "time", "distinct_id", "$insert_id"})
_GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00"
        b"\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")


def _system(key: str) -> bool:
    return (key.startswith(("$", "mp_", "utm_", "initial_utm_", "current_"))
            or key in _SYSTEM)


EVENT = Shape(
    fields=(
        Field("context.ip", "properties.ip"),
        Field("context.page.url", "properties.$current_url"),
        Field("context.page.referrer", "properties.$referrer"),
        Field("context.page.search", "properties.current_url_search"),
        Field("context.page.title", "properties.current_page_title"),
        Field("user.id", "properties.distinct_id"),
        Field("user.email", "properties.$email"),
        Field("user.phone", "properties.$phone"),
    ),
    properties="properties",
    system=_system,
    also=(
        Field("user.id", "properties.$user_id"),
        Field("context.page.referrer", "properties.$initial_referrer"),
    ),
    click_ids=("properties",),
)
# People and group updates: {"$token", "$distinct_id", "$set": {...}, "$set_once": ...}.
PROFILE = Shape(
    fields=(
        Field("user.id", "$distinct_id"),
        Field("context.ip", "$ip"),
        Field("user.email", "$set.$email"),
        Field("user.phone", "$set.$phone"),
        Field("user.first_name", "$set.$first_name"),
        Field("user.last_name", "$set.$last_name"),
    ),
    user="$set",
    system=_system,
    also=(
        Field("user.id", "$user_id"),
        Field("user.email", "$set_once.$email"),
        Field("user.phone", "$set_once.$phone"),
        Field("context.page.referrer", "$set.$initial_referrer"),
        Field("context.page.referrer", "$set_once.$initial_referrer"),
        Field("user", "$set_once"),
        Field("user", "$union"),
        Field("user", "$append"),
    ),
    click_ids=("$set", "$set_once"),
    click_prefixes=("", "initial_"),
)


def _items(data: Any) -> list[tuple[dict[str, Any], Shape]]:
    events = data if isinstance(data, list) else [data]
    if not all(isinstance(e, dict) for e in events):
        raise Undecodable("the data is not an event, an update, or a list of them")
    return [(e, EVENT if "event" in e else PROFILE) for e in events]


def _data(value: str) -> tuple[Any, bool]:
    if looks_like_json(value.encode()):
        return loads(value, "the data field"), False
    return loads(b64decode(value, "the data field"), "the data field"), True


def decode(body: bytes, headers: Mapping[str, str], query: Query) -> Payload:
    if not body:
        value = query_value(query, "data")
        if value is None:
            return Payload([], query, None)
        data, b64 = _data(value)
        return Payload(_items(data), query, ("query", b64, data))
    if looks_like_json(body):  # the HTTP API's application/json
        data = loads(body, "the body")
        return Payload(_items(data), query, ("json", False, data))
    pairs = parse_pairs(body.decode("latin-1"))
    value = next((p.value for p in pairs if p.name == "data"), None)
    if value is None:
        raise Undecodable("the form body has no data field (mixpanel-browser sends "
                          "data=<base64 or JSON>)")
    data, b64 = _data(value)
    return Payload(_items(data), query, ("form", b64, data, pairs))


def encode(payload: Payload) -> Encoded:
    if payload.state is None:
        return Encoded(b"", payload.query)
    kind, b64, data = payload.state[:3]
    raw = dumps(data)
    if kind == "json":
        return Encoded(raw, payload.query)
    value = b64encode(raw) if b64 else raw.decode()
    if kind == "query":
        pairs = parse_pairs(payload.query)
        return Encoded(b"", render_pairs(pairs, {**{p.name: p.value for p in pairs},
                                                "data": value}))
    pairs = payload.state[3]
    body = render_pairs(pairs, {**{p.name: p.value for p in pairs}, "data": value})
    return Encoded(body.encode(), payload.query)


def route_query(query: Query, forward_ip: str) -> Query:
    """``ip=0`` when the route strips the address: Mixpanel must not geolocate the relay."""
    if forward_ip != "strip":
        return query
    if query_value(query, "ip") is None:
        return f"{query}&ip=0" if query else "ip=0"
    return replace_param(query, "ip", "0")


def answer(query: Query) -> Answer:
    verbose = query_value(query, "verbose") == "1"
    if query_value(query, "img") == "1":
        return Answer(200, _GIF, "image/gif")
    result = '{"status": 1, "error": null}' if verbose else "1"
    callback = query_value(query, "callback")
    if callback and _CALLBACK.match(callback):
        return Answer(200, f"{callback}({result})".encode(), "text/javascript")
    if verbose:
        return Answer(200, result.encode(), "application/json")
    return Answer(200, result.encode(), "text/plain")


FORMAT = VendorFormat("mixpanel", decode, encode, answer, route_query, doc=__doc__ or "")
