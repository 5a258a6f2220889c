"""The demo's memory of what clients sent the relay.

``Tap`` is an ASGI middleware in front of the whole demo app: it copies the bodies of
``POST {prefix}/e`` (the browser) and ``POST {prefix}/hook/{source}`` (the backend) into the
``Recorder`` and hands the request on unchanged, so the vendors page can put each delivery
next to what was originally sent. Everything is in memory and bounded; nothing is written.
(What the vendors received is ``inbox``; what the relay decided, ``decisions``.)
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from relay.demo.changes import COOKIE_VALUE
from relay.ingest.body import parse_body
from relay.types import Event

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

KEEP_EVENTS = 500  # event ids remembered from clients
CONSENT_EVENT = "consent_update"  # the snippet's consent choice
TAP_MAX_BYTES = 256 * 1024  # larger bodies pass through unrecorded (the relay answers 413)
TAP_MAX_EVENTS = 1000


@dataclass(frozen=True, slots=True)
class Sent:
    """One event as a client sent it. For browser events, ``context.ip`` and
    ``context.user_agent`` are added as the relay saw them on the request."""

    source: str
    event: Event
    at: float


class Recorder:
    def __init__(self, keep: int = KEEP_EVENTS) -> None:
        self.keep = keep
        self._sent: OrderedDict[str, list[Sent]] = OrderedDict()
        # consent choices sent without an event id (the relay makes one): in arrival order
        self._choices: deque[Sent] = deque(maxlen=keep)
        self.version = 0  # bumped on every change, so pages re-render only when needed

    def client_sent(self, source: str, events: Sequence[Any], now: float | None = None) -> None:
        at = time.time() if now is None else now
        for event in events:
            eid = event.get("event_id") if isinstance(event, dict) else None
            if not isinstance(eid, str):
                if isinstance(event, dict) and event.get("event") == CONSENT_EVENT:
                    self._choices.append(Sent(source, event, at))
                continue
            self._sent.setdefault(eid, []).append(Sent(source, event, at))
            self._sent.move_to_end(eid)
            while len(self._sent) > self.keep:
                self._sent.popitem(last=False)
        self.version += 1

    def sent(self, event_id: Any) -> list[Sent]:
        """What clients sent with this event id, in the order the relay got them."""
        return list(self._sent.get(event_id, [])) if isinstance(event_id, str) else []

    def next_choice(self) -> Sent | None:
        """The oldest consent choice sent without an event id not taken yet (the relay
        decides them in the order they arrived)."""
        return self._choices.popleft() if self._choices else None


def _browser_copy(raw: Any, ip: str | None, user_agent: str | None) -> Any:
    """The event as the relay sees it arrive: what the page sent plus the request's
    address and user agent (which the relay adds to every browser event)."""
    if not isinstance(raw, dict):
        return raw
    event = orjson.loads(orjson.dumps(raw))
    ctx = event.get("context")
    if not isinstance(ctx, dict):
        ctx = event["context"] = {}
    if ip:
        ctx["ip"] = ip
    if user_agent:
        ctx["user_agent"] = user_agent
    return event


def _without_cookie(raw: Any) -> Any:
    """A backend event with the correlation cookie value it echoed hidden: the cookie is
    HttpOnly, and the demo's pages are not the place to show it."""
    if isinstance(raw, dict) and isinstance(raw.get("correlation_id"), str):
        return {**raw, "correlation_id": COOKIE_VALUE}
    return raw


class Tap:
    """Copy the relay's ingestion bodies into ``recorder``; everything else passes by."""

    def __init__(self, app: ASGIApp, recorder: Recorder, prefix: str, browser: str) -> None:
        self.app = app
        self.recorder = recorder
        self.browser_path = prefix + "/e"
        self.hook_path = prefix + "/hook/"
        self.browser = browser

    def _source(self, scope: Scope) -> str | None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        path: str = scope["path"]
        if path == self.browser_path:
            return self.browser
        if path.startswith(self.hook_path):
            return path[len(self.hook_path) :] or None
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        source = self._source(scope)
        if source is None:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        size, complete = 0, False
        while size <= TAP_MAX_BYTES:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                complete = True
                break
        if complete and size <= TAP_MAX_BYTES:
            self._record(scope, source, b"".join(m.get("body", b"") for m in messages))
        pending = deque(messages)

        async def replay() -> Message:
            return pending.popleft() if pending else await receive()

        await self.app(scope, replay, send)

    def _record(self, scope: Scope, source: str, body: bytes) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        items = parse_body(body, headers.get("content-type"), TAP_MAX_EVENTS)
        if not isinstance(items, list):
            return  # the relay will say what is wrong with it
        if source == self.browser:
            client = scope.get("client")
            ip = client[0] if client else None
            items = [_browser_copy(item, ip, headers.get("user-agent")) for item in items]
        else:
            items = [_without_cookie(item) for item in items]
        self.recorder.client_sent(source, items)
