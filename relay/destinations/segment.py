"""``segment``: events to Segment's HTTP tracking API, as Segment messages in batches.

Each copy becomes one Segment message at ingest (``prepare``, pure): its ``type`` from the
event's name (``page_view`` -> ``page``, ``identify`` -> ``identify``, ... anything else a
``track``), ``messageId`` = the ``event_id`` (Segment's dedup key, the same on every retry),
``userId``, ``anonymousId`` (the ``anonymous_id``, else the correlation id), ``timestamp``,
``properties`` or ``traits``, and the ``context`` the pipeline kept. It is the inverse of
what ``relay.ingest.segment_map`` reads, with the same tables (below). A batch is one
``POST {endpoint}/v1/batch`` with the write key as the basic user (``build_request``).

    prepare({"event": "purchase", "event_id": "e1", "time": "...", "user": {"id": "u1"},
             "properties": {"order_id": "O1"}}, settings, ctx)
    -> {"type": "track", "event": "Order Completed", "messageId": "e1", "userId": "u1",
        "timestamp": "...", "properties": {"order_id": "O1"}}
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import orjson

from relay.destinations import deletion as d
from relay.destinations.base import http_classify, http_detail, parse_endpoint, parse_name_map
from relay.rules.fields import BAD_VALUE, MISSING_KEY, At
from relay.types import (
    Call,
    Deletion,
    DestinationDef,
    Event,
    FieldMap,
    ForgetContext,
    Outcome,
    Person,
    StepContext,
    Verdict,
)
from relay.version import __version__

DEFAULT_ENDPOINT = "https://api.segment.io"  # EU workspaces: https://events.eu1.segmentapis.com
MAX_BATCH = 2500  # Segment's limit of messages in one batch request
MAX_REQUEST_BYTES = 500_000  # Segment's 500 KB (read as decimal: the stricter reading)
MAX_MESSAGE_BYTES = 32 * 1024  # Segment's 32 KB for one message, as its libraries check it
# {"batch":[...],"sentAt":"2026-11-28T12:00:00.000Z"} around the items, with room to spare.
WRAPPER_BYTES = 64
USER_AGENT = f"relay/{__version__}"

MESSAGE_TYPES: Final = ("track", "page", "screen", "identify", "group", "alias")
# A message's type -> the relay's event name (a track names its own event).
EVENTS_BY_TYPE: Final = {
    "page": "page_view",
    "screen": "screen_view",
    "identify": "identify",
    "group": "group",
    "alias": "alias",
}
TYPES_BY_EVENT: Final = {event: kind for kind, event in EVENTS_BY_TYPE.items()}
# Traits that say who the user is (Segment's reserved traits) <-> ``user.*``.
IDENTITY_TRAITS: Final = (
    ("email", "email"),
    ("phone", "phone"),
    ("firstName", "first_name"),
    ("lastName", "last_name"),
    ("birthday", "date_of_birth"),
)
# ``traits.address.*`` <-> ``user.address.*``.
ADDRESS_FIELDS: Final = (
    ("street", "street"),
    ("city", "city"),
    ("state", "region"),
    ("postalCode", "postal_code"),
    ("country", "country"),
)
# The relay's context fields -> Segment's (``consent`` is mapped on its own).
CONTEXT_FIELDS: Final = (
    ("ip", "ip"),
    ("user_agent", "userAgent"),
    ("locale", "locale"),
    ("timezone", "timezone"),
    ("group_id", "groupId"),
)
PAGE_FIELDS: Final = ("url", "referrer", "title", "path", "search")
# The relay's (and GA4's) e-commerce events -> Segment's e-commerce spec names.
EVENT_NAMES: Final = {
    "purchase": "Order Completed",
    "refund": "Order Refunded",
    "add_to_cart": "Product Added",
    "remove_from_cart": "Product Removed",
    "product_view": "Product Viewed",
    "view_item": "Product Viewed",
    "view_item_list": "Product List Viewed",
    "select_item": "Product Clicked",
    "view_cart": "Cart Viewed",
    "begin_checkout": "Checkout Started",
    "add_payment_info": "Payment Info Entered",
    "search": "Products Searched",
    "sign_up": "Signed Up",
    "signup": "Signed Up",
}


@dataclass(frozen=True, slots=True)
class SegmentSettings:
    write_key: str = field(repr=False)
    endpoint: str = DEFAULT_ENDPOINT
    event_names: Mapping[str, str] = field(default_factory=lambda: dict(EVENT_NAMES))
    properties: Mapping[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.endpoint + "/v1/batch"


def parse_settings(at: At) -> SegmentSettings | None:
    if not at.present:
        at.error(MISSING_KEY, "missing required key 'settings'",
                 'segment needs {write_key: "${SEGMENT_WRITE_KEY}"}')
        return None
    if at.mapping(allowed=("write_key", "endpoint", "event_names", "properties"),
                  required=("write_key",)) is None:
        return None
    key_at = at.get("write_key")
    key = key_at.string()
    if key is not None and (":" in key or not key.isprintable() or key != key.strip()):
        # The value is not echoed: it is a secret.
        key_at.error(BAD_VALUE, "a write key has no ':', control character or space at "
                     "either end", "copy it from the Segment source's settings")
        key = None
    endpoint = parse_endpoint(at.get("endpoint"), DEFAULT_ENDPOINT)
    names = {**EVENT_NAMES, **parse_name_map(at.get("event_names"))}
    properties = parse_name_map(at.get("properties"), "property")
    if key is None:
        return None
    return SegmentSettings(key, endpoint, names, properties)


def traits_of(user: Mapping[str, Any]) -> dict[str, Any]:
    """The identity traits of ``user`` (``user.first_name`` -> ``firstName``, ...)."""
    traits = {theirs: user[ours] for theirs, ours in IDENTITY_TRAITS
              if user.get(ours) is not None}
    address = user.get("address")
    if isinstance(address, dict):
        mapped = {theirs: address[ours] for theirs, ours in ADDRESS_FIELDS
                  if address.get(ours) is not None}
        if mapped:
            traits["address"] = mapped
    return traits


def _context(event: Event) -> dict[str, Any]:
    ctx = event.get("context")
    ctx = ctx if isinstance(ctx, dict) else {}
    out: dict[str, Any] = {}
    for ours, theirs in CONTEXT_FIELDS:
        if ctx.get(ours) is not None:
            out[theirs] = ctx[ours]
    page = ctx.get("page")
    if isinstance(page, dict):
        kept = {k: page[k] for k in PAGE_FIELDS if page.get(k) is not None}
        if kept:
            out["page"] = kept
    if isinstance(ctx.get("campaign"), dict) and ctx["campaign"]:
        out["campaign"] = ctx["campaign"]
    consent = event.get("consent")
    if isinstance(consent, dict) and consent:
        out["consent"] = {"categoryPreferences": {
            purpose: state == "granted" for purpose, state in consent.items()}}
    return out


def _drop(ctx: StepContext, why: str) -> None:
    ctx.notes.append(f"segment: {why}")


def prepare(event: Event, settings: SegmentSettings, ctx: StepContext) -> Event | None:
    """The event as one Segment message, or None (with the reason in ``ctx.notes``) when
    Segment would refuse it: no user id or anonymous id, a group without its id, an alias
    without the previous id, or a message over 32 KB."""
    name = event["event"]
    kind = TYPES_BY_EVENT.get(name, "track")
    user = event.get("user") if isinstance(event.get("user"), dict) else {}
    assert isinstance(user, dict)
    given = event.get("properties") if isinstance(event.get("properties"), dict) else {}
    assert isinstance(given, dict)
    props = {settings.properties.get(k, k): v for k, v in given.items()}
    msg: dict[str, Any] = {"type": kind, "messageId": event["event_id"],
                           "timestamp": event["time"]}
    if user.get("id") is not None:
        msg["userId"] = str(user["id"]) if isinstance(user["id"], int | float) else user["id"]
    anonymous = event.get("anonymous_id") or event.get("correlation_id")
    if anonymous:
        msg["anonymousId"] = anonymous
    if "userId" not in msg and "anonymousId" not in msg:
        _drop(ctx, "Segment needs a userId or an anonymousId, and the event has no user.id, "
              "anonymous_id or correlation_id")
        return None
    traits = traits_of(user)
    if kind == "track":
        msg["event"] = settings.event_names.get(name, name)
        msg["properties"] = props
    elif kind in ("page", "screen"):
        for key in ("name", "category"):
            if isinstance(given.get(key), str):
                msg[key] = given[key]
        msg["properties"] = props
    elif kind == "identify":
        msg["traits"] = {**props, **traits}
        traits = {}
    elif kind == "group":
        if given.get("group_id") is None:
            _drop(ctx, "a group event needs properties.group_id (Segment's groupId)")
            return None
        msg["groupId"] = given["group_id"]
        msg["traits"] = {k: v for k, v in props.items()
                         if k != settings.properties.get("group_id", "group_id")}
    else:  # alias
        if given.get("previous_id") is None or "userId" not in msg:
            _drop(ctx, "an alias event needs user.id and properties.previous_id (Segment's "
                  "userId and previousId)")
            return None
        msg["previousId"] = given["previous_id"]
    context = _context(event)
    if traits:
        context["traits"] = traits
    if context:
        msg["context"] = context
    size = len(orjson.dumps(msg))
    if size > MAX_MESSAGE_BYTES:
        _drop(ctx, f"the message is {size} bytes, over Segment's limit of {MAX_MESSAGE_BYTES}")
        return None
    return msg


def fields(settings: SegmentSettings) -> list[FieldMap]:
    """Every field ``prepare`` can send (``*``: any key below)."""
    out = [
        FieldMap("event", "type"),
        FieldMap("event", "event"),
        FieldMap("event_id", "messageId"),
        FieldMap("time", "timestamp"),
        FieldMap("user.id", "userId"),
        FieldMap("anonymous_id", "anonymousId"),
        FieldMap("correlation_id", "anonymousId"),
        FieldMap("properties.*", "properties.*"),
        FieldMap("properties.*", "traits.*"),  # identify and group
        FieldMap("properties.name", "name"),
        FieldMap("properties.category", "category"),
        FieldMap("properties.group_id", "groupId"),
        FieldMap("properties.previous_id", "previousId"),
        FieldMap("context.page.*", "context.page.*"),
        FieldMap("context.campaign.*", "context.campaign.*"),
        FieldMap("consent.*", "context.consent.categoryPreferences.*"),
    ]
    out += [FieldMap(f"properties.{ours}", f"{where}.{theirs}")
            for ours, theirs in sorted(settings.properties.items())
            for where in ("properties", "traits")]
    out += [FieldMap(f"context.{ours}", f"context.{theirs}") for ours, theirs in CONTEXT_FIELDS]
    for where in ("traits", "context.traits"):
        out += [FieldMap(f"user.{ours}", f"{where}.{theirs}") for theirs, ours in IDENTITY_TRAITS]
        out += [FieldMap(f"user.address.{ours}", f"{where}.address.{theirs}")
                for theirs, ours in ADDRESS_FIELDS]
    return out


def _iso(now: float) -> str:
    seconds, millis = divmod(round(now * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def build_request(items: Sequence[Event], settings: SegmentSettings,
                  now: float | None = None) -> httpx.Request:
    """``POST {endpoint}/v1/batch`` with ``{"batch": [...], "sentAt": ...}`` and the write key
    as the basic user. ``sentAt`` is when the request is built (every attempt): Segment takes
    ``receivedAt - (sentAt - timestamp)`` as the time, so a retry hours later keeps each
    message's own time."""
    body = orjson.dumps({"batch": list(items), "sentAt": _iso(time.time() if now is None
                                                               else now)})
    token = base64.b64encode(f"{settings.write_key}:".encode()).decode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               "Authorization": f"Basic {token}"}
    return httpx.Request("POST", settings.url, content=body, headers=headers)


def classify(response: httpx.Response) -> Verdict:
    """Segment answers 200 for nearly everything (it reports bad messages in its debugger).
    400 (bad JSON, a message or request over its limits) and other 4xx are permanent, 401
    and 403 naming the setting to fix; 408, 429 (with ``Retry-After``) and 5xx are retried."""
    status = response.status_code
    if status in (401, 403):
        return Verdict("permanent", f"{http_detail(response)} (Segment refused the write key: "
                       "check settings.write_key)", status)
    if status == 400:
        return Verdict("permanent", f"{http_detail(response)} (Segment refuses bad JSON, a "
                       f"message over {MAX_MESSAGE_BYTES} bytes or a request over "
                       f"{MAX_REQUEST_BYTES})", status)
    return http_classify(response)


# -- relay forget -------------------------------------------------------------------------

PUBLIC_API = "https://api.segmentapis.com"  # EU workspaces: https://eu1.api.segmentapis.com
REGULATIONS = ("SUPPRESS_WITH_DELETE", "DELETE_ONLY", "SUPPRESS_WITH_DELETE_INTERNAL",
               "DELETE_INTERNAL")
MANUAL = ("in Segment, Settings > End User Privacy: add a deletion request (Suppress and"
          " Delete) for the person's userId")


@dataclass(frozen=True, slots=True)
class SegmentDeletion:
    """``deletion:``: a Public API token (a workspace token with the deletion permission)."""

    public_api_token: str = field(repr=False)
    endpoint: str = PUBLIC_API
    regulation: str = "SUPPRESS_WITH_DELETE"


def parse_deletion(at: At) -> SegmentDeletion | None:
    if at.mapping(allowed=("public_api_token", "endpoint", "regulation"),
                  required=("public_api_token",)) is None:
        return None
    token = at.get("public_api_token").string()
    endpoint = parse_endpoint(at.get("endpoint"), PUBLIC_API)
    regulation = at.get("regulation").choice(REGULATIONS, "SUPPRESS_WITH_DELETE")
    if token is None:
        return None
    return SegmentDeletion(token, endpoint, regulation or "SUPPRESS_WITH_DELETE")


def plan_deletion(person: Person, settings: SegmentSettings, deletion: SegmentDeletion | None,
                  ctx: ForgetContext) -> Outcome | Call:
    """A workspace regulation for the ``userId`` (``user.id``, as ``prepare`` sends it)::

        POST {endpoint}/regulations   Authorization: Bearer <Public API token>
        {"regulationType": "SUPPRESS_WITH_DELETE", "subjectType": "USER_ID",
         "subjectIds": ["u_42"]}
        -> 200 {"data": {"regulateId": "..."}}
    """
    uid = d.user_id(person)
    if uid is None:
        return d.not_keyed("Segment", person, "userId (user.id)")
    if deletion is None:
        return d.manual(MANUAL, "public_api_token")
    body = orjson.dumps({"regulationType": deletion.regulation, "subjectType": "USER_ID",
                         "subjectIds": [uid]})
    request = httpx.Request(
        "POST", deletion.endpoint + "/regulations", content=body,
        headers={"Authorization": f"Bearer {deletion.public_api_token}",
                 "Content-Type": "application/vnd.segment.v1+json",
                 "Accept": "application/vnd.segment.v1+json, application/json",
                 "User-Agent": USER_AGENT})
    return Call(request, _regulated)


def _regulated(response: httpx.Response) -> Outcome:
    if response.status_code != 200:
        return d.failed(response, "check deletion.public_api_token: a Public API token of"
                        " the workspace, allowed to create regulations")
    body = d.json_body(response)
    data = body.get("data") if isinstance(body, dict) else None
    regulate = data.get("regulateId") if isinstance(data, dict) else None
    if not isinstance(regulate, str):
        return Outcome("failed", "Segment's answer has no data.regulateId")
    return Outcome("requested", f"regulation {regulate}: Segment suppresses the userId and"
                   " deletes its data (and asks the destinations it supports to)")


DESTINATION = DestinationDef(
    parse_settings=parse_settings,
    max_batch=MAX_BATCH,
    build_request=build_request,
    classify=classify,
    prepare=prepare,
    fields=fields,
    max_bytes=MAX_REQUEST_BYTES - WRAPPER_BYTES,
    vendor="Segment",
    deletion=Deletion(parse_deletion, plan_deletion,
                      "a workspace regulation (SUPPRESS_WITH_DELETE) for the userId"),
    doc="Segment messages to POST {endpoint}/v1/batch, the write key as the basic user.",
)
