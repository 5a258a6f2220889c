"""Every ingest endpoint is a plain ASGI app built by ``Endpoint``: one way to read the body,
to treat a client that goes away, and to answer.

A handler is ``async (runtime, scope, receive) -> Answer``: it reads what it needs from the
scope, the body with ``relay.web.read_body``, and returns the status, the JSON body and any
extra headers. ``Endpoint`` sends that answer once. A client that disconnects mid-body (or
sends a broken chunked body) raises ``ClientDisconnect`` in ``read_body``: there is nobody to
answer, so nothing is sent and nothing is logged as an error. A bug in a handler is logged
with its traceback and answered with a JSON 500 that says nothing was accepted. Every 5xx
answer (500, or 503 when the spool cannot commit) is counted in
``relay_ingest_failures_total{endpoint,status}``.

A body must arrive whole within ``limits.body_seconds`` of the request: a client that sends
it slowly or stops halfway (slowloris) gets a 408 with ``Connection: close``, whatever the
server's own timeouts are (``receive`` is given a deadline: handlers read as before).

No middleware, ``Request`` or ``Response`` objects: the browser endpoint carries every page
view of every visitor (``benchmarks/README.md`` measured what Starlette's objects cost).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from relay.observe.log import LOG
from relay.web import (
    BodyTimeout,
    Problem,
    RawHeaders,
    date_and_server,
    send_json,
    with_deadline,
)

if TYPE_CHECKING:
    from relay.runtime import Runtime

Answer = tuple[int, Any, RawHeaders]  # status, JSON body, extra headers
Handler = Callable[["Runtime", Scope, Receive], Awaitable[Answer]]
# A store the request needs cannot be reached (the state store on Redis, mostly): nothing was
# accepted, and the client may retry, as with a spool that cannot commit.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)


def problem(p: Problem) -> Answer:
    return p.status, {"error": p.message}, p.raw_headers()


class Endpoint:
    """An ingest endpoint: ``POST`` only (anything else is a 405), answered as JSON. With
    ``stamp``, the answer carries the relay's ``Date`` and ``Server`` itself (``relay serve``
    runs the browser endpoint outside ``with_date_and_server``)."""

    def __init__(self, runtime: Runtime, handler: Handler, *, stamp: bool = False) -> None:
        self.rt = runtime
        self.handler = handler
        self.stamp = stamp
        self.name = getattr(handler, "__name__", "ingest")  # browser, webhook, segment

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            answer: Answer = (405, {"error": "method not allowed; use POST"}, [(b"allow", b"POST")])
        else:
            try:
                await self.rt.ensure_started()
                seconds = self.rt.engine.rules.relay.limits.body_seconds
                answer = await self.handler(self.rt, scope, with_deadline(receive, seconds))
            except ClientDisconnect:  # no one to answer
                return
            except UNREACHABLE as exc:
                LOG.error("POST %s: a store is unreachable, answering 503: %s",
                          scope.get("path", "?"), type(exc).__name__)
                answer = (503, {"error": "state store unreachable; nothing was accepted, retry"
                                " later"}, [(b"retry-after", b"5")])
            except BodyTimeout:
                answer = (408, {"error": f"the body did not arrive within {seconds} s; send it"
                                " whole, without pauses"}, [(b"connection", b"close")])
            except Exception:
                LOG.exception("POST %s failed", scope.get("path", "?"))
                answer = (500, {"error": "internal error; nothing was accepted"}, [])
            if answer[0] >= 500:
                self.rt.metrics.ingest_failures.labels(self.name, str(answer[0])).inc()
        if self.stamp:
            status, body, headers = answer
            answer = status, body, [*headers, *date_and_server([])]
        await send_json(send, *answer)
