"""uvicorn's httptools protocol with the two bounds it lacks: a request head of at most
``max_head`` bytes (431, then the connection is closed), and ``head_timeout`` seconds to send
it, from the connection's first byte or the request's (then the connection is closed). Bare
uvicorn takes a header of any size and waits for a head forever (slowloris)."""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_MESSAGE = b"request head over the limit"
TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; "
             b"charset=utf-8\r\ncontent-length: " + str(len(_MESSAGE)).encode() +
             b"\r\nconnection: close\r\n\r\n" + _MESSAGE)


class HeadTooLarge(Exception):
    pass


def bounded(max_head: int, head_timeout: float) -> type[HttpToolsProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)``."""

    class Bounded(HttpToolsProtocol):
        _head = 0  # bytes of the current request's head so far
        _too_large = False
        _timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._timer is None:
                self._timer = self.loop.call_later(head_timeout, self._slow)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _slow(self) -> None:
            self._timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head = 0
            self._arm()

        def _count(self, size: int) -> None:
            self._head += size
            if self._head > max_head:
                self._too_large = True
                raise HeadTooLarge

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def send_400_response(self, msg: str) -> None:
            if not self._too_large:
                super().send_400_response(msg)
                return
            self.transport.write(TOO_LARGE)
            self.transport.close()

    return Bounded
