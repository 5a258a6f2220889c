"""The core of ``relay serve`` under each of its servers (``--server uvicorn|granian|
hypercorn``; the other e2e tests run the default): events accepted and delivered, the
relay's own ``Date`` and ``Server`` headers only, no access log, the client address as the
connection gives it (the server does not read ``X-Forwarded-For``), a request in flight at
``SIGTERM`` finished and its event kept, and nothing lost to a ``SIGKILL``; a request head
over the limit answered 431, and a connection that never sends its head closed; and each
under the master of ``--workers 2`` (both workers serve, SIGHUP reloads each, SIGTERM stops
all)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import time

import pytest

from .conftest import MakeRelay, MakeVendor
from .load import make_batches, send_batches
from .relayproc import RelayProcess
from .rulesdir import webhook
from .wire import client, metric, page_view, post_browser, scrape, wait_until

SERVERS = ["uvicorn", "granian", "hypercorn"]
EVENTS = 20
LOAD = 400
SETTLE = 0.5  # seconds for the server to read what was sent (not an assertion)
BIG_HEADER = 200_000  # bytes: over relay.cli.servers.MAX_HEAD
SLOW_CLOSED_WITHIN = 40.0  # seconds: the head timeout (or hypercorn's keep-alive) is 5-10 s


def _head(body: bytes) -> bytes:
    return (b"POST /t/e HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"CF-IPCountry: US\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")


def _answer(sock: socket.socket) -> bytes:
    """One HTTP/1.1 answer with a Content-Length body, read whole."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before an answer: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed inside the body"
        rest += chunk
    return head + b"\r\n\r\n" + rest


def _oversized_head(relay: RelayProcess) -> bytes:
    with socket.create_connection(("127.0.0.1", relay.port), timeout=20) as sock:
        with contextlib.suppress(OSError):  # answered and closed before reading it all
            sock.sendall(b"GET /t/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
                         + b"a" * BIG_HEADER + b"\r\n\r\n")
        return sock.recv(100)


def _in_flight_at_sigterm(relay: RelayProcess, event_id: str) -> bytes:
    """Send a request whose body is cut in two, SIGTERM the relay between the halves, send
    the rest: the answer."""
    with socket.create_connection(("127.0.0.1", relay.port), timeout=20) as sock:
        warm = json.dumps(page_view(event_id + "-warm")).encode()
        sock.sendall(_head(warm) + warm)  # the connection is accepted and served
        assert _answer(sock).startswith(b"HTTP/1.1 202")
        body = json.dumps(page_view(event_id)).encode()
        sock.sendall(_head(body) + body[:10])
        time.sleep(SETTLE)
        relay.signal(signal.SIGTERM)
        time.sleep(SETTLE)
        sock.sendall(body[10:])
        return _answer(sock)


@pytest.mark.parametrize("server", SERVERS)
def test_each_server_accepts_delivers_stops_gracefully_and_loses_nothing(
        server: str, relays: MakeRelay, vendors: MakeVendor) -> None:
    vendor = vendors(name=f"{server}-vendor")
    relay = relays(args=["--server", server],
                   destinations={"hook": webhook(vendor, events=["page_view"])})
    slow = socket.create_connection(("127.0.0.1", relay.port), timeout=SLOW_CLOSED_WITHIN)
    slow.sendall(b"POST /t/e HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the rest
    assert _oversized_head(relay).startswith(b"HTTP/1.1 431")
    ids = []
    with client() as c:
        for i in range(EVENTS):
            ev = page_view(f"{server}-{i}")
            r = post_browser(c, relay, ev, headers={"X-Forwarded-For": "203.0.113.7"})
            assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
            assert r.headers.get_list("server") == ["relay"], r.headers
            assert len(r.headers.get_list("date")) == 1, r.headers
            ids.append(ev["event_id"])
        assert metric(scrape(c, relay), "relay_events_received_total") == EVENTS
    wait_until(lambda: set(vendor.delivered()) >= set(ids), 30, "the events at the vendor")
    ips = {e["context"].get("ip") for e in vendor.delivered_events()}
    assert ips == {"127.0.0.0"}, f"not the connection's address, truncated: {ips}"
    assert "POST /t/e" not in relay.log_text(), "the server wrote an access log"
    assert f", {server}" in relay.log_text()
    with slow:
        assert slow.recv(100) == b"", "a connection that never sent its head was kept open"

    answer = _in_flight_at_sigterm(relay, f"{server}-sigterm")
    assert answer.startswith(b"HTTP/1.1 202"), answer
    assert relay.proc is not None
    assert relay.proc.wait(timeout=30) == 0, relay.log_text()[-3000:]
    relay.proc = None

    vendor.fail_for(3600, status=503)  # down: copies wait in the spool
    relay.start()
    load = asyncio.run(send_batches(relay.url("/e"), make_batches(LOAD, prefix=server),
                                    concurrency=8))
    assert len(load.accepted) == LOAD, load.statuses
    relay.kill()
    relay.start()
    vendor.respond(200)
    wanted = {*ids, f"{server}-sigterm", *load.accepted}
    wait_until(lambda: set(vendor.delivered()) >= wanted, 60,
               "every accepted event at the vendor after SIGTERM and SIGKILL")
    assert vendor.problems == []
    assert relay.stop() == 0


@pytest.mark.parametrize("server", SERVERS)
def test_each_server_under_the_workers_master(server: str, relays: MakeRelay,
                                              redis_url: str) -> None:
    """``--workers 2``: both workers serve (one metrics page counts both), ``SIGHUP``
    reloads each in place, ``SIGTERM`` stops them all with exit code 0."""
    relay = relays(env={"RELAY_STATE": redis_url}, args=["--workers", "2", "--server", server])

    def page() -> str:
        with client() as c:  # a connection of its own: either worker may accept it
            return scrape(c, relay)

    wait_until(lambda: metric(page(), "relay_workers", state="answered") == 2, 30,
               "both workers answering")
    for i in range(EVENTS):
        with client() as c:
            r = post_browser(c, relay, page_view(f"{server}-w-{i}"))
            assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
    assert metric(page(), "relay_events_received_total") == EVENTS
    relay.signal(signal.SIGHUP)
    wait_until(lambda: metric(page(), "relay_rules_reloads_total", result="ok") == 2, 20,
               "both workers' reloads counted")
    assert relay.stop() == 0, relay.log_text()[-3000:]
    assert f", {server}, 2 workers" in relay.log_text()
