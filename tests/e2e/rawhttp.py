"""HTTP/1.1 by hand, over a plain socket, for requests no client library sends: bytes that
are not valid headers, bodies that trickle in or stall, chunked bodies without an end.

``exchange`` sends bytes and reads the answer; ``Answer`` is its status line, headers (the
raw lines, so a split response would show) and body. A read that sees nothing for
``idle`` seconds is a hang and fails the test, so nothing here waits forever.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

HANG = 60.0  # seconds without a byte from the relay: it hangs (a generous bound, not a timing)


class Hang(AssertionError):
    pass


@dataclass
class Answer:
    status: int | None  # None: the connection closed before a status line
    header_lines: list[bytes]
    body: bytes
    raw: bytes

    def header(self, name: str) -> list[str]:
        key = name.lower().encode()
        return [line.partition(b":")[2].strip().decode("latin-1") for line in self.header_lines
                if line.partition(b":")[0].strip().lower() == key]


@contextlib.contextmanager
def connect(port: int, timeout: float = HANG) -> Iterator[socket.socket]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        yield sock
    finally:
        sock.close()


def request_head(method: str, path: str, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_answer(sock: socket.socket) -> Answer:
    """One response (or what came before the connection closed). Fails with ``Hang`` when
    the relay sends nothing for ``HANG`` seconds."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = _recv(sock)
        if not chunk:
            return _parse(data, closed=True)
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    answer = _parse(data, closed=False)
    length = answer.header("content-length")
    if length:
        while len(body) < int(length[0]):
            chunk = _recv(sock)
            if not chunk:
                break
            body += chunk
    elif "chunked" in ",".join(answer.header("transfer-encoding")):
        while not body.endswith(b"0\r\n\r\n"):
            chunk = _recv(sock)
            if not chunk:
                break
            body += chunk
    answer.body = body
    answer.raw = head + b"\r\n\r\n" + body
    return answer


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except TimeoutError as exc:
        raise Hang(f"the relay sent nothing for {HANG:g}s") from exc
    except ConnectionResetError:
        return b""


def _parse(data: bytes, closed: bool) -> Answer:
    if not data.startswith(b"HTTP/1."):
        return Answer(None, [], b"", data)
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    return Answer(int(status_line.split()[1]), lines, body, data)


def exchange(port: int, data: bytes) -> Answer:
    """Send ``data`` (a whole request, or several) and read one answer."""
    with connect(port) as sock:
        sock.sendall(data)
        return read_answer(sock)


def closed_within(sock: socket.socket, bound: float, seen: bytearray | None = None) -> bool:
    """True when the peer closes ``sock`` (or answers and closes) within ``bound`` seconds;
    what it sends before closing is added to ``seen`` when given."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        if not chunk:
            return True
        if seen is not None:
            seen += chunk
    return False
