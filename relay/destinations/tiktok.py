"""``tiktok``: TikTok's Events API 2.0 (v1.3) for a web pixel, deduplicated with the TikTok
pixel by ``event`` and ``event_id``.

    POST {endpoint}/open_api/v1.3/event/track/        Access-Token: <access_token>
    {"event_source": "web", "event_source_id": "<pixel_code>", "test_event_code"?: "...",
     "data": [<event>, ...]}

    >>> prepare({"event": "purchase", "event_id": "o1", "time": "2026-11-28T12:00:00.000Z",
    ...          "user": {"email": "Ann@Example.com", "phone": "+1 (650) 555-1212"},
    ...          "context": {"ip": "203.0.113.7", "click_ids": {"ttclid": "E.C.P.x"},
    ...                      "page": {"url": "https://s.example/thanks"}},
    ...          "properties": {"order_id": "O1", "value": 10, "currency": "USD"}}, settings, ctx)
    {"event": "CompletePayment", "event_time": 1795867200, "event_id": "o1",
     "user": {"email": ["<sha256 of ann@example.com>"], "phone": ["<sha256 of +16505551212>"],
              "ttclid": "E.C.P.x", "ip": "203.0.113.7"},
     "page": {"url": "https://s.example/thanks"},
     "properties": {"value": 10, "currency": "USD", "order_id": "O1"},
     "limited_data_use": false}

TikTok answers HTTP 200 for most errors, with a non-zero ``code`` in the body: ``classify``
reads it (the codes of TikTok's own business API SDK, ``NumericErrorCodes``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from relay.destinations import ads
from relay.destinations.base import (
    http_classify,
    http_detail,
    is_sha256_hex,
    parse_endpoint,
    parse_name_map,
    sha256_hex,
)
from relay.destinations.deletion import procedure_only
from relay.rules.fields import BAD_VALUE, At
from relay.types import AdUse, DestinationDef, Event, FieldMap, StepContext, Verdict
from relay.version import __version__

NAME = "tiktok"
DEFAULT_ENDPOINT = "https://business-api.tiktok.com"
PATH = "/open_api/v1.3/event/track/"
MAX_BATCH = 1000  # events in one request's ``data``
MAX_BYTES = 4 * 1024 * 1024  # our bound on one request's events (TikTok documents none)
E164_MAX = 15  # "+" and at most 14 digits
USER_AGENT = f"relay/{__version__}"
_PIXEL_CODE = re.compile(r"[A-Z0-9]{10,40}")

DEFAULT_EVENT_NAMES: dict[str, str] = {
    "page_view": "Pageview",
    "product_view": "ViewContent",
    "view_item": "ViewContent",
    "Product Viewed": "ViewContent",
    "add_to_cart": "AddToCart",
    "Product Added": "AddToCart",
    "add_to_wishlist": "AddToWishlist",
    "Product Added to Wishlist": "AddToWishlist",
    "begin_checkout": "InitiateCheckout",
    "Checkout Started": "InitiateCheckout",
    "add_payment_info": "AddPaymentInfo",
    "Payment Info Entered": "AddPaymentInfo",
    "purchase": "CompletePayment",
    "Order Completed": "CompletePayment",
    "place_order": "PlaceAnOrder",
    "Order Placed": "PlaceAnOrder",
    "sign_up": "CompleteRegistration",
    "signup": "CompleteRegistration",
    "Signed Up": "CompleteRegistration",
    "search": "Search",
    "Products Searched": "Search",
    "contact": "Contact",
    "subscribe": "Subscribe",
    "submit_form": "SubmitForm",
    "download": "Download",
    "click_button": "ClickButton",
}
# properties.<ours> -> properties.<theirs>; contents are built from the products.
DEFAULT_PROPERTIES: dict[str, str] = {
    "value": "value",
    "currency": "currency",
    "order_id": "order_id",
    "content_type": "content_type",
    "description": "description",
    "query": "query",
    "search_term": "query",
    "search_string": "search_string",
    "num_items": "num_items",
    "shop_id": "shop_id",
}


@dataclass(frozen=True, slots=True)
class TikTokSettings:
    pixel_code: str
    access_token: str = field(repr=False)
    endpoint: str = DEFAULT_ENDPOINT
    test_event_code: str | None = None
    event_names: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_EVENT_NAMES))
    properties: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PROPERTIES))

    @property
    def url(self) -> str:
        return self.endpoint + PATH


SETTINGS_KEYS = ("pixel_code", "access_token", "endpoint", "test_event_code", "event_names",
                 "properties")


def parse_settings(at: At) -> TikTokSettings | None:
    if at.mapping(allowed=SETTINGS_KEYS, required=("pixel_code", "access_token")) is None:
        return None
    code_at = at.get("pixel_code")
    pixel = code_at.string()
    if pixel is not None and not _PIXEL_CODE.fullmatch(pixel):
        code_at.error(BAD_VALUE, "a pixel code is 10 to 40 capital letters and digits",
                      "copy it from Events Manager > Web events, like CABC123DEF456GHI789J")
        pixel = None
    token_at = at.get("access_token")
    token = token_at.string()
    if token is not None and not (token.isascii() and token.isprintable()
                                  and token.strip() == token):
        # It travels as the Access-Token header: HTTP could not carry it. Not echoed.
        token_at.error(BAD_VALUE, "an access token is printable ASCII without spaces at "
                       "either end")
        token = None
    endpoint = parse_endpoint(at.get("endpoint"), DEFAULT_ENDPOINT)
    test_event_code = at.get("test_event_code").string()
    event_names = ads.merged(DEFAULT_EVENT_NAMES, parse_name_map(at.get("event_names")))
    properties = ads.merged(DEFAULT_PROPERTIES,
                            parse_name_map(at.get("properties"), "property"))
    if pixel is None or token is None:
        return None
    return TikTokSettings(pixel, token, endpoint, test_event_code, event_names, properties)


# -- normalization (TikTok's, as its Events API integrations apply it) --------------------


def hashed_email(value: Any) -> str | None:
    raw = ads.text(value)
    if raw is None:
        return None
    text = raw.strip().lower()
    if is_sha256_hex(text):
        return text
    return sha256_hex(text) if "@" in text else None


def hashed_phone(value: Any) -> str | None:
    """E.164 with its ``+``: ``+1 (650) 555-1212`` -> sha256(``+16505551212``)."""
    raw = ads.text(value)
    if raw is None:
        return None
    text = raw.strip()
    if is_sha256_hex(text.lower()):
        return text.lower()
    digits = re.sub(r"[^0-9]", "", text)
    if len(digits) < 7:
        return None
    return sha256_hex(("+" + digits)[:E164_MAX])


def hashed_external_id(value: Any) -> str | None:
    raw = ads.text(value)
    if raw is None:
        return None
    text = raw.strip().lower()
    return text if is_sha256_hex(text) else sha256_hex(text)


# -- the mapping --------------------------------------------------------------------------


def _user(event: Event, ctx: StepContext) -> dict[str, Any]:
    user = ads.section(event, "user")
    context = ads.section(event, "context")
    out: dict[str, Any] = {}
    for key, path, value, hash_ in (
        ("email", "user.email", user.get("email"), hashed_email),
        ("phone", "user.phone", user.get("phone"), hashed_phone),
        ("external_id", "user.id", user.get("id"), hashed_external_id),
    ):
        if value is None:
            continue
        digest = hash_(value)
        if digest is None:
            ctx.notes.append(f"{NAME}: {path} is not in a form TikTok takes; not sent")
        else:
            out[key] = [digest]
    for key, value in (
        ("ttclid", ads.section(event, "context", "click_ids").get("ttclid")),
        ("ttp", ads.section(event, "context", "cookies").get("_ttp")),
        ("ip", context.get("ip")),
        ("user_agent", context.get("user_agent")),
        ("locale", context.get("locale")),
    ):
        if isinstance(value, str) and value:
            out[key] = value
    return out


def _properties(event: Event, settings: TikTokSettings) -> dict[str, Any]:
    properties = ads.section(event, "properties")
    out = ads.mapped_properties(properties, settings.properties)
    found = ads.products(properties)
    if found and "contents" not in out:
        out["contents"] = [_content(p) for p in found]
    if found and "content_type" not in out:
        out["content_type"] = "product"
    return out


def _content(product: ads.Product) -> dict[str, Any]:
    content: dict[str, Any] = {"content_id": product.id}
    for key, value in (("quantity", product.quantity), ("price", product.price),
                       ("content_name", product.name), ("brand", product.brand),
                       ("content_category", product.category)):
        if value is not None:
            content[key] = value
    return content


def prepare(event: Event, settings: TikTokSettings, ctx: StepContext) -> Event | None:
    """One event in TikTok's format, or None (the reason in ``ctx.notes``)."""
    event_time = ads.unix_seconds(event.get("time"))
    if event_time is None:
        ctx.notes.append(f"{NAME}: the event has no valid time")
        return None
    item: dict[str, Any] = {
        "event": settings.event_names.get(event["event"], event["event"]),
        "event_time": event_time,
        "event_id": event["event_id"],
        "user": _user(event, ctx),
    }
    page_in = ads.section(event, "context", "page")
    page = {k: v for k in ("url", "referrer") if (v := ads.text(page_in.get(k))) is not None}
    if page:
        item["page"] = page
    properties = _properties(event, settings)
    if properties:
        item["properties"] = properties
    item["limited_data_use"] = ads.section(event, "context").get("gpc") is True
    return item


def fields(settings: TikTokSettings) -> list[FieldMap]:
    """Every field ``prepare`` can put in an event (ours -> TikTok's)."""
    return [
        FieldMap("event", "event"),
        FieldMap("time", "event_time"),
        FieldMap("event_id", "event_id"),
        FieldMap("user.email", "user.email[]", hashed=True),
        FieldMap("user.phone", "user.phone[]", hashed=True),
        FieldMap("user.id", "user.external_id[]", hashed=True),
        FieldMap("context.click_ids.ttclid", "user.ttclid"),
        FieldMap("context.cookies._ttp", "user.ttp"),
        FieldMap("context.ip", "user.ip"),
        FieldMap("context.user_agent", "user.user_agent"),
        FieldMap("context.locale", "user.locale"),
        FieldMap("context.page.url", "page.url"),
        FieldMap("context.page.referrer", "page.referrer"),
        *(FieldMap(f"properties.{ours}", f"properties.{theirs}")
          for ours, theirs in settings.properties.items()),
        *(FieldMap(src, f"properties.contents[].{theirs}")
          for leaf, theirs in (("id", "content_id"), ("quantity", "quantity"),
                               ("price", "price"), ("name", "content_name"),
                               ("brand", "brand"), ("category", "content_category"))
          for src in ads.product_sources(leaf)),
        *(FieldMap(src, "properties.content_type") for src in ads.product_sources("id")),
        FieldMap("context.gpc", "limited_data_use"),
    ]


def ad_use(settings: TikTokSettings) -> AdUse:
    """All of it: TikTok takes conversions to attribute and target ads, under the
    destination's own purpose."""
    return AdUse()


def build_request(items: Sequence[Event], settings: TikTokSettings) -> httpx.Request:
    body: dict[str, Any] = {"event_source": "web", "event_source_id": settings.pixel_code}
    if settings.test_event_code:
        body["test_event_code"] = settings.test_event_code
    body["data"] = list(items)
    return httpx.Request("POST", settings.url, content=orjson.dumps(body), headers={
        "Content-Type": "application/json", "User-Agent": USER_AGENT,
        "Access-Token": settings.access_token})


# -- answers (TikTok's NumericErrorCodes) -------------------------------------------------

OK_CODES = frozenset({0, 20001})  # 20001: partial success
AUTH_CODES = frozenset({40102, 40104, 40105, 40107, 40130})
PERMISSION_CODES = frozenset({40001, 40003})
RATE_LIMIT_CODES = frozenset({40100, 40132, 61000})
# System errors, timeouts and maintenance: TikTok's side, worth another attempt.
TRANSIENT_CODES = frozenset({50000, 50002, 60001, *range(51000, 54000)})


def classify(response: httpx.Response) -> Verdict:
    """TikTok's answer, from the body's ``code`` (HTTP 200 carries errors too): 0 ok (and
    20001, a partial success); an invalid, expired or missing token, or a token without
    access to the pixel, is permanent and names the setting to fix; rate limits and system
    errors retry; any other code is permanent with TikTok's message."""
    status = response.status_code
    body: Any = None
    with contextlib.suppress(ValueError):
        body = response.json()
    code = body.get("code") if isinstance(body, dict) else None
    if not isinstance(code, int) or isinstance(code, bool):
        if status == 401:
            return Verdict("permanent", f"{NAME}: access_token refused ({http_detail(response)})"
                           ": check settings.access_token", status)
        verdict = http_classify(response)
        if verdict.kind == "ok":  # a 2xx without TikTok's code: not TikTok answering
            return Verdict("retry", f"{NAME}: no code in the answer ({http_detail(response)})",
                           status)
        return verdict
    message = str(body.get("message") or "")[:200]
    what = f"code {code}: {message}"
    if code in OK_CODES and 200 <= status < 300:
        return Verdict("ok", what if code else "", status)
    if code in AUTH_CODES:
        return Verdict("permanent", f"{NAME}: access_token refused ({what}): check "
                       "settings.access_token", status)
    if code in PERMISSION_CODES:
        return Verdict("permanent", f"{NAME}: the access token may not send events for this "
                       f"pixel ({what}): check settings.access_token and settings.pixel_code",
                       status)
    if code in RATE_LIMIT_CODES or code in TRANSIENT_CODES or status >= 500 or status == 429:
        return Verdict("retry", f"{NAME}: {what}", status, ads.retry_after(response))
    return Verdict("permanent", f"{NAME}: {what}", status)


# TikTok documents no per-person deletion for Events API data; the person can clear it in
# the app (support.tiktok.com, "Control your off-TikTok data").
DELETION = procedure_only("TikTok", (
    "TikTok's Events API has no per-person deletion. The person can clear what advertisers"
    " shared in the TikTok app: Profile > Menu > Settings and privacy > Ads > Clear activity,"
    " and Disconnect advertisers (support.tiktok.com: Control your off-TikTok data); write"
    " down that the request was passed on"))


DESTINATION = DestinationDef(
    parse_settings=parse_settings,
    max_batch=MAX_BATCH,
    build_request=build_request,
    classify=classify,
    prepare=prepare,
    fields=fields,
    ads=ad_use,
    max_bytes=MAX_BYTES,
    vendor="TikTok (Events API)",
    deletion=DELETION,
    doc="TikTok Events API 2.0 web events for a pixel, hashed the way TikTok specifies.",
)
