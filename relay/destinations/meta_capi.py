"""``meta_capi``: Meta's Conversions API (server events for a pixel, deduplicated with the
browser pixel by ``event_id`` and ``event_name``).

    POST {endpoint}/{api_version}/{pixel_id}/events
    {"data": [<server event>, ...], "access_token": "...", "test_event_code"?: "..."}

The access token travels in the JSON body (Meta's API takes it as the ``access_token``
parameter of the body or of the query; the body keeps it out of URLs, which proxies log),
never in the spool, a log line or a verdict. ``prepare`` maps one event to a server event:

    >>> prepare({"event": "purchase", "event_id": "o1", "time": "2026-11-28T12:00:00.000Z",
    ...          "received_at": "2026-11-28T12:00:01.000Z",
    ...          "user": {"email": " Ann@Example.com"},
    ...          "context": {"user_agent": "Mozilla/5.0 ...", "page": {"url": "https://s.example/"},
    ...                      "click_ids": {"fbclid": "AbC"}},
    ...          "properties": {"value": 10, "currency": "EUR"}}, settings, ctx)
    {"event_name": "Purchase", "event_time": 1795867200, "event_id": "o1",
     "action_source": "website", "event_source_url": "https://s.example/",
     "user_data": {"em": ["<sha256 of ann@example.com>"], "client_user_agent": "Mozilla/5.0 ...",
                   "fbc": "fb.1.1795867200000.AbC"},
     "custom_data": {"value": 10, "currency": "eur"}}

Normalization and hashing follow Meta's customer information parameters, as Meta's own
Python SDK (``facebook_business``) applies them; the tests use that SDK as the oracle.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
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

NAME = "meta_capi"
DEFAULT_ENDPOINT = "https://graph.facebook.com"
# The Graph API version of Meta's own SDK (facebook-business 26.0.3, November 2026).
DEFAULT_API_VERSION = "v26.0"
MAX_BATCH = 1000  # events in one request's ``data``
MAX_BYTES = 4 * 1024 * 1024  # our bound on one request's events (Meta documents none)
MAX_AGE_DAYS = 7  # Meta refuses events older than this (physical_store: 62)
PHYSICAL_STORE_MAX_AGE_DAYS = 62
ACTION_SOURCES = ("website", "app", "email", "phone_call", "chat", "physical_store",
                  "system_generated", "business_messaging", "other")
USER_AGENT = f"relay/{__version__}"
_API_VERSION = re.compile(r"v[0-9]{2}\.[0-9]")

DEFAULT_EVENT_NAMES: dict[str, str] = {
    "page_view": "PageView",
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
    "purchase": "Purchase",
    "Order Completed": "Purchase",
    "sign_up": "CompleteRegistration",
    "signup": "CompleteRegistration",
    "Signed Up": "CompleteRegistration",
    "lead": "Lead",
    "generate_lead": "Lead",
    "search": "Search",
    "Products Searched": "Search",
    "contact": "Contact",
    "subscribe": "Subscribe",
    "start_trial": "StartTrial",
}
# properties.<ours> -> custom_data.<theirs>; contents and content_ids are built from the
# products (``ads.products``).
DEFAULT_PROPERTIES: dict[str, str] = {
    "value": "value",
    "currency": "currency",
    "order_id": "order_id",
    "content_name": "content_name",
    "content_category": "content_category",
    "content_type": "content_type",
    "num_items": "num_items",
    "search_string": "search_string",
    "search_term": "search_string",
    "query": "search_string",
    "predicted_ltv": "predicted_ltv",
    "status": "status",
}


@dataclass(frozen=True, slots=True)
class MetaSettings:
    pixel_id: str
    access_token: str = field(repr=False)
    api_version: str = DEFAULT_API_VERSION
    endpoint: str = DEFAULT_ENDPOINT
    test_event_code: str | None = None
    action_source: str = "website"
    event_names: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_EVENT_NAMES))
    properties: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PROPERTIES))

    @property
    def url(self) -> str:
        return f"{self.endpoint}/{self.api_version}/{self.pixel_id}/events"


SETTINGS_KEYS = ("pixel_id", "access_token", "api_version", "endpoint", "test_event_code",
                 "action_source", "event_names", "properties")


def parse_settings(at: At) -> MetaSettings | None:
    if at.mapping(allowed=SETTINGS_KEYS, required=("pixel_id", "access_token")) is None:
        return None
    pixel_at = at.get("pixel_id")
    pixel = pixel_at.string()
    if pixel is not None and not (pixel.isascii() and pixel.isdigit()):
        pixel_at.error(BAD_VALUE, "a pixel id is digits only",
                       "copy it from Events Manager > Data sources, like 1234567890123456")
        pixel = None
    token = at.get("access_token").string()
    version_at = at.get("api_version")
    version = version_at.string(DEFAULT_API_VERSION) or DEFAULT_API_VERSION
    if not _API_VERSION.fullmatch(version):
        version_at.error(BAD_VALUE, f"'{version}' is not a Graph API version",
                         f"like {DEFAULT_API_VERSION}")
    endpoint = parse_endpoint(at.get("endpoint"), DEFAULT_ENDPOINT)
    test_event_code = at.get("test_event_code").string()
    source = at.get("action_source").choice(ACTION_SOURCES, "website") or "website"
    event_names = ads.merged(DEFAULT_EVENT_NAMES, parse_name_map(at.get("event_names")))
    properties = ads.merged(DEFAULT_PROPERTIES,
                            parse_name_map(at.get("properties"), "property"))
    if pixel is None or token is None or not _API_VERSION.fullmatch(version):
        return None
    return MetaSettings(pixel, token, version, endpoint, test_event_code, source,
                        event_names, properties)


# -- normalization (Meta's customer information parameters) -------------------------------

_EMAIL = re.compile(r".+@.+\..+")
_PHONE_SEPARATORS = re.compile(r"[\s\-()]")
_INTERNATIONAL = re.compile(r"\d{1,4}\(?\d{2,3}\)?\d{4,}")
_LOCATION_DROPPED = re.compile(r"[0-9.\s\-()]")
_NOT_LETTER = re.compile(r"[^a-z]")
_DATE = re.compile(r"([0-9]{4})-?([0-9]{2})-?([0-9]{2})")
GENDERS = {"f": "f", "female": "f", "m": "m", "male": "m"}


def _email(text: str) -> str | None:
    return text if _EMAIL.fullmatch(text) else None


def _phone(text: str) -> str | None:
    """Digits with the country code, no ``+`` and no leading zeros: ``+1 (650) 555-1212``
    -> ``16505551212``; ``0044 20 7946 0958`` -> ``442079460958``."""
    digits = re.sub(r"^\+?0{0,2}", "", _PHONE_SEPARATORS.sub("", text))
    digits = re.sub(r"[^0-9]", "", digits)
    if not digits or digits.startswith("0") or not _INTERNATIONAL.fullmatch(digits):
        return None
    return digits


def _name(text: str) -> str | None:
    """Lowercase, without punctuation (``O'Brien`` -> ``obrien``), UTF-8 letters kept."""
    kept = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P")).strip()
    return kept or None


def _location(text: str) -> str | None:
    """City and state: lowercase without digits, spaces, dots, dashes or brackets."""
    return _LOCATION_DROPPED.sub("", text) or None


def _zip(text: str) -> str | None:
    return re.sub(r"\s", "", text).split("-")[0] or None


def _country(text: str) -> str | None:
    letters = _NOT_LETTER.sub("", text)
    return letters if len(letters) == 2 else None


def _birth_date(text: str) -> str | None:
    """``1990-01-31`` or ``19900131`` -> ``19900131``."""
    m = _DATE.fullmatch(text)
    if not m or not ("01" <= m.group(2) <= "12" and "01" <= m.group(3) <= "31"):
        return None
    return "".join(m.groups())


def _gender(text: str) -> str | None:
    return GENDERS.get(text)


Normalizer = Callable[[str], "str | None"]
# user_data key, the event's field, its normalization (after trimming and lowercasing).
HASHED: tuple[tuple[str, str, Normalizer], ...] = (
    ("em", "user.email", _email),
    ("ph", "user.phone", _phone),
    ("fn", "user.first_name", _name),
    ("ln", "user.last_name", _name),
    ("db", "user.date_of_birth", _birth_date),
    ("ge", "user.gender", _gender),
    ("ct", "user.address.city", _location),
    ("st", "user.address.region", _location),
    ("zp", "user.address.postal_code", _zip),
    ("country", "user.address.country", _country),
)


def hashed(value: Any, normalize: Normalizer) -> str | None:
    """The SHA-256 hex Meta takes for ``value``: trimmed, lowercased, normalized, hashed; a
    value that already is SHA-256 hex passes as it is. None when it cannot be one."""
    raw = ads.text(value)
    if raw is None:
        return None
    text = raw.strip().lower()
    if is_sha256_hex(text):
        return text
    normal = normalize(text)
    return sha256_hex(normal) if normal else None


def external_id(value: Any) -> str | None:
    """``user.id`` hashed as it is (trimmed): ids may be case-sensitive."""
    raw = ads.text(value)
    if raw is None:
        return None
    text = raw.strip()
    return text.lower() if is_sha256_hex(text.lower()) else sha256_hex(text)


# -- the mapping --------------------------------------------------------------------------


def _user_data(event: Event, ctx: StepContext) -> dict[str, Any]:
    user = ads.section(event, "user")
    address = ads.section(event, "user", "address")
    context = ads.section(event, "context")
    cookies = ads.section(event, "context", "cookies")
    out: dict[str, Any] = {}
    for key, path, normalize in HASHED:
        leaf = path.rpartition(".")[2]
        value = (address if path.startswith("user.address.") else user).get(leaf)
        if value is None:
            continue
        digest = hashed(value, normalize)
        if digest is None:
            ctx.notes.append(f"{NAME}: {path} is not in a form Meta takes; not sent")
        else:
            out[key] = [digest]
    uid = external_id(user.get("id"))
    if uid is not None:
        out["external_id"] = [uid]
    for key, value in (("client_ip_address", context.get("ip")),
                       ("client_user_agent", context.get("user_agent")),
                       ("fbc", _fbc(event, cookies)),
                       ("fbp", ads.text(cookies.get("_fbp")))):
        if isinstance(value, str) and value:
            out[key] = value
    return out


def _fbc(event: Event, cookies: dict[str, Any]) -> str | None:
    """The ``_fbc`` cookie's value, else ``fb.1.<event time in ms>.<fbclid>`` (the fbclid as
    it came: it is case-sensitive)."""
    cookie = ads.text(cookies.get("_fbc"))
    if cookie is not None:
        return cookie
    fbclid = ads.text(ads.section(event, "context", "click_ids").get("fbclid"))
    created = ads.unix_ms(event.get("time"))
    if fbclid is None or created is None:
        return None
    return f"fb.1.{created}.{fbclid}"


def _custom_data(event: Event, settings: MetaSettings, ctx: StepContext) -> dict[str, Any]:
    properties = ads.section(event, "properties")
    out = ads.mapped_properties(properties, settings.properties)
    if "value" in out and ads.number(out["value"]) is None:
        del out["value"]
        ctx.notes.append(f"{NAME}: value is not a number; not sent")
    if "currency" in out:
        code = _NOT_LETTER.sub("", str(out["currency"]).lower())
        if len(code) == 3:
            out["currency"] = code
        else:
            del out["currency"]
            ctx.notes.append(f"{NAME}: currency is not an ISO 4217 code; not sent")
    found = ads.products(properties)
    if found and "contents" not in out:
        out["contents"] = [_content(p) for p in found]
    if found and "content_ids" not in out:
        out["content_ids"] = [p.id for p in found]
    if found and "content_type" not in out:
        out["content_type"] = "product"
    return out


def _content(product: ads.Product) -> dict[str, Any]:
    content: dict[str, Any] = {"id": product.id,
                               "quantity": 1 if product.quantity is None else product.quantity}
    for key, value in (("item_price", product.price), ("title", product.name),
                       ("brand", product.brand), ("category", product.category)):
        if value is not None:
            content[key] = value
    return content


def prepare(event: Event, settings: MetaSettings, ctx: StepContext) -> Event | None:
    """One event as a Meta server event, or None (with the reason in ``ctx.notes``) when
    Meta would refuse it: too old, or a website event without a user agent or page URL."""
    name = settings.event_names.get(event["event"], event["event"])
    event_time = ads.unix_seconds(event.get("time"))
    if event_time is None:
        ctx.notes.append(f"{NAME}: the event has no valid time")
        return None
    limit = (PHYSICAL_STORE_MAX_AGE_DAYS if settings.action_source == "physical_store"
             else MAX_AGE_DAYS)
    age = ads.age_seconds(event)
    if age is not None and age > limit * 86400:
        ctx.notes.append(f"{NAME}: the event is {age / 86400:.1f} days old; Meta takes "
                         f"{settings.action_source} events up to {limit} days old")
        return None
    page = ads.section(event, "context", "page")
    url, referrer = ads.text(page.get("url")), ads.text(page.get("referrer"))
    user_data = _user_data(event, ctx)
    if settings.action_source == "website":
        missing = [path for path, ok in (("context.user_agent", "client_user_agent" in user_data),
                                         ("context.page.url", url is not None)) if not ok]
        if missing:
            ctx.notes.append(
                f"{NAME}: Meta requires {' and '.join(missing)} for website events; "
                "keep the user agent in this destination's pipeline (user_agent: keep) and "
                "send the page URL, or set settings.action_source")
            return None
    if not user_data:
        ctx.notes.append(f"{NAME}: Meta requires at least one customer information parameter "
                         "(an identifier, the IP address or the user agent); none is left")
        return None
    custom_data = _custom_data(event, settings, ctx)
    if name == "Purchase" and not ("value" in custom_data and "currency" in custom_data):
        ctx.notes.append(f"{NAME}: Meta requires properties.value and properties.currency "
                         "for a Purchase")
        return None
    item: dict[str, Any] = {"event_name": name, "event_time": event_time,
                            "event_id": event["event_id"],
                            "action_source": settings.action_source}
    if url is not None:
        item["event_source_url"] = url
    if referrer is not None:
        item["referrer_url"] = referrer
    item["user_data"] = user_data
    if custom_data:
        item["custom_data"] = custom_data
    if ads.section(event, "context").get("gpc") is True:
        # Limited Data Use, with Meta geolocating the user (country and state 0).
        item["data_processing_options"] = ["LDU"]
        item["data_processing_options_country"] = 0
        item["data_processing_options_state"] = 0
    return item


def fields(settings: MetaSettings) -> list[FieldMap]:
    """Every field ``prepare`` can put in a server event (ours -> Meta's)."""
    out = [
        FieldMap("event", "event_name"),
        FieldMap("time", "event_time"),
        FieldMap("event_id", "event_id"),
        FieldMap("settings.action_source", "action_source"),
        FieldMap("context.page.url", "event_source_url"),
        FieldMap("context.page.referrer", "referrer_url"),
        *(FieldMap(path, f"user_data.{key}[]", hashed=True) for key, path, _ in HASHED),
        FieldMap("user.id", "user_data.external_id[]", hashed=True),
        FieldMap("context.ip", "user_data.client_ip_address"),
        FieldMap("context.user_agent", "user_data.client_user_agent"),
        FieldMap("context.cookies._fbc", "user_data.fbc"),
        FieldMap("context.click_ids.fbclid", "user_data.fbc"),
        FieldMap("context.cookies._fbp", "user_data.fbp"),
        *(FieldMap(f"properties.{ours}", f"custom_data.{theirs}")
          for ours, theirs in settings.properties.items()),
        *(FieldMap(src, f"custom_data.contents[].{theirs}")
          for leaf, theirs in (("id", "id"), ("quantity", "quantity"), ("price", "item_price"),
                               ("name", "title"), ("brand", "brand"),
                               ("category", "category"))
          for src in ads.product_sources(leaf)),
        *(FieldMap(src, "custom_data.content_ids[]") for src in ads.product_sources("id")),
        *(FieldMap(src, "custom_data.content_type") for src in ads.product_sources("id")),
        FieldMap("context.gpc", "data_processing_options[]"),
        FieldMap("context.gpc", "data_processing_options_country"),
        FieldMap("context.gpc", "data_processing_options_state"),
    ]
    return out


def ad_use(settings: MetaSettings) -> AdUse:
    """All of it: Meta takes conversions to attribute and target ads, under the
    destination's own purpose."""
    return AdUse()


def build_request(items: Sequence[Event], settings: MetaSettings) -> httpx.Request:
    body: dict[str, Any] = {"data": list(items)}
    if settings.test_event_code:
        body["test_event_code"] = settings.test_event_code
    body["access_token"] = settings.access_token
    return httpx.Request("POST", settings.url, content=orjson.dumps(body),
                         headers={"Content-Type": "application/json", "User-Agent": USER_AGENT})


# -- answers ------------------------------------------------------------------------------

AUTH_CODES = frozenset({102, 190, 463, 467})  # the token is invalid, expired or revoked
PERMISSION_CODES = frozenset({10, *range(200, 300)})
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, *range(80000, 80015)})
TRANSIENT_CODES = frozenset({1, 2})


def _error(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def classify(response: httpx.Response) -> Verdict:
    """Meta's answer: 2xx ok (``{"events_received": n, "messages": [], "fbtrace_id"}``);
    an ``error`` object decides the rest: an invalid token or missing permission is
    permanent and names the setting to fix, rate limits and transient errors retry (honouring
    ``Retry-After``), 5xx retry, any other error is permanent with Meta's message."""
    status = response.status_code
    if 200 <= status < 300:
        return http_classify(response)
    error = _error(response)
    code = error.get("code") if isinstance(error.get("code"), int) else None
    message = str(error.get("message") or "")[:200]
    what = f"code {code}: {message}" if code is not None else http_detail(response)
    if code in AUTH_CODES or (status == 401 and code is None):
        return Verdict("permanent", f"{NAME}: access_token refused ({what}): check "
                       "settings.access_token", status)
    if code in PERMISSION_CODES or (status == 403 and code is None):
        return Verdict("permanent", f"{NAME}: the access token may not send events for this "
                       f"pixel ({what}): check settings.access_token and settings.pixel_id",
                       status)
    verdict = http_classify(response)
    if code in RATE_LIMIT_CODES or code in TRANSIENT_CODES or error.get("is_transient") is True:
        return Verdict("retry", verdict.detail, status, ads.retry_after(response))
    return verdict


# Meta documents no per-person deletion for what the Conversions API received; the person
# can disconnect it from their account (facebook.com/help/287199741901674).
DELETION = procedure_only("Meta", (
    "Meta's Conversions API has no per-person deletion: what it received stays under Meta's"
    " Business Tools Terms. The person can remove it from their own account: Accounts Center"
    " > Your information and permissions > Your activity off Meta technologies > Clear"
    " previous activity, and Disconnect future activity (facebook.com/help/287199741901674);"
    " write down that the request was passed on"))


DESTINATION = DestinationDef(
    parse_settings=parse_settings,
    max_batch=MAX_BATCH,
    build_request=build_request,
    classify=classify,
    prepare=prepare,
    fields=fields,
    ads=ad_use,
    max_bytes=MAX_BYTES,
    vendor="Meta (Conversions API)",
    deletion=DELETION,
    doc="Meta Conversions API server events for a pixel, hashed the way Meta specifies.",
)
