"""The relay's outgoing HTTP: the httpx API over aiohttp (``httpx_aiohttp``), about a ninth of
the CPU per request of httpx's own transport (benchmarks/transport.py).

Configured to behave as the httpx transport did for the relay: no cookie is ever stored (one
client carries every user's requests), no header is added that httpx did not put on the
request (no aiohttp ``User-Agent``, ``Accept``, ``Accept-Encoding`` or ``Content-Type``), no
body is decompressed, and the pool is bounded as ``limits`` says. Errors come out as httpx's:
a refused or reset connection as an ``httpx.NetworkError`` (502 on the proxy), a timeout as an
``httpx.TimeoutException`` (504), and an exception of the request body's own stream (a body
over ``max_body``, a client that went away) as itself."""

from __future__ import annotations

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
        try:
            return await super().handle_async_request(request)
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


def _body_error(exc: BaseException) -> BaseException | None:
    """The request body stream's own exception (``BodyTooLarge``, ``ClientDisconnect``, ...),
    which aiohttp wraps in a ``ClientConnectionError``, if that is what ``exc`` comes from."""
    cause = exc.__cause__
    while cause is not None:
        if not isinstance(cause, aiohttp.ClientError | OSError | TimeoutError):
            return cause
        cause = cause.__cause__
    return None
