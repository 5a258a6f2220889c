"""``ga4``: Google Analytics 4, through the Measurement Protocol.

    destinations:
      ga4:
        type: ga4
        purpose: analytics
        settings: {measurement_id: G-PSW1MY7HB4, api_secret: "${GA4_API_SECRET}"}

``prepare`` maps a copy to one Measurement Protocol body holding its one event::

    {"client_id": "1503912290.1482712385", "user_id": "u_42",
     "consent": {"ad_user_data": "GRANTED", "ad_personalization": "DENIED"},
     "user_data": {"sha256_email_address": ["..."]},          # ad consent and user_id only
     "ip_override": "203.0.113.0",                             # when the pipeline kept it
     "events": [{"name": "purchase", "timestamp_micros": 1795867200000000,
                 "params": {"transaction_id": "O1", "value": 9.5, "currency": "EUR"}}]}

``build_request`` merges up to 25 items of one client (``group``: what a request shares)
into ``POST {endpoint}/mp/collect?measurement_id=...&api_secret=...`` (``/debug/mp/collect``
with ``debug: true``, whose ``validationMessages`` decide the verdict), under 130 kB. The
mapping of each field and its sources are in docs/destinations.md (``## ga4``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from relay.destinations import ga4_deletion, ga4_events, google_data
from relay.destinations.base import (
    DETAIL_BODY_CHARS,
    http_classify,
    http_detail,
    parse_endpoint,
    parse_name_map,
)
from relay.rules.fields import BAD_VALUE, At
from relay.types import OK, AdUse, DestinationDef, Event, FieldMap, StepContext, Verdict
from relay.version import __version__

DEFAULT_ENDPOINT = "https://www.google-analytics.com"  # EU: https://region1.google-analytics.com
COLLECT, DEBUG_COLLECT = "/mp/collect", "/debug/mp/collect"
DEFAULT_AD_CONSENT = "ads"
MAX_EVENTS = 25  # per request
MAX_BYTES = 130_000  # "the POST body must be smaller than 130 kB"
MAX_USER_ID = 256
BACKDATE_SECONDS = 72 * 3600  # GA4 takes events up to 72 hours old
FUTURE_NOTE_SECONDS = 60  # a clock further ahead than this is worth a note
USER_AGENT = f"relay/{__version__}"
SETTINGS = ("measurement_id", "api_secret", "endpoint", "debug", "event_names", "properties",
            "ad_consent")
_MEASUREMENT_ID = re.compile(r"G-[A-Z0-9]{4,}")
_DEVICE_CATEGORIES = frozenset({"desktop", "mobile", "tablet"})


@dataclass(frozen=True, slots=True)
class Ga4Settings:
    measurement_id: str
    api_secret: str = field(repr=False)
    endpoint: str = DEFAULT_ENDPOINT
    debug: bool = False
    event_names: Mapping[str, str] = field(default_factory=lambda: ga4_events.DEFAULT_EVENT_NAMES)
    properties: Mapping[str, str] = field(default_factory=lambda: ga4_events.DEFAULT_PROPERTIES)
    ad_consent: str = DEFAULT_AD_CONSENT
    # (settings key, purpose) the rules named explicitly: relay check verifies they exist
    purpose_settings: tuple[tuple[str, str], ...] = ()

    @property
    def url(self) -> str:
        path = DEBUG_COLLECT if self.debug else COLLECT
        query = urlencode({"measurement_id": self.measurement_id, "api_secret": self.api_secret})
        return f"{self.endpoint}{path}?{query}"


# -- settings ------------------------------------------------------------------------------


def _measurement_id(at: At) -> str | None:
    text = at.string()
    if text is None:
        return None
    if _MEASUREMENT_ID.fullmatch(text):
        return text
    upper = text.strip().upper()
    if upper.startswith("UA-"):
        hint = ("a Universal Analytics id: Universal Analytics takes no data any more; use "
                "the measurement id of a GA4 web stream (G-...)")
    elif upper.startswith(("AW-", "DC-", "GTM-")):
        hint = "a Google Ads, Floodlight or Tag Manager id; GA4 measurement ids start with G-"
    elif _MEASUREMENT_ID.fullmatch(upper):
        hint = f"in capitals: {upper}"
    else:
        hint = "like G-PSW1MY7HB4: Admin > Data streams > your web stream > Measurement ID"
    at.error(BAD_VALUE, f"'{text}' is not a GA4 measurement id (G- then letters and digits)",
             hint)
    return None


def _check_names(at: At, names: dict[str, str], *, event: bool) -> None:
    what = "event" if event else "parameter"
    for key, name in names.items():
        problem = ga4_events.name_problem(name, event=event)
        if problem is not None:
            at.get(key).error(BAD_VALUE, f"'{name}' is not a GA4 {what} name: it {problem}",
                              "at most 40 letters, digits and _, starting with a letter")


def parse_settings(at: At) -> Ga4Settings | None:
    if at.mapping(allowed=SETTINGS, required=("measurement_id", "api_secret")) is None:
        return None
    measurement_id = _measurement_id(at.get("measurement_id"))
    secret = at.get("api_secret").string()
    endpoint = parse_endpoint(at.get("endpoint"), DEFAULT_ENDPOINT)
    debug = at.get("debug").boolean(False)
    names = parse_name_map(at.get("event_names"))
    _check_names(at.get("event_names"), names, event=True)
    props = parse_name_map(at.get("properties"), "parameter")
    _check_names(at.get("properties"), props, event=False)
    ad = at.get("ad_consent").string()
    if measurement_id is None or secret is None:
        return None
    return Ga4Settings(
        measurement_id=measurement_id,
        api_secret=secret,
        endpoint=endpoint,
        debug=bool(debug),
        event_names={**ga4_events.DEFAULT_EVENT_NAMES, **names},
        properties={**ga4_events.DEFAULT_PROPERTIES, **props},
        ad_consent=ad or DEFAULT_AD_CONSENT,
        purpose_settings=(("ad_consent", ad),) if ad else (),
    )


# -- the mapping ---------------------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _micros(text: Any) -> int | None:
    """``2026-11-28T12:00:00.000Z`` -> Unix microseconds (the envelope's times are UTC)."""
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    delta = when - datetime(1970, 1, 1)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def timestamp(event: Event, ctx: StepContext) -> int | None:
    """The event's time in microseconds, measured against its ``received_at`` (the clock of
    a pure function): None (with a note) when it is more than 72 hours older; a time ahead
    of it is sent as ``received_at``."""
    received = _micros(event.get("received_at"))
    micros = _micros(event.get("time"))
    if micros is None:
        micros = received
    if micros is None:
        ctx.notes.append("no time: GA4 needs the event's timestamp")
        return None
    if received is None:
        return micros
    if micros > received:
        if micros - received > FUTURE_NOTE_SECONDS * 1_000_000:
            ctx.notes.append("time is after the event was received: sent as received_at")
        return received
    age = (received - micros) / 1_000_000
    if age > BACKDATE_SECONDS:
        ctx.notes.append(f"time is {age / 3600:.0f} hours before the event was received: "
                         "GA4 takes events up to 72 hours old")
        return None
    return micros


def _derived_client_id(kind: str, value: str) -> str:
    """A GA-shaped client id (two positive numbers joined by a period) that the same
    ``value`` always gives: ``1503912290.1482712385``. Not reversible."""
    digest = hashlib.sha256(f"relay.ga4.client_id.{kind}:{value}".encode()).digest()
    first = 1 + int.from_bytes(digest[:4], "big") % 2_147_483_647
    second = 1_000_000_000 + int.from_bytes(digest[4:8], "big") % 1_000_000_000
    return f"{first}.{second}"


def client_id(event: Event, ctx: StepContext) -> str:
    """``anonymous_id`` as it is (the site's own GA client id, a ``_ga`` cookie value, a
    Segment anonymousId); else one derived from the correlation id (one visit), the user id
    or, last, the event id (GA4 then counts a new user, noted)."""
    anonymous = event.get("anonymous_id")
    if isinstance(anonymous, str) and anonymous.strip():
        return anonymous.strip()
    user = event.get("user")
    uid = user.get("id") if isinstance(user, dict) else None
    for kind, value in (("correlation_id", event.get("correlation_id")), ("user_id", uid)):
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return _derived_client_id(kind, str(value))
    ctx.notes.append("client_id derived from the event id (no anonymous_id, correlation id "
                     "or user id): GA4 counts a new user")
    return _derived_client_id("event_id", str(event["event_id"]))


def _user_id(user: dict[str, Any], ctx: StepContext) -> str | None:
    value = user.get("id")
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value):
        return None
    if len(str(value)) > MAX_USER_ID:
        ctx.notes.append(f"user.id: longer than GA4's {MAX_USER_ID} characters, not sent")
        return None
    return str(value)


def _one(
    path: str, value: Any, hash_: Callable[[object], str | None], ctx: StepContext
) -> str | None:
    """A hashed identifier: as it is when already SHA-256 hex, else normalized and hashed."""
    if value is None:
        return None
    out = google_data.hashed(value) or hash_(value)
    if out is None:
        ctx.notes.append(f"{path}: not usable as Google user-provided data, not sent")
    return out


def user_data(user: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """GA4 ``user_data``: email, phone and name/street hashed the Google way (``google_data``),
    city, region, postal code and country in the clear (normalized)."""
    out: dict[str, Any] = {}
    email = _one("user.email", user.get("email"), google_data.email, ctx)
    if email:
        out["sha256_email_address"] = [email]
    phone = _one("user.phone", user.get("phone"), google_data.phone, ctx)
    if phone:
        out["sha256_phone_number"] = [phone]
    address: dict[str, Any] = {}
    given = _dict(user.get("address"))
    for path, value, key, fn in (
        ("user.first_name", user.get("first_name"), "sha256_first_name", google_data.name),
        ("user.last_name", user.get("last_name"), "sha256_last_name", google_data.name),
        ("user.address.street", given.get("street"), "sha256_street", google_data.street),
    ):
        hashed = _one(path, value, fn, ctx)
        if hashed:
            address[key] = hashed
    for key, plain in (("city", google_data.place), ("region", google_data.place),
                       ("postal_code", google_data.postal_code),
                       ("country", google_data.country)):
        value = given.get(key)
        if value is not None:
            normalized = plain(value)
            if normalized:
                address[key] = normalized
            else:
                ctx.notes.append(f"user.address.{key}: not usable by Google, not sent")
    if address:
        out["address"] = [address]
    return out


_USER_DATA_FIELDS = ("email", "phone", "first_name", "last_name", "address")


def _consent(event: Event, settings: Ga4Settings, ctx: StepContext) -> tuple[bool, str]:
    """(whether the user granted ad consent, why not): the purpose ``ad_consent`` names,
    and never with Global Privacy Control."""
    if _dict(event.get("context")).get("gpc") is True:
        return False, "Global Privacy Control"
    if settings.ad_consent not in ctx.granted:
        return False, f"no '{settings.ad_consent}' consent"
    return True, ""


def _device(context: dict[str, Any]) -> dict[str, str]:
    device = context.get("device")
    if not isinstance(device, dict):
        return {}
    out: dict[str, str] = {}
    if device.get("type") in _DEVICE_CATEGORIES:
        out["category"] = str(device["type"])
    for ours, theirs in (("os", "operating_system"), ("browser", "browser")):
        value = device.get(ours)
        if isinstance(value, str) and value and value != "Other":
            out[theirs] = value
    return out


def prepare(event: Event, settings: Ga4Settings, ctx: StepContext) -> Event | None:
    """One copy as a Measurement Protocol body with its one event, or None (with the reason
    in ``ctx.notes``) when GA4 cannot take it: a name GA4 would discard, an event older than
    72 hours, a refund without its order."""
    name = ga4_events.event_name(str(event["event"]), settings.event_names, ctx)
    micros = timestamp(event, ctx)
    if name is None or micros is None:
        return None
    params = ga4_events.params_of(event, name, settings.properties, ctx)
    if params is None:
        return None
    user, context = _dict(event.get("user")), _dict(event.get("context"))
    item: dict[str, Any] = {"client_id": client_id(event, ctx)}
    uid = _user_id(user, ctx)
    if uid is not None:
        item["user_id"] = uid
    granted, why = _consent(event, settings, ctx)
    state = "GRANTED" if granted else "DENIED"
    item["consent"] = {"ad_user_data": state, "ad_personalization": state}
    if any(user.get(key) is not None for key in _USER_DATA_FIELDS):
        if not granted:
            ctx.notes.append(f"user_data not sent: {why}")
        elif uid is None:
            ctx.notes.append("user_data not sent: Google takes it only with a user_id "
                             "(user.id)")
        else:
            data = user_data(user, ctx)
            if data:
                item["user_data"] = data
    ip = context.get("ip")
    if isinstance(ip, str) and ip:
        try:
            item["ip_override"] = str(ipaddress.ip_address(ip))
        except ValueError:
            ctx.notes.append("context.ip: not an IP address, not sent")
    if isinstance(context.get("user_agent"), str) and context["user_agent"]:
        item["user_agent"] = context["user_agent"]
    device = _device(context)
    if device:
        item["device"] = device
    country = google_data.country(context.get("country"))
    if country and "ip_override" not in item:
        item["user_location"] = {"country_id": country}
    item["events"] = [{"name": name, "params": params, "timestamp_micros": micros}]
    return item


def group(item: Event) -> str:
    """What the events of one request share: everything but ``events``."""
    head = {k: v for k, v in item.items() if k != "events"}
    return orjson.dumps(head, option=orjson.OPT_SORT_KEYS).decode()


def ad_use(settings: Ga4Settings) -> AdUse:
    """``user_data`` (the user-provided data Google matches for ads) is sent for advertising,
    under the purpose ``ad_consent`` names (default ``ads``); the rest is analytics."""
    return AdUse(("user_data",), settings.ad_consent,
                 "ad_consent" if settings.purpose_settings else None)


def build_request(items: Sequence[Event], settings: Ga4Settings) -> httpx.Request:
    """One Measurement Protocol request for ``items`` of one ``group``: their shared fields
    once, all their events, and the earliest event's time as the request's
    ``timestamp_micros`` (each event also carries its own)."""
    if not items:
        raise ValueError("no items")
    key = group(items[0])
    events: list[Any] = []
    for item in items:
        if group(item) != key:
            raise ValueError("the items are of more than one client")
        events.extend(item["events"])
    if len(events) > MAX_EVENTS:
        raise ValueError(f"{len(events)} events: GA4 takes at most {MAX_EVENTS} a request")
    body: dict[str, Any] = {k: v for k, v in items[0].items() if k != "events"}
    times = [e["timestamp_micros"] for e in events if isinstance(e.get("timestamp_micros"), int)]
    if times:
        body["timestamp_micros"] = min(times)
    if settings.debug:
        body["validation_behavior"] = "ENFORCE_RECOMMENDATIONS"
    body["events"] = events
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    return httpx.Request("POST", settings.url, content=orjson.dumps(body), headers=headers)


# -- answers -------------------------------------------------------------------------------

AUTH_HINT = (" (check settings.api_secret and settings.measurement_id; Google's /mp/collect "
             "itself never refuses a secret: this answer came from what settings.endpoint "
             "points at)")
NOT_FOUND_HINT = " (check settings.endpoint: a base URL such as https://www.google-analytics.com)"


def _debug(response: httpx.Response) -> bool:
    try:
        return response.request.url.path.endswith(DEBUG_COLLECT)
    except RuntimeError:  # a response built without its request
        return False


def _validation(response: httpx.Response) -> Verdict:
    """The validation server's answer: an empty ``validationMessages`` is ok; messages make
    the request permanent (nothing sent there is processed, so no retry can help)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    messages = body.get("validationMessages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return Verdict("permanent", "not a validation server's answer: "
                       + http_detail(response), response.status_code)
    if not messages:
        return OK
    parts = []
    for m in messages:
        if isinstance(m, dict):
            parts.append(f"{m.get('fieldPath', '?')}: {m.get('description', '')} "
                         f"({m.get('validationCode', '?')})")
        else:
            parts.append(str(m))
    detail = "GA4 validation: " + "; ".join(parts)
    return Verdict("permanent", detail[:DETAIL_BODY_CHARS], response.status_code)


def classify(response: httpx.Response) -> Verdict:
    """2xx is ok (``/mp/collect`` answers 2xx to everything it receives); from the validation
    server (``debug: true``) its ``validationMessages`` decide. 401 and 403 (from a gateway)
    and 404 are permanent and name the setting to check; the rest is ``http_classify``."""
    status = response.status_code
    if 200 <= status < 300:
        return _validation(response) if _debug(response) else OK
    verdict = http_classify(response)
    if status in (401, 403):
        return Verdict("permanent", verdict.detail + AUTH_HINT, status)
    if status == 404:
        return Verdict("permanent", verdict.detail + NOT_FOUND_HINT, status)
    return verdict


# -- what it sends ---------------------------------------------------------------------------


def fields(settings: Ga4Settings) -> list[FieldMap]:
    """Every field ``prepare`` can put in an item (and the request's ``timestamp_micros``)."""
    ad = f"consent.{settings.ad_consent}"
    ev, params = "events[]", "events[].params"
    address = "user_data.address[]"
    out = [
        FieldMap("anonymous_id", "client_id"),
        FieldMap("correlation_id", "client_id", hashed=True),
        FieldMap("user.id", "client_id", hashed=True),
        FieldMap("event_id", "client_id", hashed=True),
        FieldMap("user.id", "user_id"),
        FieldMap(ad, "consent.ad_user_data"), FieldMap("context.gpc", "consent.ad_user_data"),
        FieldMap(ad, "consent.ad_personalization"),
        FieldMap("context.gpc", "consent.ad_personalization"),
        FieldMap("user.email", "user_data.sha256_email_address[]", hashed=True),
        FieldMap("user.phone", "user_data.sha256_phone_number[]", hashed=True),
        FieldMap("user.first_name", f"{address}.sha256_first_name", hashed=True),
        FieldMap("user.last_name", f"{address}.sha256_last_name", hashed=True),
        FieldMap("user.address.street", f"{address}.sha256_street", hashed=True),
        FieldMap("user.address.city", f"{address}.city"),
        FieldMap("user.address.region", f"{address}.region"),
        FieldMap("user.address.postal_code", f"{address}.postal_code"),
        FieldMap("user.address.country", f"{address}.country"),
        FieldMap("context.ip", "ip_override"),
        FieldMap("context.user_agent", "user_agent"),
        FieldMap("context.device.type", "device.category"),
        FieldMap("context.device.os", "device.operating_system"),
        FieldMap("context.device.browser", "device.browser"),
        FieldMap("context.country", "user_location.country_id"),
        FieldMap("time", "timestamp_micros"),
        FieldMap("event", f"{ev}.name"),
        FieldMap("time", f"{ev}.timestamp_micros"),
        FieldMap("event_id", f"{params}.transaction_id"),
        FieldMap("properties.value", f"{params}.value"),
        FieldMap("properties.currency", f"{params}.currency"),
        FieldMap("properties.items[].*", f"{params}.items[].*"),
        FieldMap("properties.session_id", f"{params}.session_id"),
        FieldMap("correlation_id", f"{params}.session_id", hashed=True),
        FieldMap("properties.engagement_time_msec", f"{params}.engagement_time_msec"),
        FieldMap("context.page.url", f"{params}.page_location"),
        FieldMap("context.page.referrer", f"{params}.page_referrer"),
        FieldMap("context.page.title", f"{params}.page_title"),
        FieldMap("properties.*", f"{params}.*"),
    ]
    for ours, theirs in settings.properties.items():
        if theirs == "items":
            out.append(FieldMap(f"properties.{ours}[].*", f"{params}.items[].*"))
            out.extend(FieldMap(f"properties.{ours}[].{k}", f"{params}.items[].{v}")
                       for k, v in ga4_events.ITEM_FIELDS.items())
        else:
            out.append(FieldMap(f"properties.{ours}", f"{params}.{theirs}"))
    return out


DESTINATION = DestinationDef(
    parse_settings=parse_settings,
    max_batch=MAX_EVENTS,
    build_request=build_request,
    classify=classify,
    prepare=prepare,
    fields=fields,
    ads=ad_use,
    max_bytes=MAX_BYTES,
    group=group,
    vendor="Google Analytics 4 (Google LLC)",
    deletion=ga4_deletion.DELETION,
    doc="Google Analytics 4 Measurement Protocol: up to 25 events of one client a request.",
)
