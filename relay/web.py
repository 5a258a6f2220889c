"""The HTTP pieces every handler shares: problems as JSON answers, the ASGI body reader
with its size limit, reading headers and cookies from a raw ASGI scope, and one ``Date``
and one ``Server`` on every response.

Whatever a client sends, a handler answers 2xx or a 4xx ``Problem`` that names what to fix;
5xx is for the relay's own trouble (503: the spool could not commit, nothing was accepted).
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, cookie_parser
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

JSON = (b"content-type", b"application/json")
NO_STORE = (b"cache-control", b"no-store")

RawHeaders = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Problem:
    """An error answer: its status, a message for the client, extra headers."""

    status: int
    message: str
    headers: Mapping[str, str] | None = None

    def response(self) -> Response:
        return json_response({"error": self.message}, self.status, self.headers)

    def raw_headers(self) -> RawHeaders:
        return [(k.lower().encode(), v.encode()) for k, v in (self.headers or {}).items()]


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body), status, headers=dict(headers or {}), media_type="application/json"
    )


async def send_json(send: Send, status: int, body: Any, headers: RawHeaders | None = None) -> None:
    """Answer with a JSON body as two ASGI messages (no ``Response`` object)."""
    data = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [JSON, (b"content-length", str(len(data)).encode()), *(headers or ())],
        }
    )
    await send({"type": "http.response.body", "body": data})


class BodyTimeout(Exception):
    """The body did not arrive within ``limits.body_seconds``."""


DEADLINE_TICK = 0.05  # how often the deadlines of receives in progress are looked at


class _Deadlines:
    """The tasks waiting in a ``with_deadline`` receive on one event loop, with one timer for
    all of them: a timer per receive (``asyncio.timeout``) cost about as much as the rest of
    reading a small body. A task past its deadline is cancelled at the next tick, so a body is
    cut at most ``DEADLINE_TICK`` seconds late."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting: dict[asyncio.Task[Any], float] = {}  # task -> its deadline (loop time)
        self.expired: set[asyncio.Task[Any]] = set()  # cancelled here, not yet told so
        self.armed = False

    def add(self, task: asyncio.Task[Any], deadline: float) -> None:
        self.waiting[task] = deadline
        if not self.armed:
            self.armed = True
            self.loop.call_later(DEADLINE_TICK, self._tick)

    def _tick(self) -> None:
        now = self.loop.time()
        for task, deadline in list(self.waiting.items()):
            if deadline <= now:
                del self.waiting[task]
                self.expired.add(task)
                task.cancel()
        if self.waiting:
            self.loop.call_later(DEADLINE_TICK, self._tick)
        else:
            self.armed = False


_deadlines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deadlines] = (
    weakref.WeakKeyDictionary()
)


def with_deadline(receive: Receive, seconds: float) -> Receive:
    """``receive`` that raises ``BodyTimeout`` once ``seconds`` have passed since this call:
    a body that trickles in or stalls (slowloris) is cut whatever the server's timeouts."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    deadlines = _deadlines.get(loop)
    if deadlines is None:
        deadlines = _deadlines[loop] = _Deadlines(loop)

    async def timed() -> Message:
        task = asyncio.current_task()
        assert task is not None
        deadlines.add(task, deadline)
        try:
            return await receive()
        except asyncio.CancelledError:
            if task in deadlines.expired:
                deadlines.expired.discard(task)
                if task.uncancel() == 0:  # the deadline's cancel, and nobody else's
                    raise BodyTimeout from None
            raise
        finally:
            deadlines.waiting.pop(task, None)
            deadlines.expired.discard(task)  # a receive that swallowed the cancel

    return timed


def too_large(limit: int) -> Problem:
    """413 for a body over ``limit``. The rest of the body is left unread, so the connection
    cannot carry another request: say so, rather than let the client find a dropped socket."""
    return Problem(413, f"body over {limit} bytes", {"Connection": "close"})


async def read_body(receive: Receive, declared: str | None, limit: int) -> bytes | None:
    """The body from ASGI ``receive``, or None when it is over ``limit`` bytes (``declared``,
    the Content-Length, already says so, or the body grows past it: read no further).
    Raises ``ClientDisconnect`` when the client goes away first."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def header_map(raw: RawHeaders) -> dict[str, str]:
    """Request headers by (lowercase) name; the first of repeated headers wins, as with
    Starlette's ``Headers.get``."""
    out: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1")
        if key not in out:
            out[key] = value.decode("latin-1")
    return out


def cookie(header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header (lenient: a malformed pair is
    skipped)."""
    if not header or name not in header:
        return None
    if not name:
        return cookie_parser(header).get(name)
    # What ``cookie_parser(header).get(name)`` gives (the last pair of that name), parsing
    # only that pair: a page's other cookies (often a dozen) are not unquoted into a dict.
    last = None
    for chunk in header.split(";"):
        key, sep, _ = chunk.partition("=")
        if sep and key.strip() == name:
            last = chunk
    return None if last is None else cookie_parser(last).get(name)


# -- one Date and one Server on every response ------------------------------------------------

SERVER = b"relay"
App = Callable[[Any, Any, Any], Awaitable[None]]


@functools.lru_cache(maxsize=2)
def _http_date(second: int) -> bytes:
    return formatdate(second, usegmt=True).encode("ascii")


def date_and_server(headers: RawHeaders) -> RawHeaders:
    """``headers`` with exactly one ``Date`` and one ``Server``: the first of each kept (a
    proxied response's are the upstream's), the relay's added when there is none.

        >>> [n for n, _ in date_and_server([(b"date", b"x"), (b"Date", b"y")])]
        [b'date', b'server']
    """
    out: RawHeaders = []
    seen_date = seen_server = False
    for name, value in headers:
        low = name.lower()
        if low == b"date":
            if seen_date:
                continue
            seen_date = True
        elif low == b"server":
            if seen_server:
                continue
            seen_server = True
        out.append((name, value))
    if not seen_date:
        out.append((b"date", _http_date(int(time.time()))))
    if not seen_server:
        out.append((b"server", SERVER))
    return out


def with_date_and_server(app: App) -> App:
    """``app`` whose responses carry one ``Date`` and one ``Server`` (``date_and_server``).

    The server running the app must not add its own: ``relay serve`` turns hypercorn's
    off (``include_date_header``, ``include_server_header``); another server needs the same
    (uvicorn: ``date_header=False, server_header=False``), or every proxied response would
    carry the upstream's and the server's.
    """

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": date_and_server(list(message.get("headers", [])))}
            await send(message)

        await app(scope, receive, sending)

    return wrapped
