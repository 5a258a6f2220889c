"""Google Analytics 4: the ``/g/collect`` hit of gtag.js.

The request's query is the hit (``v=2&tid=G-...&cid=...&en=page_view&dl=...``); a batch adds
its events as the body, one event per line, each line a query string of the event's own
parameters (the query then holds what they share). Every parameter set (the query and each
line) is read the same way. Parameters are written back as they came unless the hygiene
changed them; changed ones are encoded as ``encodeURIComponent`` does, as gtag.js does.

Meaning: ``dl`` page URL, ``dr`` referrer, ``dt`` title, ``uid`` user id, ``_uip`` the IP
override (sGTM), ``cs``/``cm``/``cn``/``ct``/``cc`` the campaign, ``ep.*`` and ``epn.*`` the
event's parameters, ``up.*`` and ``upn.*`` user properties, ``uaa``, ``uab``, ``uafvl``,
``uam``, ``uamb``, ``uap``, ``uapv``, ``uaw`` the user agent's client hints (kept when the user
agent is, only ``uamb`` and ``uap``, mobile and platform, when it is generalized). The client
id ``cid`` and session parameters are GA's own pseudonymous ids and pass unchanged.

A hit the consent gate stops is answered 204, as ``/g/collect`` answers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from relay.proxy.vendors.base import (
    Answer,
    Encoded,
    Field,
    Pair,
    Payload,
    Query,
    Shape,
    VendorFormat,
    parse_pairs,
    render_pairs,
)

_GROUPS = ("ep", "epn", "up", "upn")  # ep.<name>=... is {"ep": {"<name>": ...}} here
HINTS = ("uaa", "uab", "uafvl", "uam", "uamb", "uap", "uapv", "uaw")

HIT = Shape(
    fields=(
        Field("context.page.url", "dl"),
        Field("context.page.referrer", "dr"),
        Field("context.page.title", "dt"),
        Field("context.ip", "_uip"),
        Field("user.id", "uid"),
        Field("context.campaign.source", "cs"),
        Field("context.campaign.medium", "cm"),
        Field("context.campaign.name", "cn"),
        Field("context.campaign.term", "ct"),
        Field("context.campaign.content", "cc"),
    ),
    properties="ep",
    user="up",
    also=(Field("properties", "epn"), Field("user", "upn")),
    hints=HINTS,
    coarse_hints=("uamb", "uap"),
)


def _structure(pairs: list[Pair]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        group, dot, name = pair.name.partition(".")
        if dot and name and group in _GROUPS:
            out.setdefault(group, {})[name] = pair.value
        else:
            out[pair.name] = pair.value
    return out


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _flatten(item: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in item.items():
        if key in _GROUPS and isinstance(value, dict):
            for name, inner in value.items():
                if inner is not None:
                    out[f"{key}.{name}"] = _text(inner)
        elif value is not None:
            out[key] = _text(value)
    return out


def decode(body: bytes, headers: Mapping[str, str], query: Query) -> Payload:
    sets = [parse_pairs(query)]
    text = body.decode("latin-1")
    newline = "\r\n" if "\r\n" in text else "\n"
    sets += [parse_pairs(line) for line in text.split(newline) if line.strip()]
    items = [(_structure(pairs), HIT) for pairs in sets]
    return Payload(items, query, (sets, newline, text.endswith(newline)))


def encode(payload: Payload) -> Encoded:
    sets, newline, trailing = payload.state
    rendered = [render_pairs(pairs, _flatten(item))
                for pairs, (item, _) in zip(sets, payload.items, strict=True)]
    body = newline.join(rendered[1:])
    if body and trailing:
        body += newline
    return Encoded(body.encode("latin-1"), rendered[0])


def answer(query: Query) -> Answer:
    return Answer(204)


FORMAT = VendorFormat("ga4", decode, encode, answer, doc=__doc__ or "")
