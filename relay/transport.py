"""The relay's outgoing HTTP: one ``aiohttp.ClientSession`` per process, with two faces.

- ``RelayTransport``, the httpx API over it (an ``httpx.AsyncBaseTransport``): the deliveries
  and the forget calls go through ``Runtime.client``, and tests replace it with
  ``httpx.MockTransport``. About a ninth of the CPU per request of httpx's own transport
  (benchmarks/transport.py).
- ``Sender``, the proxy's own narrow interface: ``send(method, url, headers, body, timeout)``
  gives an ``Answer`` (status, raw header list, ``complete()``, ``chunks()``, ``aclose()``).
  ``AiohttpSender`` implements it straight on the same session (one pool for the process),
  without building httpx requests and responses: those cost a proxied hit more CPU than the
  whole aiohttp exchange. ``HttpxSender`` implements it over any ``httpx.AsyncClient``: the
  in-process proxy tests' ``MockTransport``, or an embedding app's own transport.

Both faces share the code below (``_open``) and behave as httpx's own transport did for the
relay:

- no cookie is ever stored (one client carries every user's requests), no header is added
  but ``Host`` and the body's framing (no ``User-Agent``, ``Accept`` or ``Accept-Encoding``
  of the client's own; the httpx face sends what httpx put on the request), no body is
  decompressed, no redirect followed, and the pool is bounded as ``limits`` says; header
  lines and fields of an answer may be 16 KiB (h11's bound, not aiohttp's 8190); a
  credential in the URL (``https://user:pw@host/``) is sent as ``Authorization: Basic``;
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
  aiohttp lacks: the clock runs while a chunk of a streamed body waits to be taken by the
  upstream), and an exception of the request body's own stream (a body over ``max_body``,
  a body that timed out, a client gone) as itself.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from typing import Protocol

import aiohttp
import httpx
import yarl

MAX_HEADER_BYTES = 16 * 1024  # per line and per field: h11's bound, not aiohttp's 8190
CHUNK = 64 * 1024
# aiohttp adds these when the request lacks them; httpx already set the ones it means to send.
SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")

Body = bytes | AsyncIterable[bytes] | None
HeaderList = Sequence[tuple[str, str]]


class Answer(Protocol):
    """An upstream's answer as the proxy reads it. ``headers``: the raw list, names in
    lower case, values as sent (latin-1). ``complete()`` is the whole body when it has
    already arrived (a 204, a small answer read with its head), else None: nothing waits.
    ``chunks()`` reads it raw as it arrives (never decoded); ``aclose()`` gives the
    connection back to the pool (read in full) or closes it."""

    status: int
    headers: list[tuple[str, str]]

    def complete(self) -> bytes | None: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class Sender(Protocol):
    """The proxy's upstream client: one request, its body ``bytes``, an async iterable of
    chunks (streamed) or None, ``timeout`` seconds for connecting, for the pool, between two
    reads of the answer and for each chunk of the body to be taken. Raises httpx's
    ``TransportError`` classes, or the body's own exception."""

    async def send(self, method: str, url: httpx.URL, headers: HeaderList, body: Body,
                   timeout: float) -> Answer: ...


class _Body:
    """A streamed request body as aiohttp pulls it. Records its own exception; gives the
    upstream ``write`` seconds to take each chunk (``stuck`` is rescheduled around it); and
    reads each chunk in a task of its own, so that when aiohttp stops pulling (the upstream's
    answer came in full, so aiohttp cancels its writer) the rest can still be read
    (``drain``) and a body that then fails is the client's error, not the upstream's answer."""

    def __init__(self, inner: AsyncIterable[bytes], stuck: asyncio.Timeout,
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


async def _open(
    session: aiohttp.ClientSession,
    method: str,
    url: yarl.URL,
    headers: HeaderList,
    body: Body,
    timeout: aiohttp.ClientTimeout,
    write: float | None,
    request: httpx.Request | None = None,
) -> aiohttp.ClientResponse:
    """One request on ``session``, both faces' common path: the answer once its head has
    arrived and the body has been sent in full; errors as httpx's (``request`` goes on them).
    ``bytes`` go out with the head; an iterable is streamed (aiohttp frames it: chunked, or
    as the ``Content-Length`` given)."""
    if body is None or isinstance(body, bytes):
        try:
            return await session.request(
                method, url, headers=headers, data=body or None, allow_redirects=False,
                timeout=timeout,
            )
        except aiohttp.ClientError as exc:
            raise _httpx_error(exc, request) from exc
    tracker = aiohttp.UploadTracker()
    streamed: _Body | None = None
    try:
        async with asyncio.timeout(None) as stuck:
            streamed = _Body(body, stuck, write)
            response = await session.request(
                method, url,
                headers=[(n, v) for n, v in headers if n.lower() != "transfer-encoding"],
                data=streamed.chunks(), allow_redirects=False, timeout=timeout,
                upload_tracker=tracker,
            )
            await _sent(tracker, streamed, response)
    except TimeoutError as exc:  # only ``stuck``'s: aiohttp's own are ClientErrors
        raise httpx.WriteTimeout(
            f"request body not taken within {write}s", request=request
        ) from exc
    except aiohttp.ClientError as exc:
        if streamed is not None and not streamed.done and streamed.error is None:
            # The upstream failed while the body still arrived: a body that then fails
            # (stalls, grows too large, its client gone) is the client's error.
            with contextlib.suppress(Exception):
                await streamed.drain()
        if streamed is not None and streamed.error is not None:
            raise streamed.error from None
        raise _httpx_error(exc, request) from exc
    finally:
        if streamed is not None and not streamed.done:
            streamed.cancel()  # no read of the client's body left running
    return response


class _Answer(httpx.AsyncByteStream):
    """An aiohttp response body as httpx's raw stream: read as it arrives, never decoded."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response, self._request = response, request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in _chunks(self._response, self._request):
            yield chunk

    async def aclose(self) -> None:
        self._response.release()  # back to the pool if read in full, else closed


async def _chunks(response: aiohttp.ClientResponse,
                  request: httpx.Request | None) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.content.iter_chunked(CHUNK):
            yield chunk
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _httpx_error(exc, request) from exc


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
        body: Body
        try:
            body = request.content
        except httpx.RequestNotRead:  # streamed
            assert isinstance(request.stream, httpx.AsyncByteStream)
            body = request.stream
        # userinfo is httpx's Authorization header already; aiohttp refuses both
        url = _aiohttp_url(request.url.copy_with(username=None, password=None)
                           if request.url.userinfo else request.url)
        response = await _open(
            self.session(), request.method, url, request.headers.multi_items(), body,
            _client_timeout(timeout.get("connect"), timeout.get("read"), timeout.get("pool")),
            timeout.get("write"), request,
        )
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


class AiohttpSender:
    """``Sender`` straight on a ``RelayTransport``'s session: what the proxy uses in
    production, sharing the deliveries' pool."""

    def __init__(self, transport: RelayTransport) -> None:
        self._transport = transport

    async def send(self, method: str, url: httpx.URL, headers: HeaderList, body: Body,
                   timeout: float) -> Answer:
        if url.userinfo:  # as httpx does it: Basic auth from the URL, the URL without it
            credential = f"{url.username}:{url.password}".encode()
            headers = [*((n, v) for n, v in headers if n.lower() != "authorization"),
                       ("authorization", "Basic " + base64.b64encode(credential).decode())]
            url = url.copy_with(username=None, password=None)
        response = await _open(self._transport.session(), method, _aiohttp_url(url), headers,
                               body, _client_timeout(timeout, timeout, timeout), timeout)
        return _AiohttpAnswer(response)


class _AiohttpAnswer:
    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers = _headers(response.raw_headers)

    def complete(self) -> bytes | None:
        content = self._response.content
        if content.is_eof() and content.exception() is None:
            return content.read_nowait()
        return None

    def chunks(self) -> AsyncIterator[bytes]:
        return _chunks(self._response, None)

    async def aclose(self) -> None:
        self._response.release()  # back to the pool if read in full, else closed


class HttpxSender:
    """``Sender`` over an ``httpx.AsyncClient`` (its transport a ``MockTransport`` in tests).
    The request is built as ``AiohttpSender`` sends it: none of the client's default
    headers, no cookie of its jar, no redirect followed."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def send(self, method: str, url: httpx.URL, headers: HeaderList, body: Body,
                   timeout: float) -> Answer:
        request = httpx.Request(method, url, headers=list(headers), content=body,
                                extensions={"timeout": httpx.Timeout(timeout).as_dict()})
        response = await self._client.send(request, stream=True, follow_redirects=False)
        return _HttpxAnswer(response)


class _HttpxAnswer:
    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers = _headers(response.headers.raw)

    def complete(self) -> bytes | None:
        return None  # an httpx transport's stream says nothing of what has arrived

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.aiter_raw()

    async def aclose(self) -> None:
        await self._response.aclose()


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """An answer's raw header lines as ``Answer.headers``: names in lower case, in order."""
    return [(n.decode("latin-1").lower(), v.decode("latin-1")) for n, v in raw]


def _aiohttp_url(url: httpx.URL) -> yarl.URL:
    """httpx's URL, already encoded and checked, as aiohttp sends it: byte for byte, not
    quoted again."""
    return yarl.URL(str(url), encoded=True)


@functools.lru_cache(maxsize=256)
def _client_timeout(connect: float | None, read: float | None,
                    pool: float | None) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(sock_connect=connect, sock_read=read, connect=pool)


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


def _httpx_error(exc: BaseException, request: httpx.Request | None) -> httpx.TransportError:
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
