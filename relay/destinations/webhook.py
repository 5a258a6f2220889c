"""``webhook``: a generic JSON POST, optionally signed with HMAC.

Without ``batch`` each request carries one event as the JSON body (and ``Idempotency-Key:
<event_id>``); with ``batch: true`` the body is ``{"batch": [...]}`` with up to 100 events.
The settings object's ``batch_limit`` tells the dispatcher which. With a ``secret`` every
request carries ``X-Relay-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``,
the scheme the relay itself verifies on incoming webhooks (``destinations.base.verify``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
import orjson

from relay.destinations.base import header_problem, http_classify, parse_http_url
from relay.rules.fields import BAD_VALUE, At
from relay.signature import SIGNATURE_HEADER, sign
from relay.types import DestinationDef, Event
from relay.version import __version__

MAX_BATCH = 100
USER_AGENT = f"relay/{__version__}"
# Set by the relay (or by HTTP itself); a configured header may not replace them.
RESERVED_HEADERS = frozenset({"content-type", "content-length", "host", "transfer-encoding",
                              "idempotency-key", SIGNATURE_HEADER.lower()})


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    url: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # may carry tokens
    secret: str | None = field(default=None, repr=False)
    batch: bool = False

    @property
    def batch_limit(self) -> int:
        """Events per request: the dispatcher never claims more than this for one request."""
        return MAX_BATCH if self.batch else 1


def parse_settings(at: At) -> WebhookSettings | None:
    if at.mapping(allowed=("url", "headers", "secret", "batch"), required=("url",)) is None:
        return None
    url = parse_http_url(at.get("url"))
    headers: dict[str, str] = {}
    h = at.get("headers")
    if h.present:
        for name, value in (h.mapping() or {}).items():
            text = value.string(allow_empty=True)
            problem = header_problem(name, text) if text is not None else None
            if name.lower() in RESERVED_HEADERS:
                value.error(BAD_VALUE, f"header '{name}' is set by the relay")
            elif problem is not None:
                # Every request would be refused before it is sent, so every copy would be
                # dead-lettered: say so now. The value is not echoed (tokens).
                value.error(BAD_VALUE, problem)
            elif text is not None:
                headers[name] = text
    secret = at.get("secret").string()
    batch = at.get("batch").boolean(False)
    if url is None:
        return None
    return WebhookSettings(url=url, headers=headers, secret=secret, batch=bool(batch))


def build_request(
    events: Sequence[Event], settings: WebhookSettings, now: float | None = None
) -> httpx.Request:
    """The POST for ``events``. ``now`` (unix seconds) is the signature's ``t``; it defaults
    to the current time because the receiver checks it against its own clock on every attempt,
    retries included (an event's own time would make a retried request look stale)."""
    if settings.batch:
        body = orjson.dumps({"batch": list(events)})
    elif len(events) == 1:
        body = orjson.dumps(events[0])
    else:
        raise ValueError(f"webhook without batch sends one event per request, got {len(events)}")
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **settings.headers}
    event_id = events[0].get("event_id") if not settings.batch else None
    if isinstance(event_id, str) and event_id.isascii() and event_id.isprintable():
        headers["Idempotency-Key"] = event_id
    if settings.secret:
        t = int(time.time() if now is None else now)
        headers[SIGNATURE_HEADER] = sign(settings.secret, body, t)
    return httpx.Request("POST", settings.url, content=body, headers=headers)


DESTINATION = DestinationDef(
    parse_settings=parse_settings,
    max_batch=MAX_BATCH,
    build_request=build_request,
    classify=http_classify,
    vendor="the receiver at settings.url",
    doc="POST events as JSON to settings.url, one per request or {batch: [...]}, HMAC-signed.",
)
