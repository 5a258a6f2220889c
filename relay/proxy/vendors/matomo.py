"""Matomo: the tracking HTTP API, ``matomo.php``.

A hit is a parameter set: the query of a GET, or the form body of a POST (matomo.js sends
``application/x-www-form-urlencoded``; the query then may hold more). A bulk request POSTs
JSON ``{"requests": ["?idsite=1&url=...", ...], "token_auth": ...}``: each request is its
own parameter set. Parameters are written back as they came unless the hygiene changed them.

Meaning: ``url`` page URL, ``urlref`` referrer, ``action_name`` title, ``cip`` the IP
override, ``ua`` the user agent override, ``uadata`` its client hints (kept only when the
user agent is), ``uid`` user id, ``link`` and ``download`` URLs, ``_ref`` the attribution
referrer, ``_rcn``/``_rck`` the campaign name and keyword; the event and custom parameters
(``e_c``, ``e_a``, ``e_n``, ``search``, ``search_cat``, ``c_n``, ``c_p``, ``c_t``, ``c_i``,
``dimensionN``, ``_cvar``, ``cvar``) are the hit's properties. Visitor ids (``_id``,
``cid``) and the rest pass unchanged.

A hit the consent gate stops is answered 204, as ``matomo.php`` answers ``send_image=0``.
"""

from __future__ import annotations

import re
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
    Undecodable,
    VendorFormat,
    dumps,
    loads,
    looks_like_json,
    parse_pairs,
    render_pairs,
)

_CUSTOM = frozenset({"e_c", "e_a", "e_n", "search", "search_cat", "c_n", "c_p", "c_t", "c_i",
                     "_cvar", "cvar"})
_DIMENSION = re.compile(r"^dimension\d+$")


def _system(key: str) -> bool:
    return key not in _CUSTOM and not _DIMENSION.match(key)


HIT = Shape(
    fields=(
        Field("context.page.url", "url"),
        Field("context.page.referrer", "urlref"),
        Field("context.page.title", "action_name"),
        Field("context.ip", "cip"),
        Field("context.user_agent", "ua"),
        Field("user.id", "uid"),
        Field("context.campaign.name", "_rcn"),
        Field("context.campaign.term", "_rck"),
    ),
    properties="",
    system=_system,
    also=(
        Field("context.page.url", "link"),
        Field("context.page.url", "download"),
        Field("context.page.referrer", "_ref"),
    ),
    hints=("uadata",),
)


def _item(pairs: list[Pair]) -> dict[str, Any]:
    return {p.name: p.value for p in pairs}


def decode(body: bytes, headers: Mapping[str, str], query: Query) -> Payload:
    sets = [parse_pairs(query)]
    bulk = None
    if body and looks_like_json(body):
        bulk = loads(body, "the bulk body")
        requests = bulk.get("requests") if isinstance(bulk, dict) else None
        if not isinstance(requests, list) or not all(isinstance(r, str) for r in requests):
            raise Undecodable('the bulk body has no "requests" list of query strings')
        sets += [parse_pairs(r.split("?", 1)[-1]) for r in requests]
    elif body:
        sets.append(parse_pairs(body.decode("latin-1")))
    items = [(_item(pairs), HIT) for pairs in sets]
    return Payload(items, query, (sets, bulk, bool(body)))


def _values(item: dict[str, Any]) -> dict[str, str]:
    return {k: v if isinstance(v, str) else str(v) for k, v in item.items() if v is not None}


def encode(payload: Payload) -> Encoded:
    sets, bulk, has_body = payload.state
    rendered = [render_pairs(pairs, _values(item))
                for pairs, (item, _) in zip(sets, payload.items, strict=True)]
    if bulk is not None:
        out = dict(bulk)
        out["requests"] = ["?" + r for r in rendered[1:]]
        return Encoded(dumps(out), rendered[0])
    body = rendered[1] if has_body else ""
    return Encoded(body.encode("latin-1"), rendered[0])


def answer(query: Query) -> Answer:
    return Answer(204)


FORMAT = VendorFormat("matomo", decode, encode, answer, doc=__doc__ or "")
