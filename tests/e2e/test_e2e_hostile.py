"""Hostile requests against a real ``relay serve``: every byte of a public request is the
attacker's. Each gets its documented status (docs/http.md), never a 500 or a hang, and none
can split a response or smuggle a header.

The slow-client cases go through the socket (``rawhttp``) and hold for any server under the
relay: headers that trickle in are cut by the server's header timeout, a body that trickles
in or stalls by the relay's own ``limits.body_seconds`` (408), so each test asserts what a
client sees, not how long the server waited (the bounds are hang detectors).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from . import rawhttp
from .relayproc import BACKEND_SECRET, RelayProcess
from .rulesdir import make_rules, webhook
from .vendor import StandInVendor
from .wire import US, client, fresh_t, new_event_id, page_view, purchase, signature, wait_until

BODY_LIMIT = 2 * 1024 * 1024  # room for 100k keys inside the limit
BODY_SECONDS = 2
SLOW = 30.0  # a slow client's connection must be cut within this (a hang bound, generous)


@pytest.fixture(scope="module")
def vendor() -> Iterator[StandInVendor]:
    v = StandInVendor(name="hostile")
    try:
        yield v
    finally:
        v.close()


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory, vendor: StandInVendor
          ) -> Iterator[RelayProcess]:
    workdir = tmp_path_factory.mktemp("hostile")
    rules = make_rules(
        workdir / "rules",
        relay={"limits": {"body_bytes": BODY_LIMIT, "body_seconds": BODY_SECONDS}},
        destinations={"hook": webhook(vendor, pipeline=None)},
        proxy={"up": {"path": "/up", "upstream": vendor.url}},  # a streamed proxy route
    )
    proc = RelayProcess(workdir, rules, name="hostile")
    try:
        proc.start()
        yield proc
    finally:
        proc.close()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with client(timeout=rawhttp.HANG) as c:
        yield c


def post(http: httpx.Client, relay: RelayProcess, body: bytes, path: str = "/e",
         content_type: str = "application/json") -> httpx.Response:
    headers = {"Content-Type": content_type, **US}
    if path.startswith("/hook/"):
        headers["X-Relay-Signature"] = signature(BACKEND_SECRET, body, fresh_t(body))
    return http.post(relay.url(path), content=body, headers=headers)


ENDPOINTS = ["/e", "/hook/backend"]


# -- bodies -------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ENDPOINTS)
def test_deep_json_is_400(relay: RelayProcess, http: httpx.Client, path: str) -> None:
    deep = b"[" * 10_000 + b"]" * 10_000
    r = post(http, relay, deep, path)
    assert r.status_code == 400 and "invalid JSON" in r.json()["error"], r.text
    inside = (b'{"event":"page_view","event_id":"deep-1","properties":{"p":'
              + b'{"a":' * 10_000 + b"1" + b"}" * 10_000 + b"}}")
    r = post(http, relay, inside, path)
    assert r.status_code == 400, r.text
    # Within orjson's depth but past the envelope's: the event is rejected, naming the field.
    nested = {"event": "page_view", "event_id": new_event_id("deep"),
              "properties": {"p": json.loads("[" * 50 + "]" * 50)}}
    r = post(http, relay, json.dumps(nested).encode(), path)
    assert r.status_code == 400 and "properties.p" in r.text and "deep" in r.text, r.text


@pytest.mark.parametrize("path", ENDPOINTS)
def test_wide_json_is_rejected_naming_the_limit(relay: RelayProcess, http: httpx.Client,
                                                path: str) -> None:
    keys = {f"k{i}": 0 for i in range(100_000)}
    for event in ({"event": "page_view", "event_id": new_event_id("wide"), "properties": keys},
                  {"event": "page_view", "event_id": new_event_id("flat"), **keys}):
        body = json.dumps(event, separators=(",", ":")).encode()
        assert len(body) < BODY_LIMIT
        r = post(http, relay, body, path)
        assert r.status_code == 400, r.text
        assert "more than 100 properties" in r.text, r.text[:300]
    # ``user`` and ``context`` have no key count of their own (docs/rules.md, relay.limits):
    # body_bytes bounds them, and the event is taken in whole.
    wide_user = {"event": "page_view", "event_id": new_event_id("wide"), "user": keys}
    r = post(http, relay, json.dumps(wide_user).encode(), path)
    assert r.status_code == 202 and r.json()["accepted"] == 1, r.text[:300]


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"1" * 5000, b"-" + b"9" * 5000])
def test_huge_numbers_are_400(relay: RelayProcess, http: httpx.Client, path: str,
                              number: bytes) -> None:
    body = (b'{"event":"purchase","event_id":"n-1","properties":{"order_id":"O1","value":'
            + number + b',"currency":"USD"}}')
    r = post(http, relay, body, path)
    assert r.status_code == 400 and "invalid JSON" in r.json()["error"], r.text


def test_big_integers_within_json_range_are_a_clear_rejection(relay: RelayProcess,
                                                              http: httpx.Client) -> None:
    event = purchase(value=0)
    event["properties"]["value"] = 10**18  # an int64: parsed, then checked by the contract
    event["time"] = 10**18  # epoch milliseconds far past year 9999
    r = post(http, relay, json.dumps(event).encode(), "/hook/backend")
    assert r.status_code == 400 and "time" in r.text, r.text


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("raw", [b'{"event":"page_view","event_id":"\xff\xfe"}',
                                 b'{"event":"page_\xc0\xafview"}', b"\xef\xbb\xbf{}",
                                 b'{"event":"page_view","event_id":"\xed\xa0\x80"}'])
def test_invalid_utf8_is_400(relay: RelayProcess, http: httpx.Client, path: str,
                             raw: bytes) -> None:
    r = post(http, relay, raw, path)
    assert r.status_code == 400, r.text
    assert "invalid JSON" in r.json()["error"], r.text


@pytest.mark.parametrize("path", ENDPOINTS)
def test_duplicate_keys_the_last_wins(relay: RelayProcess, http: httpx.Client,
                                      vendor: StandInVendor, path: str) -> None:
    """Documented in docs/http.md: a repeated key counts once, with its last value (as in
    JavaScript's JSON.parse), everywhere in the body."""
    eid = new_event_id("dupkey")
    body = (b'{"event":"mystery","event_id":"ignored","event":"signup","event_id":"'
            + eid.encode() + b'","properties":{"plan":"free","plan":"pro"}}')
    r = post(http, relay, body, path)
    assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
    got = wait_until(lambda: delivered(vendor, eid), 20, f"{eid} at the stand-in")
    assert got["event"] == "signup" and got["properties"]["plan"] == "pro", got
    assert delivered(vendor, "ignored") is None


@pytest.mark.parametrize("path", ENDPOINTS)
def test_nul_bytes(relay: RelayProcess, http: httpx.Client, path: str) -> None:
    raw_nul = b'{"event":"page_view","event_id":"a\x00b"}'  # a raw NUL: not JSON
    r = post(http, relay, raw_nul, path)
    assert r.status_code == 400 and "invalid JSON" in r.text, r.text
    r = post(http, relay, b'{"event":"page_view"}\x00', path)
    assert r.status_code == 400, r.text
    for event in ({"event": "page\u0000view", "event_id": new_event_id()},
                  {"event": "page_view", "event_id": "a\u0000b"}):
        r = post(http, relay, json.dumps(event).encode(), path)
        assert r.status_code == 400, (event, r.text)
        assert r.json()["rejected"][0]["error"].split(":")[0] in ("event", "event_id"), r.text
    # In a property a NUL is data: kept, escaped, as JSON allows.
    eid = new_event_id("nul")
    ev = page_view(eid, properties={"note": "a\u0000b"})
    r = post(http, relay, json.dumps(ev).encode(), path)
    assert r.status_code == 202, r.text


# -- headers and response splitting ------------------------------------------------------

CRLF_IDS = ["a\r\nX-Injected: 1", "a\nSet-Cookie: pwned=1", "a\rb", "\r\n\r\nHTTP/1.1 200 OK"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_an_event_id_with_crlf_is_rejected_and_never_reaches_a_header(
    relay: RelayProcess, http: httpx.Client, vendor: StandInVendor, path: str
) -> None:
    """The event_id travels to webhook destinations as ``Idempotency-Key``."""
    good = new_event_id("crlf-ok")
    batch = [page_view(eid) for eid in CRLF_IDS] + [page_view(good)]
    r = post(http, relay, json.dumps(batch).encode(), path)
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 1, r.text
    assert [x["index"] for x in r.json()["rejected"]] == list(range(len(CRLF_IDS))), r.text
    assert all(x["error"].startswith("event_id:") for x in r.json()["rejected"]), r.text
    wait_until(lambda: delivered(vendor, good), 20, f"{good} at the stand-in")
    for request in vendor.received:
        assert "x-injected" not in request.headers and "set-cookie" not in request.headers
        key = request.headers.get("idempotency-key", "")
        assert "\r" not in key and "\n" not in key, key


def test_crlf_in_a_request_header_is_refused_by_the_server(relay: RelayProcess) -> None:
    body = json.dumps(page_view()).encode()
    for header in (b"Cookie: _rc=a\rSet-Cookie: pwned=1", b"Cookie: _rc=a\nSet-Cookie: pwned=1",
                   b"X-Forwarded-For: 1.2.3.4\r Set-Cookie: pwned=1", b"Cookie: _rc=a\x00b",
                   b"Cookie: _rc=a\r\n Set-Cookie: pwned=1"):  # the last: obsolete folding
        raw = (b"POST /t/e HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               + header + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        answer = rawhttp.exchange(relay.port, raw)
        assert answer.status in (202, 400), (header, answer.raw[:300])
        assert not any(b"pwned" in line for line in answer.header_lines), answer.raw[:500]
        assert answer.raw.count(b"HTTP/1.1 ") == 1, answer.raw[:500]


def test_a_cookie_value_never_comes_back_as_a_header(relay: RelayProcess) -> None:
    """The relay's Set-Cookie carries a fresh signed id, never bytes of the request."""
    for value in ("a%0d%0aSet-Cookie:%20pwned=1", "x;Set-Cookie=pwned", '"a\\r\\nb"',
                  "a" * 8000):
        raw = rawhttp.request_head("POST", "/t/e", [
            ("Content-Type", "application/json"), ("CF-IPCountry", "US"),
            ("Cookie", f"_rc={value}"), ("Content-Length", "2")]) + b"{}"
        answer = rawhttp.exchange(relay.port, raw)
        assert answer.status == 400, answer.raw[:300]  # {} is not an event; the cookie is moot
        for line in answer.header_lines:
            assert b"pwned" not in line and value.encode() not in line, answer.raw[:500]
        body = json.dumps(page_view()).encode()
        raw = rawhttp.request_head("POST", "/t/e", [
            ("Content-Type", "application/json"), ("CF-IPCountry", "US"),
            ("Cookie", f"_rc={value}"), ("Content-Length", str(len(body)))]) + body
        answer = rawhttp.exchange(relay.port, raw)
        assert answer.status == 202, answer.raw[:300]
        cookies = answer.header("set-cookie")
        assert len(cookies) == 1 and "pwned" not in cookies[0], cookies
        assert value not in cookies[0], cookies


@pytest.mark.parametrize("size", [20_000, 100_000, 1_000_000])
def test_an_overlong_header_is_refused_not_a_500(relay: RelayProcess, size: int) -> None:
    raw = rawhttp.request_head("POST", "/t/e", [
        ("Content-Type", "application/json"), ("X-Long", "a" * size), ("Content-Length", "2")])
    try:
        answer = rawhttp.exchange(relay.port, raw + b"{}")
    except (BrokenPipeError, ConnectionResetError):
        answer = None  # the server closed while the header was still being sent: refused
    if answer is not None and answer.status is not None:
        assert answer.status in (400, 431), answer.raw[:300]
    with client() as http:  # and the relay serves on
        assert http.get(relay.url("/healthz")).status_code == 200


def test_many_headers_are_refused_or_served_never_a_500(relay: RelayProcess) -> None:
    body = json.dumps(page_view()).encode()
    headers = [(f"X-H{i}", "v") for i in range(2000)]
    raw = rawhttp.request_head("POST", "/t/e", [
        ("Content-Type", "application/json"), ("CF-IPCountry", "US"), *headers,
        ("Content-Length", str(len(body)))]) + body
    answer = rawhttp.exchange(relay.port, raw)
    assert answer.status in (202, 400, 431), answer.raw[:300]


# -- slow clients and unbounded bodies ----------------------------------------------------

def test_slow_headers_are_cut(relay: RelayProcess) -> None:
    """Headers sent a line every half second never end: the server must close."""
    with rawhttp.connect(relay.port) as sock:
        sock.sendall(b"POST /t/e HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        cut = False
        for i in range(int(SLOW * 2)):
            try:
                sock.sendall(f"X-Slow-{i}: x\r\n".encode())
            except (BrokenPipeError, ConnectionResetError):
                cut = True
                break
            if rawhttp.closed_within(sock, 0.5):
                cut = True
                break
        assert cut, f"the relay still waited for headers after {SLOW:g}s of trickle"


@pytest.mark.parametrize("path", [*ENDPOINTS, "/v1/track", "/up"])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_stalled_body_is_cut_with_408(relay: RelayProcess, path: str, chunked: bool) -> None:
    framing = ("Transfer-Encoding", "chunked") if chunked else ("Content-Length", "1000")
    with rawhttp.connect(relay.port) as sock:
        sock.sendall(rawhttp.request_head("POST", "/t" + path, [
            ("Content-Type", "application/json"), framing]))
        sock.sendall(b"5\r\n{\"a\":\r\n" if chunked else b'{"a":')
        answer = rawhttp.read_answer(sock)  # fails as a hang if it never comes
        assert answer.status == 408, answer.raw[:300]
        assert "close" in answer.header("connection"), answer.raw[:300]
        assert "did not arrive within" in json.loads(answer.body)["error"]
        assert rawhttp.closed_within(sock, SLOW)


def test_a_trickling_body_is_cut_with_408(relay: RelayProcess) -> None:
    """A byte at a time, each well inside any per-read timeout: only a whole-body deadline
    stops it."""
    body = json.dumps(page_view()).encode()
    with rawhttp.connect(relay.port) as sock:
        sock.sendall(rawhttp.request_head("POST", "/t/e", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(body)))]))
        seen = bytearray()
        for byte in body:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            if rawhttp.closed_within(sock, 0.5, seen) or seen:
                break
        if not seen:  # cut while sending: what it said is still to be read
            rawhttp.closed_within(sock, SLOW, seen)
    assert bytes(seen).startswith(b"HTTP/1.1 408 "), bytes(seen[:300])


@pytest.mark.parametrize("path", [*ENDPOINTS, "/v1/track", "/up"])
def test_a_chunked_body_over_the_limit_is_413_not_a_hang(relay: RelayProcess, path: str) -> None:
    chunk = b"a" * 65536
    with rawhttp.connect(relay.port) as sock:
        sock.sendall(rawhttp.request_head("POST", "/t" + path, [
            ("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")]))
        sent = 0
        try:
            while sent <= BODY_LIMIT + len(chunk) * 2:  # past the limit, and never an end
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the relay answered and closed while we were still sending
        answer = rawhttp.read_answer(sock)
    assert answer.status == 413, answer.raw[:300]
    assert "close" in answer.header("connection"), answer.raw[:300]


def test_a_declared_length_over_the_limit_is_413_before_the_body(relay: RelayProcess) -> None:
    with rawhttp.connect(relay.port) as sock:
        sock.sendall(rawhttp.request_head("POST", "/t/e", [
            ("Content-Type", "application/json"), ("Content-Length", str(10**12))]))
        answer = rawhttp.read_answer(sock)
    assert answer.status == 413, answer.raw[:300]


@pytest.mark.parametrize("framing", [
    [("Content-Length", "5"), ("Content-Length", "6")],
    [("Content-Length", "-1")],
    [("Content-Length", "abc")],
    [("Transfer-Encoding", "chunked"), ("Content-Length", "5")],
    [("Transfer-Encoding", "gzip, chunked, identity")],
])
def test_ambiguous_framing_is_refused_not_a_500(relay: RelayProcess,
                                                framing: list[tuple[str, str]]) -> None:
    raw = rawhttp.request_head("POST", "/t/e", [("Content-Type", "application/json"),
                                                *framing]) + b'{"a":1}'
    answer = rawhttp.exchange(relay.port, raw)
    # 408: the server took the framing as chunked, and the "chunks" never end.
    assert answer.status is None or answer.status in (400, 408, 413, 501), answer.raw[:300]


def test_the_relay_serves_on_after_all_of_it(relay: RelayProcess, http: httpx.Client,
                                             vendor: StandInVendor) -> None:
    eid = new_event_id("after")
    r = post(http, relay, json.dumps(page_view(eid)).encode())
    assert r.status_code == 202, r.text
    wait_until(lambda: delivered(vendor, eid), 20, f"{eid} at the stand-in")
    assert "Traceback" not in relay.log_text(), relay.log_text()[-3000:]


def delivered(vendor: StandInVendor, event_id: str) -> dict[str, Any] | None:
    return next((e for e in vendor.delivered_events() if e.get("event_id") == event_id), None)
