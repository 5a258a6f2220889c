"""Which pages may post browser events: the ``Origin`` / ``Referer`` allow-list (pure).

Without it any site could make its visitors' browsers post ``text/plain`` events (a
sendBeacon needs no CORS preflight) into the relay. A browser always names the page's origin
on a POST (``Origin``; very old ones only ``Referer``), and a page cannot forge it, nor the
``Host`` it posts to. A client that is not a browser can send anything: the allow-list is no
defence against scripts (the rate limit and the bot filter are), so a request with neither
``Origin`` nor ``Referer`` (curl, a server, a test) is not refused.

``sources.<browser>.allowed_origins`` lists what may post (``relay.rules.intake`` checks the
patterns and writes them in lowercase, without default ports):

- ``https://shop.example``: exactly that origin; ``https://*.shop.example``: any subdomain
  (not the apex: list both); ``http://localhost:*``: any port;
- ``"*"``: any origin (the check is off); ``"null"``: the ``Origin: null`` that sandboxed
  frames and pages with ``Referrer-Policy: no-referrer`` send (an attacker's sandboxed frame
  sends it too).

Without the key, the page must be on the relay's own host (the request's ``Host`` or
``X-Forwarded-Host``, any scheme) or on loopback (``localhost``, ``127.0.0.0/8``, ``[::1]``:
development pages on another port).

    >>> refused(("https://shop.example",), "https://evil.example", None, "shop.example", None)
    'https://evil.example'
    >>> refused(None, "https://shop.example", None, "shop.example", None) is None
    True
"""

from __future__ import annotations

import functools
from typing import Final, NamedTuple

DEFAULT_PORTS: Final = {"http": "80", "https": "443"}
ANY: Final = "*"
NULL: Final = "null"


class Origin(NamedTuple):
    scheme: str
    host: str
    port: str | None  # None: the scheme's default


def parse_origin(text: str) -> Origin | None:
    """``https://Shop.example:443/x`` -> ``Origin("https", "shop.example", None)``; None when
    ``text`` is no http(s) origin or URL. A path, query or fragment is ignored (a Referer
    has one)."""
    scheme, sep, rest = text.strip().partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in DEFAULT_PORTS:
        return None
    netloc = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rpartition("@")[2].lower()
    return split_host(scheme, netloc)


def split_host(scheme: str, netloc: str) -> Origin | None:
    """``host[:port]`` (IPv6 in brackets) -> an ``Origin``; the default port becomes None."""
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            return None
        host, rest = netloc[: end + 1], netloc[end + 1 :]
        port = rest[1:] if rest.startswith(":") else None
        if rest and port is None:
            return None
    else:
        host, colon, port_text = netloc.partition(":")
        port = port_text if colon else None
    if not host or (port is not None and not (port.isdigit() or port == ANY)):
        return None
    if port == DEFAULT_PORTS.get(scheme):
        port = None
    return Origin(scheme, host, port)


def is_loopback(host: str) -> bool:
    return (host == "localhost" or host.endswith(".localhost") or host == "[::1]"
            or (host.startswith("127.") and host.replace(".", "").isdigit()))


def _own(origin: Origin, hosts: tuple[str | None, ...]) -> bool:
    """The page is on the host the request was sent to (any scheme: TLS may end at a CDN)."""
    for value in hosts:
        for one in (value or "").split(","):
            own = split_host(origin.scheme, one.strip().lower())
            if own is not None and (own.host, own.port) == (origin.host, origin.port):
                return True
    return False


def _matches(pattern: str, origin: Origin) -> bool:
    want = parse_origin(pattern)
    if want is None or want.scheme != origin.scheme:
        return False
    if want.port != ANY and want.port != origin.port:
        return False
    if want.host.startswith("*."):
        return origin.host.endswith(want.host[1:])
    return want.host == origin.host


@functools.lru_cache(maxsize=1024)
def refused(
    allowed: tuple[str, ...] | None,
    origin: str | None,
    referer: str | None,
    host: str | None,
    forwarded_host: str | None,
) -> str | None:
    """None when a page with this ``Origin`` (or, without one, this ``Referer``) may post to
    the relay at ``host``; else the origin that was refused, for the 403's message."""
    given = origin if origin is not None else referer
    if given is None or (allowed is not None and ANY in allowed):
        return None
    if given.strip().lower() == NULL:
        return None if allowed is not None and NULL in allowed else NULL
    parsed = parse_origin(given)
    if parsed is None:
        return given[:100]
    if allowed is None:
        if is_loopback(parsed.host) or _own(parsed, (host, forwarded_host)):
            return None
    elif any(_matches(p, parsed) for p in allowed):
        return None
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}"
