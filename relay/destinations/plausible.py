"""``plausible``: Plausible Analytics, through its Events API (plausible.io or self-hosted).

    destinations:
      plausible:
        type: plausible
        purpose: analytics
        settings: {domain: shop.example}

``prepare`` maps a copy to the one request Plausible takes per event::

    {"body": {"name": "pageview", "url": "https://shop.example/p", "domain": "shop.example",
              "referrer": "https://www.google.com/", "props": {"plan": "pro"},
              "revenue": {"amount": 149.0, "currency": "USD"}},        # purchases
     "headers": {"User-Agent": "Mozilla/5.0 ...",                      # when the pipeline
                 "X-Forwarded-For": "203.0.113.0"}}                    # kept them

and ``build_request`` posts it to ``{endpoint}/api/event``. Plausible counts unique visitors
by a daily-salted hash of the User-Agent, the IP address and the domain, so what the pipeline
strips or truncates changes its counts (docs/destinations.md, ``## plausible``). Limits are
the ones Plausible's ingestion enforces (plausible/analytics ``Plausible.Ingestion.Request``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from relay.destinations.base import http_classify, parse_endpoint, parse_name_map
from relay.destinations.deletion import procedure_only
from relay.rules.fields import BAD_VALUE, At
from relay.types import OK, DestinationDef, Event, FieldMap, StepContext, Verdict

DEFAULT_ENDPOINT = "https://plausible.io"
PATH = "/api/event"
DEFAULT_EVENT_NAMES: Mapping[str, str] = {"page_view": "pageview", "Page Viewed": "pageview"}
MAX_NAME = 120  # characters
MAX_URL = 2000  # bytes (the url); the referrer is cut to 2000 characters
MAX_PROPS = 30
MAX_PROP_KEY = 300  # bytes
MAX_PROP_VALUE = 2000  # bytes
RESERVED_NAMES = frozenset({"engagement"})  # the tracker's own: it needs fields we never send
REVENUE_EVENTS = frozenset({"purchase", "Order Completed"})
REVENUE_AMOUNTS = ("value", "revenue", "total")  # the first one present is the amount
SETTINGS = ("domain", "endpoint", "event_names", "properties")
_CURRENCY = re.compile(r"[A-Za-z]{3}")
_DOMAIN_BAD = re.compile(r"[\s/:?#@]")


@dataclass(frozen=True, slots=True)
class PlausibleSettings:
    domain: str
    endpoint: str = DEFAULT_ENDPOINT
    event_names: Mapping[str, str] = field(default_factory=lambda: DEFAULT_EVENT_NAMES)
    properties: Mapping[str, str] = field(default_factory=dict)


def _domain(at: At) -> str | None:
    """Plausible's site domain as in its site settings (``shop.example``), or a comma list
    of them (one event counted in each, as Plausible's rollups do)."""
    text = at.string()
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if any(not p or _DOMAIN_BAD.search(p) for p in parts):
        at.error(BAD_VALUE, f"'{text}' is not a Plausible site domain",
                 "the domain as in the site's Plausible settings, without https:// or a path: "
                 "shop.example")
        return None
    return ",".join(parts)


def parse_settings(at: At) -> PlausibleSettings | None:
    if at.mapping(allowed=SETTINGS, required=("domain",)) is None:
        return None
    domain = _domain(at.get("domain"))
    endpoint = parse_endpoint(at.get("endpoint"), DEFAULT_ENDPOINT)
    names = parse_name_map(at.get("event_names"))
    for key, name in names.items():
        problem = name_problem(name)
        if problem is not None:
            at.get("event_names").get(key).error(BAD_VALUE, f"'{name}' {problem}")
    props = parse_name_map(at.get("properties"), "property")
    if domain is None:
        return None
    return PlausibleSettings(domain, endpoint, {**DEFAULT_EVENT_NAMES, **names}, props)


def name_problem(name: str) -> str | None:
    if len(name) > MAX_NAME:
        return f"is longer than the {MAX_NAME} characters Plausible takes as an event name"
    if name in RESERVED_NAMES:
        return "is the name of the Plausible tracker's own engagement events"
    return None


# -- the mapping ---------------------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _cut(text: str, limit: int) -> str:
    """``text`` within ``limit`` UTF-8 bytes, never cutting a character in two."""
    return text.encode()[:limit].decode(errors="ignore")


def _url(page: dict[str, Any], ctx: StepContext) -> str | None:
    url = page.get("url")
    if not isinstance(url, str) or not url:
        ctx.notes.append("no context.page.url: Plausible needs the page's URL")
        return None
    if len(url.encode()) > MAX_URL:
        ctx.notes.append(f"context.page.url: longer than the {MAX_URL} bytes Plausible takes")
        return None
    if url.lower().startswith("data:"):
        ctx.notes.append("context.page.url: a data: URL, which Plausible refuses")
        return None
    return url


def _revenue(relay_name: str, props: dict[str, Any], ctx: StepContext) -> dict[str, Any] | None:
    """``{"amount", "currency"}`` for a purchase with an amount and an ISO 4217 currency."""
    if relay_name not in REVENUE_EVENTS:
        return None
    amount = next((props[k] for k in REVENUE_AMOUNTS if props.get(k) is not None), None)
    currency = props.get("currency")
    if amount is None and currency is None:
        return None
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        ctx.notes.append("revenue not sent: the purchase has no numeric value")
        return None
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency.strip()):
        ctx.notes.append("revenue not sent: properties.currency is not a 3-letter ISO 4217 "
                         "code")
        return None
    return {"amount": amount, "currency": currency.strip().upper()}


def _props(
    props: dict[str, Any], names: Mapping[str, str], skip: set[str], ctx: StepContext
) -> dict[str, Any]:
    """Custom properties as Plausible keeps them: scalars only, at most 30, keys of at most
    300 bytes (longer ones dropped), values of at most 2000 bytes (longer ones cut)."""
    out: dict[str, Any] = {}
    over = 0
    for key, value in props.items():
        if key in skip or value is None:
            continue
        theirs = names.get(key, key)
        where = f"properties.{key}"
        if isinstance(value, dict | list):
            ctx.notes.append(f"{where}: a list or an object, not sent (Plausible keeps text, "
                             "numbers and booleans)")
            continue
        if isinstance(value, str) and not value.strip():
            continue  # Plausible drops empty values
        if not theirs.strip() or theirs in out:
            ctx.notes.append(f"{where}: an empty or repeated property name, not sent")
            continue
        if len(theirs.encode()) > MAX_PROP_KEY:
            ctx.notes.append(f"{where}: a name longer than Plausible's {MAX_PROP_KEY} bytes, "
                             "not sent")
            continue
        if len(out) == MAX_PROPS:
            over += 1
            continue
        if isinstance(value, str) and len(value.encode()) > MAX_PROP_VALUE:
            ctx.notes.append(f"{where}: cut to the {MAX_PROP_VALUE} bytes Plausible keeps")
            value = _cut(value, MAX_PROP_VALUE)
        out[theirs] = value
    if over:
        ctx.notes.append(f"{over} propert{'y' if over == 1 else 'ies'} over Plausible's "
                         f"{MAX_PROPS} not sent")
    return out


def _headers(context: dict[str, Any], ctx: StepContext) -> dict[str, str]:
    out: dict[str, str] = {}
    ua = context.get("user_agent")
    if isinstance(ua, str) and ua and ua.isascii() and ua.isprintable():
        out["User-Agent"] = ua
    elif ua is not None:
        ctx.notes.append("context.user_agent: not a header value, not sent")
    ip = context.get("ip")
    if isinstance(ip, str) and ip:
        try:
            out["X-Forwarded-For"] = str(ipaddress.ip_address(ip))
        except ValueError:
            ctx.notes.append("context.ip: not an IP address, not sent")
    return out


def prepare(event: Event, settings: PlausibleSettings, ctx: StepContext) -> Event | None:
    """One copy as the Events API request, or None (with the reason) when Plausible cannot
    take it: no page URL, a URL over 2000 bytes, a name Plausible refuses."""
    relay_name = str(event["event"])
    name = settings.event_names.get(relay_name, relay_name)
    problem = name_problem(name)
    if problem is not None:
        ctx.notes.append(f"event name '{name}' {problem} (map it with settings.event_names)")
        return None
    context = _dict(event.get("context"))
    page = _dict(context.get("page"))
    url = _url(page, ctx)
    if url is None:
        return None
    body: dict[str, Any] = {"name": name, "url": url, "domain": settings.domain}
    referrer = page.get("referrer")
    if isinstance(referrer, str) and referrer:
        body["referrer"] = referrer[:MAX_URL]
    raw = _dict(event.get("properties"))
    revenue = _revenue(relay_name, raw, ctx)
    used = {"currency", *REVENUE_AMOUNTS} if revenue else set()
    props = _props(raw, settings.properties, used, ctx)
    if props:
        body["props"] = props
    if revenue:
        body["revenue"] = revenue
    item: dict[str, Any] = {"body": body}
    headers = _headers(context, ctx)
    if headers:
        item["headers"] = headers
    return item


def build_request(items: Sequence[Event], settings: PlausibleSettings) -> httpx.Request:
    """``POST {endpoint}/api/event`` for the one item (Plausible takes one event a request).
    Without the user's User-Agent none is sent: Plausible would take the relay's for the
    visitor's, and a client library's may read as a bot's."""
    if len(items) != 1:
        raise ValueError(f"Plausible takes one event a request, got {len(items)}")
    item = items[0]
    headers = {"Content-Type": "application/json", **item.get("headers", {})}
    return httpx.Request("POST", settings.endpoint + PATH, content=orjson.dumps(item["body"]),
                         headers=headers)


# -- answers -------------------------------------------------------------------------------

_HINTS = (("domain", "check settings.domain"), ("url", "the event's context.page.url"),
          ("props", "the event's properties"), ("event_name", "check settings.event_names"))


def classify(response: httpx.Response) -> Verdict:
    """2xx is ok, also when Plausible dropped the event (a bot's user agent, an unknown
    domain, a shield rule, throttling: it says so only in ``x-plausible-dropped``, which the
    verdict's detail repeats); 400 is permanent with Plausible's errors and the setting or
    field to check; 429 and 5xx are retried (``http_classify``)."""
    status = response.status_code
    if 200 <= status < 300:
        dropped = response.headers.get("x-plausible-dropped")
        if dropped:
            return Verdict("ok", f"HTTP {status}, but Plausible dropped it (x-plausible-dropped:"
                           f" {dropped}): a bot's user agent, a domain it does not know "
                           "(check settings.domain), a shield rule or throttling", status)
        return OK
    verdict = http_classify(response)
    if status == 400:
        text = response.text
        hints = [hint for key, hint in _HINTS if f'"{key}"' in text]
        if hints:
            return Verdict("permanent", f"{verdict.detail} ({'; '.join(hints)})", status)
    elif status in (401, 403):
        return Verdict("permanent", verdict.detail + " (Plausible's Events API takes no "
                       "credentials: check settings.endpoint and what is in front of it)",
                       status)
    elif status == 404:
        return Verdict("permanent", verdict.detail + " (check settings.endpoint: the base "
                       "URL of Plausible, such as https://plausible.io)", status)
    return verdict


def fields(settings: PlausibleSettings) -> list[FieldMap]:
    """Every field ``prepare`` can put in an item."""
    out = [
        FieldMap("event", "body.name"),
        FieldMap("context.page.url", "body.url"),
        FieldMap("settings.domain", "body.domain"),
        FieldMap("context.page.referrer", "body.referrer"),
        FieldMap("properties.*", "body.props.*"),
        FieldMap("properties.value", "body.revenue.amount"),
        FieldMap("properties.revenue", "body.revenue.amount"),
        FieldMap("properties.total", "body.revenue.amount"),
        FieldMap("properties.currency", "body.revenue.currency"),
        FieldMap("context.user_agent", "headers.User-Agent"),
        FieldMap("context.ip", "headers.X-Forwarded-For"),
    ]
    out += [FieldMap(f"properties.{ours}", f"body.props.{theirs}")
            for ours, theirs in settings.properties.items()]
    return out


# Plausible stores no personal data or IP address (its data policy): nothing per person.
DELETION = procedure_only("Plausible", (
    "Plausible has no per-person deletion and keeps no per-person record: no cookies, no"
    " user ids, no IP addresses stored (plausible.io/data-policy). Nothing to delete unless"
    " an event property sent to it names the person: check the datamap's fields for"
    " plausible"))


DESTINATION = DestinationDef(
    parse_settings=parse_settings,
    max_batch=1,
    build_request=build_request,
    classify=classify,
    prepare=prepare,
    fields=fields,
    vendor="Plausible Analytics (Plausible Insights OÜ)",
    deletion=DELETION,
    doc="Plausible Events API: one event a request, the user's User-Agent and IP as headers.",
)
