"""The relay's outgoing HTTP over real loopback sockets, through both faces of
``relay.transport``: the httpx API (``RelayTransport``, the deliveries') and the proxy's
``AiohttpSender``. httpx's error classes for refused, reset and silent upstreams, no cookie kept,
no header added, bodies passed raw, the URL sent as checked, and a request body's own exception
coming out as itself."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest

from relay.runtime import cookieless_jar
from relay.transport import MAX_HEADER_BYTES, AiohttpSender, RelayTransport
from tests.e2e.relayproc import free_port

WAIT = 10.0  # generous: the handlers end as soon as the client hangs up
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
LIMITS = httpx.Limits(max_connections=4, max_keepalive_connections=2)


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=RelayTransport(LIMITS), limits=LIMITS,
                             cookies=cookieless_jar(), timeout=5.0)


@dataclass
class Got:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    whole: bytes | None = None  # the sender's ``complete()`` once the head had arrived


Send = Callable[..., Awaitable[Got]]


@pytest.fixture(params=["httpx", "sender"])
async def send(request: pytest.FixtureRequest) -> AsyncIterator[Send]:
    """One request through one face: ``await send(method, url, body=..., timeout=...,
    write=...)`` (``write``: the httpx face's write timeout; the sender has one timeout for
    all, ``write`` when given)."""
    transport = RelayTransport(LIMITS)
    if request.param == "httpx":
        client = httpx.AsyncClient(transport=transport, limits=LIMITS, cookies=cookieless_jar())

        async def via_httpx(method: str, url: str, body: bytes | AsyncIterable[bytes] | None
                            = None, timeout: float = 5.0, write: float | None = None) -> Got:
            request = httpx.Request(method, url, content=body)
            request.extensions["timeout"] = httpx.Timeout(
                timeout, write=write if write is not None else timeout).as_dict()
            response = await client.send(request, stream=True)
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
            await response.aclose()
            return Got(response.status_code,
                       [(n.decode("latin-1"), v.decode("latin-1"))
                        for n, v in response.headers.raw], raw)

        try:
            yield via_httpx
        finally:
            await client.aclose()
        return
    sender = AiohttpSender(transport)

    async def via_sender(method: str, url: str, body: bytes | AsyncIterable[bytes] | None = None,
                         timeout: float = 5.0, write: float | None = None) -> Got:
        answer = await sender.send(method, httpx.URL(url), [], body,
                                   write if write is not None else timeout)
        whole = answer.complete()
        raw = whole if whole is not None else b"".join([c async for c in answer.chunks()])
        await answer.aclose()
        return Got(answer.status, answer.headers, raw, whole)

    try:
        yield via_sender
    finally:
        await transport.aclose()


async def _head(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":", 1)[1]))
    return head


@contextlib.asynccontextmanager
async def _serve(handler: Handler) -> AsyncIterator[str]:
    """A loopback server running ``handler`` per connection; each connection closed, and every
    handler finished, before it is left."""
    running: set[asyncio.Task[None]] = set()

    async def each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        running.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(each, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await asyncio.wait_for(asyncio.gather(*running, return_exceptions=True), WAIT)
        await server.wait_closed()


def _answer(body: bytes, *headers: str) -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers)
    return (f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


async def test_a_refused_connection_is_a_connect_error(send: Send) -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(httpx.ConnectError):
        await send("GET", f"http://127.0.0.1:{port}/")


async def test_a_reset_is_a_network_error_not_a_timeout(send: Send) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _head(reader)

    async with _serve(hang_up) as url:
        with pytest.raises(httpx.TransportError) as caught:
            await send("GET", url)
    assert isinstance(caught.value, httpx.NetworkError | httpx.RemoteProtocolError)
    assert not isinstance(caught.value, httpx.TimeoutException)


async def test_a_silent_upstream_is_a_timeout(send: Send) -> None:
    heard = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _head(reader)
        heard.set()
        await reader.read()  # until the client gives up

    async with _serve(silent) as url:
        with pytest.raises(httpx.TimeoutException):
            await send("GET", url, timeout=0.5)
    assert heard.is_set()


async def test_no_cookie_is_kept_and_no_header_is_added(send: Send) -> None:
    heads: list[bytes] = []

    async def cookie_setter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(3):  # then it hangs up: the test need not wait for the pool
            heads.append(await _head(reader))
            writer.write(_answer(b"ok", "Set-Cookie: uid=someone; Path=/"))
            await writer.drain()

    async with _serve(cookie_setter) as url:
        for _ in range(2):
            assert (await send("POST", url + "/in", body=b"{}")).status == 200
        assert (await send("GET", url + "/in")).status == 200
    assert len(heads) == 3
    for head in heads:
        names = {line.split(b":", 1)[0].lower() for line in head.split(b"\r\n")[1:] if line}
        expected = {b"host"} if head.startswith(b"GET") else {b"host", b"content-length"}
        assert names == expected, head


async def test_the_url_is_sent_as_checked(send: Send) -> None:
    """Byte for byte as httpx parsed (and the proxy checked) it: not quoted again, no
    escape undone (``%2F`` in a query value stays, ``%41`` is not made ``A``)."""
    lines: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines.append((await _head(reader)).split(b"\r\n", 1)[0])
        writer.write(_answer(b"ok"))
        await writer.drain()

    target = "/a%41b/%7e~;x=1?q=%41&r=a%2Fb&s=x%20y&t=%E2%82%AC"
    async with _serve(record) as url:
        assert (await send("GET", url + target)).status == 200
    assert lines == [f"GET {target} HTTP/1.1".encode()]


async def test_a_gzipped_body_passes_raw(send: Send) -> None:
    packed = gzip.compress(b"console.log(1);" * 100)

    async def gzipped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _head(reader)
        writer.write(_answer(packed, "Content-Encoding: gzip"))
        await writer.drain()

    async with _serve(gzipped) as url:
        got = await send("GET", url)
    assert ("content-encoding", "gzip") in [(n.lower(), v) for n, v in got.headers]
    assert got.body == packed


async def test_a_header_of_16_kib_is_read(send: Send) -> None:
    value = "v" * (MAX_HEADER_BYTES - 100)  # over aiohttp's own 8190

    async def big_header(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _head(reader)
        writer.write(_answer(b"ok", f"X-Big: {value}"))
        await writer.drain()

    async with _serve(big_header) as url:
        got = await send("GET", url)
    assert ("x-big", value) in [(n.lower(), v) for n, v in got.headers]


class Refused(Exception):
    pass


async def test_a_request_body_error_comes_out_as_itself(send: Send) -> None:
    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * 1024
        raise Refused("over max_body")

    async with _serve(sink) as url:
        with pytest.raises(Refused):
            await send("POST", url, body=body())


async def test_an_upstream_that_stops_taking_the_body_is_a_write_timeout(send: Send) -> None:
    released = asyncio.Event()

    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await released.wait()  # reads no more: the client's writes fill the socket buffers

    async def body() -> AsyncIterator[bytes]:
        for _ in range(1024):  # 64 MiB: far more than loopback buffers hold
            yield b"x" * 65536

    async with _serve(deaf) as url:
        try:
            with pytest.raises(httpx.WriteTimeout):
                await send("POST", url, body=body(), timeout=WAIT, write=0.5)
        finally:
            released.set()


async def test_an_upstream_answering_before_the_body_is_sent_is_answered(send: Send) -> None:
    async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n"
                     b"Connection: close\r\n\r\n")
        await writer.drain()

    async def body() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b"x" * 65536
            await asyncio.sleep(0)

    async with _serve(early) as url:
        got = await send("POST", url, body=body(), timeout=WAIT, write=0.5)
    assert got.status == 413


async def test_an_early_answer_waits_for_the_body_and_its_failure_wins(send: Send) -> None:
    """The upstream answers at once, without reading the body (as the e2e stand-in does with
    a chunked body); the body then fails (the browser stalled): the body's own exception,
    not the upstream's early answer."""
    answered = asyncio.Event()

    async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(_answer(b"early"))
        await writer.drain()
        answered.set()
        await reader.read()  # until the client hangs up

    async def body() -> AsyncIterator[bytes]:
        yield b'{"a":'
        await answered.wait()
        await asyncio.sleep(0.2)  # the answer is in the client's hands by now
        raise Refused("the body did not arrive in time")

    async with _serve(early) as url:
        with pytest.raises(Refused):
            await send("POST", url, body=body())


async def test_an_early_answer_is_returned_once_the_body_is_sent(send: Send) -> None:
    answered = asyncio.Event()
    bodies: list[bytes] = []
    sent: list[str] = []

    async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(_answer(b"early"))
        await writer.drain()
        answered.set()
        bodies.append(await reader.read())

    async def body() -> AsyncIterator[bytes]:
        yield b'{"a":'
        await answered.wait()
        await asyncio.sleep(0.2)
        yield b"1}"
        sent.append("all")

    async with _serve(early) as url:
        got = await send("POST", url, body=body())
    assert sent == ["all"]  # not returned before the body was sent
    assert got.status == 200 and got.body == b"early"


async def test_an_upstream_failing_while_the_body_stalls_is_the_body_error(send: Send) -> None:
    """As the e2e stand-in does with a chunked body: it answers at once, then takes the body's
    first chunk for a request line and writes garbage back. The body then fails: its error."""
    async def garbled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(_answer(b"early") + b"<html>Bad request syntax</html>")
        await writer.drain()

    async def body() -> AsyncIterator[bytes]:
        yield b'{"a":'
        await asyncio.sleep(0.3)
        raise Refused("the body did not arrive in time")

    async with _serve(garbled) as url:
        with pytest.raises(Refused):
            await send("POST", url, body=body())


async def test_a_credential_in_the_url_is_sent_as_basic_auth(send: Send) -> None:
    heads: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await _head(reader))
        writer.write(_answer(b"ok"))
        await writer.drain()

    async with _serve(record) as url:
        got = await send("POST", url.replace("http://", "http://us%40er:p%3Aw@"), body=b"{}")
    assert got.status == 200
    # us@er:p:w, as httpx encodes it
    assert b"authorization: basic dxnazxi6cdp3" in heads[0].lower()
    assert b"@" not in heads[0].split(b"\r\n", 1)[0]


async def test_the_httpx_client_keeps_no_cookie() -> None:
    async def cookie_setter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _head(reader)
        writer.write(_answer(b"ok", "Set-Cookie: uid=someone; Path=/"))
        await writer.drain()

    async with _serve(cookie_setter) as url, _client() as client:
        assert (await client.get(url)).status_code == 200
        assert len(client.cookies.jar) == 0


# -- the proxy's sender: what it adds to the interface -------------------------------------


@pytest.fixture
async def sender() -> AsyncIterator[AiohttpSender]:
    transport = RelayTransport(LIMITS)
    try:
        yield AiohttpSender(transport)
    finally:
        await transport.aclose()


async def test_a_small_answer_is_complete_with_its_head(sender: AiohttpSender) -> None:
    async def small(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _head(reader)
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await _head(reader)
        writer.write(_answer(b"hello"))
        await writer.drain()

    async with _serve(small) as url:
        for expected in (b"", b"hello"):
            answer = await sender.send("POST", httpx.URL(url), [], b"{}", 5.0)
            assert answer.complete() == expected
            await answer.aclose()


async def test_an_answer_still_arriving_streams(sender: AiohttpSender) -> None:
    first = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
        await writer.drain()
        await first.wait()
        writer.write(b"world")
        await writer.drain()

    async with _serve(slow) as url:
        answer = await sender.send("GET", httpx.URL(url), [], None, 5.0)
        assert answer.complete() is None
        chunks = answer.chunks()
        assert await anext(chunks) == b"hello"
        first.set()
        assert b"".join([chunk async for chunk in chunks]) == b"world"
        await answer.aclose()


async def test_the_sender_reuses_its_connections(sender: AiohttpSender) -> None:
    connections: list[int] = []

    async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        for _ in range(10):
            await _head(reader)
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()

    async with _serve(keep_alive) as url:
        for _ in range(10):
            answer = await sender.send("POST", httpx.URL(url), [("content-length", "2")],
                                       b"{}", 5.0)
            assert answer.status == 204 and answer.complete() == b""
            await answer.aclose()
    assert len(connections) == 1
