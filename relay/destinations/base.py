"""Helpers shared by destination modules: the default HTTP verdict, ``Retry-After``, settings
parsing for URLs, and whether HTTP can carry a built request's headers (``unsendable``).
(The HMAC signature scheme is ``relay.signature``.)"""

from __future__ import annotations

import hashlib
import math
import re
import time
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx

from relay.rules.fields import BAD_VALUE, At
from relay.types import OK, Verdict

DETAIL_BODY_CHARS = 500  # how much of a vendor's answer a verdict keeps
RETRY_STATUSES = frozenset({408, 429})  # plus every 5xx
# What HTTP/1.1 lets a header carry, as h11 (httpx's HTTP/1.1) checks it before sending.
_HEADER_NAME = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_HEADER_VALUE = re.compile(rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date.

    ``parse_retry_after("120", now)`` -> 120.0;
    ``parse_retry_after("Sat, 28 Nov 2026 12:01:00 GMT", now=<12:00:00 that day>)`` -> 60.0.
    A date in the past gives 0.0; anything unparseable gives None.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are always GMT
        return None
    return max(0.0, when.timestamp() - now)


def _reference_time(response: httpx.Response) -> float:
    """The vendor's own clock (its ``Date`` header) when it sent one, else ours: an HTTP-date
    ``Retry-After`` is then measured on the clock that wrote it."""
    date = response.headers.get("date")
    if date:
        try:
            return parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError, IndexError):
            pass
    return time.time()


def http_detail(response: httpx.Response) -> str:
    """``"HTTP 400: <first 500 characters of the body>"``."""
    return f"HTTP {response.status_code}: {response.text[:DETAIL_BODY_CHARS]}"


def http_classify(response: httpx.Response) -> Verdict:
    """The default verdict: 2xx ok; 408, 429, 5xx retry (honouring ``Retry-After``); anything
    else (other 4xx, an unfollowed 3xx) is permanent."""
    status = response.status_code
    if 200 <= status < 300:
        return OK
    detail = http_detail(response)
    if status in RETRY_STATUSES or status >= 500:
        header = response.headers.get("retry-after")
        retry_after = parse_retry_after(header, _reference_time(response)) if header else None
        return Verdict("retry", detail, status, retry_after)
    return Verdict("permanent", detail, status)


def parse_http_url(at: At) -> str | None:
    """An absolute ``http``/``https`` URL with a host, or None after reporting why not."""
    text = at.string()
    if text is None:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # The value is not echoed: URLs often come from ${VAR}s that carry tokens.
        at.error(BAD_VALUE, "expected an http or https URL with a host",
                 "like https://hooks.example/relay")
        return None
    return text


def header_problem(name: str, value: str) -> str | None:
    """Why HTTP cannot carry the header ``name: value`` as httpx sends it (ASCII, h11's
    rules), or None. For settings (``relay check``): the value is never quoted."""
    if not name.isascii() or not _HEADER_NAME.fullmatch(name.encode()):
        return "a header name may contain only letters, digits and !#$%&'*+-.^_`|~"
    if not value.isascii():
        return "a header value may contain only ASCII characters"
    if not _HEADER_VALUE.fullmatch(value.encode()):
        return ("a header value may not start or end with whitespace, nor hold a NUL, CR, LF "
                "or another character HTTP cannot carry")
    return None


def unsendable(request: httpx.Request) -> str | None:
    """Why HTTP cannot carry ``request``'s headers (None when it can), checked before sending:
    the transport would refuse it on every attempt. The value is never quoted (an event id,
    a token), only the header's name.

    ``Idempotency-Key: " x1"`` -> ``"header Idempotency-Key: ..."`` (leading whitespace).
    """
    for name, value in request.headers.raw:
        if not _HEADER_NAME.fullmatch(name):
            return "a header name HTTP cannot carry"
        if not _HEADER_VALUE.fullmatch(value):
            return (
                f"header {name.decode('ascii')}: the value starts or ends with whitespace, or "
                "holds a NUL, CR, LF or another character HTTP cannot carry"
            )
    return None


# -- shared by the vendor destinations -----------------------------------------------------

_HEX64 = re.compile(r"[0-9a-f]{64}")


def sha256_hex(text: str) -> str:
    """The lowercase hex SHA-256 of ``text`` (UTF-8), as every vendor takes hashed values."""
    return hashlib.sha256(text.encode()).hexdigest()


def is_sha256_hex(value: object) -> bool:
    """True for a value already hashed (by a pipeline's ``hash`` step, or by the caller):
    a vendor mapping passes it on as it is, since it cannot be normalized again."""
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def parse_endpoint(at: At, default: str) -> str:
    """``settings.endpoint``: the scheme, host and optional path prefix that replace the
    vendor's base URL (an EU host, a self-hosted vendor, a gateway, a test's stand-in),
    without a trailing ``/``; ``default`` when the key is absent or wrong (the mistake is
    reported). ``https://eu.example/api/`` -> ``https://eu.example/api``."""
    if not at.present:
        return default
    text = parse_http_url(at)
    if text is None:
        return default
    parts = urlsplit(text)
    if parts.query or parts.fragment:
        at.error(BAD_VALUE, "an endpoint is a base URL, without a query or a fragment",
                 "like https://region1.google-analytics.com")
        return default
    return text.rstrip("/")


def parse_name_map(at: At, what: str = "event") -> dict[str, str]:
    """A mapping of the relay's names to the vendor's (``event_names: {purchase: Purchase}``,
    ``properties: {order_id: transaction_id}``); every key and value a non-empty string."""
    out: dict[str, str] = {}
    if not at.present:
        return out
    for key, value in (at.mapping() or {}).items():
        name = value.string()
        if name is None:
            continue
        if not name.strip():
            value.error(BAD_VALUE, f"the vendor's {what} name is empty")
            continue
        out[key] = name
    return out
