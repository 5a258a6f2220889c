"""The relay's outgoing HTTP: the httpx API over aiohttp (``httpx_aiohttp``), about a ninth of
the CPU per request of httpx's own transport (benchmarks/transport.py).

Configured to behave as the httpx transport did for the relay: no cookie is ever stored (one
client carries every user's requests), no header is added that httpx did not put on the
request (no aiohttp ``User-Agent``, ``Accept``, ``Accept-Encoding`` or ``Content-Type``), no
body is decompressed, and the pool is bounded as ``limits`` says. Errors come out as httpx's:
a refused or reset connection as an ``httpx.NetworkError`` (502 on the proxy), a timeout as an
``httpx.TimeoutException`` (504; a request body the upstream stops taking for the ``write``
timeout too), and an exception of the request body's own stream (a body
over ``max_body``, a client that went away) as itself."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

# aiohttp adds these when the request lacks them; httpx already set the ones it means to send.
SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
MAX_HEADER_BYTES = 16 * 1024  # per line and per field: h11's bound, not aiohttp's 8190


class RelayTransport(AiohttpTransport):
    """``AiohttpTransport`` with the relay's session and httpx's error classes."""

    def __init__(self, limits: httpx.Limits) -> None:
        super().__init__(limits=limits, client=self._session)  # SSL_CERT_FILE honoured

    def _session(self) -> aiohttp.ClientSession:  # made on first use, inside the event loop
        connector = aiohttp.TCPConnector(
            limit=self.limits.max_connections or 0,
            keepalive_timeout=self.limits.keepalive_expiry or 0,
            ssl=self.ssl_context,
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=SKIP_AUTO_HEADERS,
            auto_decompress=False,
            trust_env=False,
            max_line_size=MAX_HEADER_BYTES,
            max_field_size=MAX_HEADER_BYTES,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        write = request.extensions.get("timeout", {}).get("write")
        try:
            async with asyncio.timeout(None) as stuck:
                if write is not None and isinstance(request.stream, httpx.AsyncByteStream):
                    request.stream = _Watched(request.stream, stuck, write)
                return await super().handle_async_request(request)
        except TimeoutError as exc:  # only ``stuck``: the transport's own are httpx's
            raise httpx.WriteTimeout(f"request body not taken within {write}s",
                                     request=request) from exc
        except httpx.TransportError as exc:
            own = _body_error(exc)
            if own is not None:
                raise own from None
            cause = exc.__cause__
            if isinstance(exc, httpx.TimeoutException) and not isinstance(cause, TimeoutError):
                # httpx_aiohttp maps every aiohttp.ClientConnectionError to ConnectTimeout
                kind: type[httpx.NetworkError] = (
                    httpx.ConnectError
                    if isinstance(cause, aiohttp.ClientConnectorError)
                    else httpx.ReadError
                )
                raise kind(str(exc), request=request) from cause
            raise
        except aiohttp.ClientError as exc:  # one httpx_aiohttp leaves as it is
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc


class _Watched(httpx.AsyncByteStream):
    """A request body that gives aiohttp ``write`` seconds to send each chunk: aiohttp has no
    write timeout, and an upstream that stops reading would hold the request for as long as
    it likes. The clock runs from a chunk handed over until aiohttp asks for the next one, not
    while the chunk is awaited from its source (a slow browser has its own deadline)."""

    def __init__(self, inner: httpx.AsyncByteStream, stuck: asyncio.Timeout, write: float):
        self._inner, self._stuck, self._write = inner, stuck, write

    async def __aiter__(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        async for chunk in self._inner:
            self._set(loop.time() + self._write)
            yield chunk
            self._set(None)

    def _set(self, when: float | None) -> None:
        with contextlib.suppress(RuntimeError):  # answered before its body was sent: no clock
            self._stuck.reschedule(when)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _body_error(exc: BaseException) -> BaseException | None:
    """The request body stream's own exception (``BodyTooLarge``, ``ClientDisconnect``, ...),
    which aiohttp wraps in a ``ClientConnectionError``, if that is what ``exc`` comes from."""
    cause = exc.__cause__
    while cause is not None:
        if not isinstance(cause, aiohttp.ClientError | OSError | TimeoutError):
            return cause
        cause = cause.__cause__
    return None
