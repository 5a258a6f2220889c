"""Header, cookie and consent hygiene for proxied requests. Pure functions, no I/O.

Requests lose hop-by-hop headers, credentials, client-spoofable address and CDN headers and
every cookie the route does not list; the relay adds ``X-Forwarded-For`` (stripped,
truncated or kept), the user agent (passed, generalized or stripped, and the client hints
with it) and the CDN country (under the route's header name). Responses lose hop-by-hop
headers and every ``Set-Cookie`` for a name the route does not list; the rest are rewritten
to the site (no ``Domain``) and the route's path.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

import user_agents

from relay.personal import truncate
from relay.pipeline.url import filter_query
from relay.proxy.target import query_filter
from relay.rules.model import ProxyRoute
from relay.types import Event

Headers = list[tuple[str, str]]

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})  # fmt: skip
# Never forwarded upstream: credentials, the relay's own business, and headers a client can
# spoof or a CDN adds about the client.
REQUEST_DROP = frozenset({
    "host", "cookie", "authorization", "forwarded", "via", "true-client-ip", "x-real-ip",
    "x-client-ip", "x-cluster-client-ip", "fastly-client-ip", "x-relay-signature",
})  # fmt: skip
REQUEST_DROP_PREFIXES = ("x-forwarded-", "cf-", "cloudfront-", "fastly-", "x-akamai-", "proxy-")
# Never passed back: they would speak for the site's origin, not the vendor's.
RESPONSE_DROP = frozenset({"alt-svc", "strict-transport-security", "set-cookie"})

# Client hints the browser sends by default, with no more than the generalized user agent
# says (brand and major version, mobile or not, platform); the others only go with ``pass``.
LOW_ENTROPY_HINTS = frozenset({"sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform"})
_GCS = re.compile(r"^G1([01-])([01-])")
_GCS_KEYS = ("ad_storage", "analytics_storage")


def _connection_tokens(headers: Iterable[tuple[str, str]]) -> set[str]:
    return {
        token.strip().lower()
        for name, value in headers if name.lower() == "connection"
        for token in value.split(",") if token.strip()
    }


def _listed(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(name, p) for p in patterns)


def request_cookies(header: str | None, patterns: tuple[str, ...], own: str) -> str | None:
    """The ``Cookie`` header with only the listed names (globs), never the relay's own."""
    if not header or not patterns:
        return None
    kept = []
    for pair in header.split(";"):
        name = pair.split("=", 1)[0].strip()
        if name and name != own and _listed(name, patterns):
            kept.append(pair.strip())
    return "; ".join(kept) or None


@functools.lru_cache(maxsize=4096)
def generalize_user_agent(ua: str) -> str:
    """A coarse user agent: OS family, mobile or not, browser family and major version.

        >>> generalize_user_agent("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36"
        ...                       " (KHTML, like Gecko) Chrome/120.0.6099.71 Safari/537.36")
        'Mozilla/5.0 (Windows) Chrome/120'
    """
    parsed = user_agents.parse(ua)
    os_family = str(parsed.os.family)
    browser = str(parsed.browser.family).replace(" ", "")
    major = parsed.browser.version[0] if parsed.browser.version else None
    mobile = "; Mobile" if parsed.is_mobile else ""
    return f"Mozilla/5.0 ({os_family}{mobile}) {browser}" + (f"/{major}" if major else "")


def request_headers(
    route: ProxyRoute,
    headers: Iterable[tuple[str, str]],
    *,
    client_ip: str | None,
    country: str | None,
    own_cookie: str,
    drop: Iterable[str] = (),
    keep_click_ids: bool = False,
) -> Headers:
    """The headers to send upstream for a client's request headers (``Host`` is set by the
    client from the URL). ``drop`` adds header names the relay's rules read (the country
    and client address headers)."""
    items = list(headers)
    gone = HOP_BY_HOP | REQUEST_DROP | _connection_tokens(items) | {d.lower() for d in drop}
    gone |= {"user-agent", "referer"}
    out: Headers = []
    cookie = None
    for name, value in items:
        low = name.lower()
        if low == "cookie":
            cookie = f"{cookie}; {value}" if cookie else value
        if low in gone or low.startswith(REQUEST_DROP_PREFIXES):
            continue
        if low.startswith("sec-ch-ua") and route.user_agent != "pass" and (
            route.user_agent == "strip" or low not in LOW_ENTROPY_HINTS
        ):
            continue  # client hints go with the user agent
        out.append((low, value))
    lookup = {n.lower(): v for n, v in items}
    if (kept := request_cookies(cookie, route.cookies, own_cookie)) is not None:
        out.append(("cookie", kept))
    if "accept-encoding" not in lookup:
        out.append(("accept-encoding", "identity"))  # never a body the browser did not ask for
    ua = lookup.get("user-agent")
    if ua and route.user_agent == "pass":
        out.append(("user-agent", ua))
    elif ua and route.user_agent == "generalize":
        out.append(("user-agent", generalize_user_agent(ua)))
    referer = lookup.get("referer")
    if referer:
        cleaned, _ = filter_query(referer, query_filter(route, keep_click_ids))
        out.append(("referer", cleaned))
    if client_ip and route.forward_ip != "strip":
        ip = client_ip if route.forward_ip == "keep" else truncate(client_ip)
        if ip:
            out.append(("x-forwarded-for", ip))
    if country and route.forward_country:
        out.append((route.forward_country.lower(), country))
    return out


def _rewrite_cookie(value: str, path: str) -> str:
    """A ``Set-Cookie`` value for the site: no ``Domain``, ``Path`` set to ``path``."""
    parts = [p.strip() for p in value.split(";")]
    attrs = [p for p in parts[1:] if p and p.split("=", 1)[0].strip().lower()
             not in ("domain", "path")]
    return "; ".join([parts[0], *attrs, f"Path={path}"])


def response_headers(
    route: ProxyRoute, headers: Iterable[tuple[str, str]], cookie_path: str
) -> Headers:
    """The upstream response headers to pass back to the browser."""
    items = list(headers)
    gone = HOP_BY_HOP | RESPONSE_DROP | _connection_tokens(items)
    out: Headers = []
    for name, value in items:
        low = name.lower()
        if low == "set-cookie":
            cookie_name = value.split("=", 1)[0].strip()
            if route.cookies and _listed(cookie_name, route.cookies):
                out.append((low, _rewrite_cookie(value, cookie_path)))
        elif low not in gone and not low.startswith("proxy-"):
            out.append((low, value))
    return out


# -- consent --------------------------------------------------------------------------


def gcs_consent(query: bytes, consent_map: Mapping[str, str]) -> dict[str, str]:
    """Purpose states from a Consent Mode ``gcs`` parameter (``G1xy``: x is ad_storage, y is
    analytics_storage; 1 granted, 0 denied, - unknown), mapped like event consent: every
    present key of a purpose must be granted.

        >>> gcs_consent(b"v=2&gcs=G101", {"ad_storage": "ads", "analytics_storage": "analytics"})
        {'ads': 'denied', 'analytics': 'granted'}
    """
    value = None
    for pair in query.split(b"&"):
        name, _, raw = pair.partition(b"=")
        if name == b"gcs":
            value = raw.decode("latin-1")
    m = _GCS.match(value or "")
    if m is None:
        return {}
    out: dict[str, str] = {}
    for key, flag in zip(_GCS_KEYS, m.groups(), strict=True):
        purpose = consent_map.get(key)
        if purpose is None or flag == "-":
            continue
        state = "granted" if flag == "1" else "denied"
        if out.get(purpose) != "denied":
            out[purpose] = state
    return out


def consent_event(
    explicit: Mapping[str, Any] | None, gcs: Mapping[str, str], gpc: bool, country: str | None
) -> Event:
    """The tiny event ``relay.consent.decide`` reads: the relay's explicit consent for this
    browser first, then Consent Mode's, then GPC and the region default."""
    consent = {**gcs, **(explicit or {})}
    return {"consent": consent, "context": {"gpc": gpc, "country": country}}
