"""Segment: what analytics.js (analytics-next) sends to ``api.segment.io/v1/{t,p,i,g,a,s}``
and, batching, ``/v1/b`` (``{"batch": [...], "sentAt": ...}``), and the HTTP Tracking API's
``/v1/track``, ``/v1/batch``, ...: JSON (``text/plain`` from the browser), one message or a
batch.

Meaning, in Segment's spec names: ``context.ip``, ``context.userAgent``, ``context.page``
(``url``, ``referrer``, ``search``, ``title``), ``context.campaign``, ``userId``, ``traits``
(identify) and ``context.traits``, ``properties`` (a page call's ``properties.url``,
``referrer`` and ``search`` are URLs too), ``context.userAgentData`` (client hints: brands,
mobile and platform are kept when the user agent is generalized, the high-entropy values
only when it is kept). ``anonymousId`` and ``messageId`` pass unchanged.

A hit the consent gate stops is answered ``200 {"success": true}``.
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
    dumps,
    loads,
)

_UAD = "context.userAgentData."
_HIGH_ENTROPY = ("architecture", "bitness", "fullVersionList", "model", "platformVersion",
                 "uaFullVersion", "wow64", "formFactors")
_LOW_ENTROPY = ("brands", "mobile", "platform")

MESSAGE = Shape(
    fields=(
        Field("context.ip", "context.ip"),
        Field("context.user_agent", "context.userAgent"),
        Field("context.page.url", "context.page.url"),
        Field("context.page.referrer", "context.page.referrer"),
        Field("context.page.search", "context.page.search"),
        Field("context.page.title", "context.page.title"),
        Field("context.campaign", "context.campaign"),
        Field("user.id", "userId"),
    ),
    properties="properties",
    user="traits",
    also=(
        Field("context.page.url", "properties.url"),
        Field("context.page.referrer", "properties.referrer"),
        Field("context.page.search", "properties.search"),
        Field("user", "context.traits"),
    ),
    hints=tuple(_UAD + k for k in (*_LOW_ENTROPY, *_HIGH_ENTROPY)),
    coarse_hints=tuple(_UAD + k for k in _LOW_ENTROPY),
)


def decode(body: bytes, headers: Mapping[str, str], query: Query) -> Payload:
    if not body:
        return Payload([], query, None)
    data = loads(body, "the body")
    if isinstance(data, dict) and isinstance(data.get("batch"), list):
        messages = data["batch"]
    elif isinstance(data, dict):
        messages = [data]
    else:
        raise Undecodable("the body is not a message or {\"batch\": [...]}")
    if not all(isinstance(m, dict) for m in messages):
        raise Undecodable("the batch holds something that is not a message")
    return Payload([(m, MESSAGE) for m in messages], query, data)


def encode(payload: Payload) -> Encoded:
    data: Any = payload.state
    return Encoded(b"" if data is None else dumps(data), payload.query)


def answer(query: Query) -> Answer:
    return Answer(200, b'{"success": true}', "application/json")


FORMAT = VendorFormat("segment", decode, encode, answer, doc=__doc__ or "")
