"""The relay's outgoing transport over real loopback sockets: httpx's error classes for refused,
reset and silent upstreams, no cookie kept, no header added, bodies passed raw, and a request
body's own exception coming out as itself."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from relay.runtime import cookieless_jar
from relay.transport import RelayTransport

WAIT = 10.0  # generous: the handlers end as soon as the client hangs up
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _client() -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=2)
    return httpx.AsyncClient(transport=RelayTransport(limits), limits=limits,
                             cookies=cookieless_jar(), timeout=5.0)


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


async def test_a_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    async with _client() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")


async def test_a_reset_is_a_network_error_not_a_timeout() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _head(reader)

    async with _serve(hang_up) as url, _client() as client:
        with pytest.raises(httpx.TransportError) as caught:
            await client.get(url)
    assert isinstance(caught.value, httpx.NetworkError | httpx.RemoteProtocolError)
    assert not isinstance(caught.value, httpx.TimeoutException)


async def test_a_silent_upstream_is_a_timeout() -> None:
    heard = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _head(reader)
        heard.set()
        await reader.read()  # until the client gives up

    async with _serve(silent) as url, _client() as client:
        with pytest.raises(httpx.TimeoutException):
            await client.get(url, timeout=0.5)
    assert heard.is_set()


async def test_no_cookie_is_kept_and_no_header_is_added() -> None:
    heads: list[bytes] = []

    async def cookie_setter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while not reader.at_eof():
            try:
                heads.append(await _head(reader))
            except asyncio.IncompleteReadError:
                break
            writer.write(_answer(b"ok", "Set-Cookie: uid=someone; Path=/"))
            await writer.drain()

    async with _serve(cookie_setter) as url, _client() as client:
        for _ in range(2):
            response = await client.send(httpx.Request("POST", url + "/in", content=b"{}"))
            assert response.status_code == 200
    assert len(heads) == 2
    for head in heads:
        names = {line.split(b":", 1)[0].lower() for line in head.split(b"\r\n")[1:] if line}
        assert names == {b"host", b"content-length"}, head


async def test_a_gzipped_body_passes_raw() -> None:
    packed = gzip.compress(b"console.log(1);" * 100)

    async def gzipped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _head(reader)
        writer.write(_answer(packed, "Content-Encoding: gzip"))
        await writer.drain()

    async with _serve(gzipped) as url, _client() as client:
        request = client.build_request("GET", url)
        response = await client.send(request, stream=True)
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
        await response.aclose()
    assert response.headers["content-encoding"] == "gzip"
    assert raw == packed


class Refused(Exception):
    pass


async def test_a_request_body_error_comes_out_as_itself() -> None:
    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * 1024
        raise Refused("over max_body")

    async with _serve(sink) as url, _client() as client:
        with pytest.raises(Refused):
            await client.post(url, content=body())


async def test_an_upstream_that_stops_taking_the_body_is_a_write_timeout() -> None:
    released = asyncio.Event()

    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await released.wait()  # reads no more: the client's writes fill the socket buffers

    async def body() -> AsyncIterator[bytes]:
        for _ in range(1024):  # 64 MiB: far more than loopback buffers hold
            yield b"x" * 65536

    async with _serve(deaf) as url, _client() as client:
        try:
            with pytest.raises(httpx.WriteTimeout):
                await client.post(url, content=body(), timeout=httpx.Timeout(WAIT, write=0.5))
        finally:
            released.set()


async def test_an_upstream_answering_before_the_body_is_sent_is_answered() -> None:
    async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n"
                     b"Connection: close\r\n\r\n")
        await writer.drain()

    async def body() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b"x" * 65536
            await asyncio.sleep(0)

    async with _serve(early) as url, _client() as client:
        response = await client.post(url, content=body(), timeout=httpx.Timeout(WAIT, write=0.5))
    assert response.status_code == 413


async def test_an_early_answer_waits_for_the_body_and_its_failure_wins() -> None:
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

    async with _serve(early) as url, _client() as client:
        with pytest.raises(Refused):
            await client.post(url, content=body())


async def test_an_early_answer_is_returned_once_the_body_is_sent() -> None:
    answered = asyncio.Event()
    bodies: list[bytes] = []

    async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(_answer(b"early"))
        await writer.drain()
        answered.set()
        bodies.append(await reader.read())

    sent: list[str] = []

    async def body() -> AsyncIterator[bytes]:
        yield b'{"a":'
        await answered.wait()
        await asyncio.sleep(0.2)
        yield b"1}"
        sent.append("all")

    async with _serve(early) as url, _client() as client:
        response = await client.post(url, content=body())
        assert sent == ["all"]  # not returned before the body was sent
        assert response.status_code == 200 and response.content == b"early"


async def test_an_upstream_failing_while_the_body_stalls_is_the_body_error() -> None:
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

    async with _serve(garbled) as url, _client() as client:
        with pytest.raises(Refused):
            await client.post(url, content=body())


async def test_a_credential_in_the_url_is_sent_as_basic_auth() -> None:
    heads: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await _head(reader))
        writer.write(_answer(b"ok"))
        await writer.drain()

    async with _serve(record) as url, _client() as client:
        response = await client.post(url.replace("http://", "http://user:pw@"), content=b"{}")
    assert response.status_code == 200
    assert b"authorization: basic dxnlcjpwdw==" in heads[0].lower()
