"""Identity: the signed correlation cookie, event ids, and the client address.

The cookie value is ``<random id>.<timestamp>.<signature>`` (itsdangerous ``TimestampSigner``).
The newest secret signs; every listed secret verifies, so secrets rotate without logging
anyone out. A tampered, expired or unknown-key cookie is replaced, never trusted.
"""

from __future__ import annotations

import ipaddress
import secrets as _secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cachetools import LRUCache
from itsdangerous import BadSignature, TimestampSigner

from relay.rules.model import ClientIP, Cookie

_SALT = "relay.correlation"
VERIFIED_CACHE = 10_000
# How far in the future a signing time may be (replicas' clocks differ a little): a value
# signed later than that is not one this relay's replicas made, and is replaced.
CLOCK_SKEW = 60.0
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


def new_id(prefix: str = "") -> str:
    return prefix + _secrets.token_urlsafe(12)


@dataclass(frozen=True, slots=True)
class Correlation:
    id: str  # the random part, which events carry as correlation_id
    value: str  # the signed cookie value to set
    fresh: bool  # True when the browser had no valid cookie


class CookieSigner:
    """Signs and verifies correlation cookies.

    A browser sends its cookie with every event, so verified values are remembered (bounded)
    with their signing time, and a cookie signed less than ``max_age / 10`` ago is sent back
    as it is rather than signed again: the sliding ``Max-Age`` only needs a fresh timestamp
    now and then, not on every request.
    """

    def __init__(self, cookie: Cookie, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("the correlation cookie needs at least one secret")
        self.cookie = cookie
        # itsdangerous signs with the last key and verifies with all of them.
        self.signer = TimestampSigner(list(secrets), salt=_SALT)
        self._newest = TimestampSigner(secrets[-1], salt=_SALT) if len(secrets) > 1 else None
        # value -> (id, signing time, signed with the newest secret)
        self._verified: LRUCache[str, tuple[str, float, bool]] = LRUCache(maxsize=VERIFIED_CACHE)
        self._resign_after = cookie.max_age / 10

    def _check(self, value: str | None) -> tuple[str, float, bool] | None:
        """(id, signing time, by the newest secret) of a correctly signed value."""
        if not value or len(value) > 256:
            return None
        known = self._verified.get(value)
        if known is not None:
            return known
        try:
            raw, signed = self.signer.unsign(value, return_timestamp=True)
        except (BadSignature, UnicodeDecodeError):
            return None
        newest = self._newest is None or self._newest.validate(value)
        known = (raw.decode(), signed.timestamp(), newest)
        self._verified[value] = known
        return known

    def verify(self, value: str | None, max_age: float | None = None) -> str | None:
        """The correlation id in a signed value, or None if tampered, expired or absent."""
        known = self._check(value)
        if known is None:
            return None
        cid, signed, _ = known
        age = time.time() - signed
        if age > (max_age if max_age is not None else self.cookie.max_age) or age < -CLOCK_SKEW:
            return None
        return cid

    def issue(self, current: str | None) -> Correlation:
        """Keep a valid cookie (re-signed when its timestamp is getting old: sliding
        Max-Age) or start a new one."""
        known = self._check(current)
        now = time.time()
        if (known is not None and current is not None
                and -CLOCK_SKEW <= now - known[1] <= self.cookie.max_age):
            if now - known[1] < self._resign_after and known[2]:
                return Correlation(known[0], current, False)
            return Correlation(known[0], self.signer.sign(known[0]).decode(), False)
        cid = new_id()
        return Correlation(cid, self.signer.sign(cid).decode(), True)

    def header(self, value: str, host: str | None) -> str:
        """The ``Set-Cookie`` header value. ``Secure`` is left off only on localhost."""
        c = self.cookie
        parts = [
            f"{c.name}={value}",
            f"Max-Age={int(c.max_age)}",
            f"Path={c.path}",
            "HttpOnly",
            f"SameSite={c.same_site.capitalize()}",
        ]
        if c.domain:
            parts.append(f"Domain={c.domain}")
        hostname = (host or "").rsplit(":", 1)[0] if host and not host.startswith("[") else host
        if c.secure and (hostname or "") not in LOCAL_HOSTS:
            parts.append("Secure")
        return "; ".join(parts)


def _clean_ip(text: str) -> str | None:
    text = text.strip().strip('"')
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def client_ip(config: ClientIP, headers: Mapping[str, str], peer: str | None) -> str | None:
    """The user's address, taken only from what the trusted proxy chain vouches for.

    - no header configured: the TCP peer;
    - ``X-Forwarded-For`` with ``trusted_hops`` N: the N-th address from the right (each
      trusted proxy appends the address it saw); too few entries falls back to the peer;
    - ``CloudFront-Viewer-Address``: ``ip:port`` (v6 as ``a:b::c:port``);
    - any other header (CF-Connecting-IP, True-Client-IP, Fastly-Client-IP, X-Real-IP):
      a single address set by the CDN.
    An unparsable value falls back to the peer: a client cannot inject garbage.
    """
    if config.header is None:
        return peer
    name = config.header.lower()
    raw = headers.get(name)
    if not raw:
        return peer
    if name == "x-forwarded-for":
        hops = [h for h in (p.strip() for p in raw.split(",")) if h]
        if len(hops) < config.trusted_hops:
            return peer
        return _clean_ip(hops[-config.trusted_hops]) or peer
    if name == "cloudfront-viewer-address":
        host = raw.rsplit(":", 1)[0] if raw.count(":") >= 1 else raw
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            return peer
    return _clean_ip(raw) or peer
