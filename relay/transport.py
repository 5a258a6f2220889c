"""The relay's outgoing HTTP: the httpx API over aiohttp, about a ninth of the CPU per request
of httpx's own transport (benchmarks/transport.py). The proxy and the deliveries share it
through ``Runtime.client``; tests still replace it with ``httpx.MockTransport``.

It behaves as httpx's own transport did for the relay:

- no cookie is ever stored (one client carries every user's requests), no header is added
  that httpx did not put on the request, no body is decompressed, no redirect followed, and
  the pool is bounded as ``limits`` says;
- the answer is returned once the request body has been sent in full, as httpcore does. An
  upstream may answer while the body is still arriving from the browser (aiohttp reads the
  answer as soon as it comes); the relay still waits for the body to end, so a body that
  stalls is the browser's 408, one over ``max_body`` its 413, a browser gone its 400, and
  never the upstream's early answer (or its failure) for a request it did not get in full.
  A body that completes lets the upstream's early answer pass (or its failure be a 502),
  as with httpcore;
- errors come out as httpx's: a refused connection as ``httpx.ConnectError``, a reset or a
  broken answer as ``httpx.ReadError`` / ``httpx.RemoteProtocolError`` (502 on the proxy), a
  timeout as an ``httpx.TimeoutException`` (504; ``connect``, ``read``, and ``write``, which
  aiohttp lacks: the clock runs while a chunk of the body waits to be taken by the
  upstream), and an exception of the request body's own stream (a body over ``max_body``,
  a body that timed out, a client gone) as itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import httpx

MAX_HEADER_BYTES = 16 * 1024  # per line and per field: h11's bound, not aiohttp's 8190
CHUNK = 64 * 1024
# aiohttp adds these when the request lacks them; httpx already set the ones it means to send.
SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


class _Body:
    """A streamed request body as aiohttp pulls it. Records its own exception; gives the
    upstream ``write`` seconds to take each chunk (``stuck`` is rescheduled around it); and
    reads each chunk in a task of its own, so that when aiohttp stops pulling (the upstream's
    answer came in full, so aiohttp cancels its writer) the rest can still be read
    (``drain``) and a body that then fails is the client's error, not the upstream's answer."""

    def __init__(self, inner: httpx.AsyncByteStream, stuck: asyncio.Timeout,
                 write: float | None) -> None:
        self._inner, self._stuck, self._write = aiter(inner), stuck, write
        self._step: asyncio.Task[bytes | None] | None = None
        self.error: BaseException | None = None
        self.done = False

    async def _next(self) -> bytes | None:
        try:
            return await anext(self._inner)
        except StopAsyncIteration:
            return None

    async def _pull(self) -> bytes | None:
        if self._step is None:
            self._step = asyncio.ensure_future(self._next())
        try:
            chunk = await asyncio.shield(self._step)
        except asyncio.CancelledError:
            raise  # aiohttp's writer cancelled: the step goes on, for ``drain``
        except Exception as exc:
            self._step, self.error = None, exc
            raise
        self._step = None
        if chunk is None:
            self.done = True
        return chunk

    async def chunks(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        while (chunk := await self._pull()) is not None:
            if self._write is not None:
                self._set(loop.time() + self._write)
            yield chunk
            self._set(None)

    async def drain(self) -> None:
        """Read the rest, dropping it (aiohttp no longer sends it)."""
        while await self._pull() is not None:
            pass

    def cancel(self) -> None:
        if self._step is not None:
            self._step.cancel()

    def _set(self, when: float | None) -> None:
        with contextlib.suppress(RuntimeError):  # the request already left the clock's scope
            self._stuck.reschedule(when)


class _Answer(httpx.AsyncByteStream):
    """An aiohttp response body as httpx's raw stream: read as it arrives, never decoded."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response, self._request = response, request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(CHUNK):
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _httpx_error(exc, self._request) from exc

    async def aclose(self) -> None:
        self._response.release()  # back to the pool if read in full, else closed


class RelayTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` over one ``aiohttp.ClientSession`` (made on first use,
    inside the event loop)."""

    def __init__(self, limits: httpx.Limits) -> None:
        self.limits = limits
        self._ssl = httpx.create_ssl_context()  # certifi, or SSL_CERT_FILE / SSL_CERT_DIR
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.limits.max_connections or 0,
                keepalive_timeout=self.limits.keepalive_expiry or 0,
                ssl=self._ssl,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=SKIP_AUTO_HEADERS,
                auto_decompress=False,
                trust_env=False,
                max_line_size=MAX_HEADER_BYTES,
                max_field_size=MAX_HEADER_BYTES,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        headers = request.headers.multi_items()
        tracker = aiohttp.UploadTracker()
        body: _Body | None = None
        try:
            async with asyncio.timeout(None) as stuck:
                data: bytes | AsyncIterator[bytes] | None
                try:
                    data = request.content or None
                except httpx.RequestNotRead:  # streamed: aiohttp frames it (chunked or not)
                    assert isinstance(request.stream, httpx.AsyncByteStream)
                    body = _Body(request.stream, stuck, timeout.get("write"))
                    data = body.chunks()
                    headers = [(n, v) for n, v in headers if n.lower() != "transfer-encoding"]
                response = await self.session().request(
                    request.method,
                    # userinfo is httpx's Authorization header already; aiohttp refuses both
                    str(request.url.copy_with(username=None, password=None)),
                    headers=headers,
                    data=data,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(
                        sock_connect=timeout.get("connect"),
                        sock_read=timeout.get("read"),
                        connect=timeout.get("pool"),
                    ),
                    upload_tracker=tracker,
                )
                if body is not None:
                    await _sent(tracker, body, response)
        except TimeoutError as exc:  # only ``stuck``'s: aiohttp's own are ClientErrors
            raise httpx.WriteTimeout(
                f"request body not taken within {timeout.get('write')}s", request=request
            ) from exc
        except aiohttp.ClientError as exc:
            if body is not None and not body.done and body.error is None:
                # The upstream failed while the body still arrived: a body that then fails
                # (stalls, grows too large, its client gone) is the client's error.
                with contextlib.suppress(Exception):
                    await body.drain()
            if body is not None and body.error is not None:
                raise body.error from None
            raise _httpx_error(exc, request) from exc
        finally:
            if body is not None and not body.done:
                body.cancel()  # no read of the client's body left running
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_Answer(response, request),
            request=request,
            extensions={"http_version": b"HTTP/1.1",
                        "reason_phrase": (response.reason or "").encode("latin-1")},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


async def _sent(tracker: aiohttp.UploadTracker, body: _Body,
                response: aiohttp.ClientResponse) -> None:
    """Wait until the body of a request already answered has ended. If it ends in the body's
    own exception, the answer is closed and that exception raised. When aiohttp stopped
    sending it (the answer came in full, or the upstream hung up), the rest is read and
    dropped, so that a body that stalls or grows too large still fails."""
    try:
        await asyncio.shield(tracker.upload_complete)
    except asyncio.CancelledError:  # the write clock, or the caller gave up
        response.close()
        raise
    except Exception:
        try:
            if body.error is None and not body.done:
                await body.drain()
        except BaseException:
            response.close()
            raise
        if body.error is not None:
            response.close()
            raise body.error from None


def _httpx_error(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    message = str(exc) or type(exc).__name__
    kind: type[httpx.TransportError]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        kind = httpx.ConnectTimeout
    elif isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        kind = httpx.ReadTimeout
    elif isinstance(exc, aiohttp.ClientConnectorError):
        kind = httpx.ConnectError
    elif isinstance(exc, aiohttp.InvalidURL):
        kind = httpx.UnsupportedProtocol
    elif isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError):
        kind = httpx.RemoteProtocolError
    else:  # a reset (ClientOSError), a body cut short (ClientPayloadError), ...
        kind = httpx.ReadError
    return kind(message, request=request)
