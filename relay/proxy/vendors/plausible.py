"""Plausible: the event the tracker script POSTs to ``/api/event``.

One JSON object (``Content-Type: text/plain`` from the script, ``application/json`` from the
Events API) with the script's short keys or the API's long ones: ``n``/``name``, ``u``/``url``
(the page URL), ``d``/``domain``, ``r``/``referrer``, ``p``/``props`` (custom properties: an
object, or a JSON string from older scripts), ``revenue``, ``h`` (hash mode), ``i``
(interactive). Plausible reads the visitor's address and user agent from the request
headers only (its daily visitor hash), never from the body: the route's ``forward_ip`` and
``user_agent`` decide what it gets.

A hit the consent gate stops is answered ``202 ok``, as ``/api/event`` answers.
"""

from __future__ import annotations

import json
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
    dumps,
    loads,
)


def _shape(props: str) -> Shape:
    return Shape(
        fields=(
            Field("context.page.url", "u"),
            Field("context.page.referrer", "r"),
        ),
        properties=props,
        also=(
            Field("context.page.url", "url"),
            Field("context.page.referrer", "referrer"),
        ),
    )


SHORT = _shape("p")
LONG = _shape("props")


def decode(body: bytes, headers: Mapping[str, str], query: Query) -> Payload:
    if not body:
        return Payload([], query, None)
    data = loads(body, "the body")
    if not isinstance(data, dict):
        raise Undecodable("the body is not a JSON object (Plausible takes one event)")
    key = "props" if "props" in data else "p"
    as_string = isinstance(data.get(key), str)
    if as_string:
        props = loads(data[key], f"the {key} field")
        if not isinstance(props, dict):
            raise Undecodable(f"the {key} field is not a JSON object")
        data[key] = props
    return Payload([(data, LONG if key == "props" else SHORT)], query, (data, key, as_string))


def encode(payload: Payload) -> Encoded:
    if payload.state is None:
        return Encoded(b"", payload.query)
    data, key, as_string = payload.state
    out: dict[str, Any] = dict(data)
    if as_string and isinstance(out.get(key), dict):
        out[key] = json.dumps(out[key], ensure_ascii=False, separators=(",", ":"))
    return Encoded(dumps(out), payload.query)


def answer(query: Query) -> Answer:
    return Answer(202, b"ok", "text/plain; charset=utf-8")


FORMAT = VendorFormat("plausible", decode, encode, answer, doc=__doc__ or "")
