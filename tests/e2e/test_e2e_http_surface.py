"""The public and admin HTTP surface of SPEC section 2, through the real ``relay serve``.

One relay (the shipped rules) serves the whole module. Every request goes through a client
that fails the test if an answer carries a Python traceback.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .relayproc import BACKEND_SECRET, RELAY_SECRET, RelayProcess, run_cli
from .rulesdir import make_rules
from .wire import (
    US,
    archived,
    client,
    metric,
    metric_names,
    new_event_id,
    page_view,
    post_backend,
    post_browser,
    purchase,
    scrape,
    signature,
    wait_until,
)

BODY_LIMIT = 64 * 1024  # SPEC section 3 default
COOKIE = "_rc"
SPEC_METRICS = (
    "relay_events_received_total", "relay_events_rejected_total", "relay_events_duplicate_total",
    "relay_consent_suppressed_total", "relay_fields_redacted_total", "relay_deliveries_total",
    "relay_delivery_latency_seconds", "relay_ingest_latency_seconds", "relay_spool_depth",
    "relay_dlq_depth", "relay_rules_reloads_total", "relay_proxy_requests_total",
)


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    workdir = tmp_path_factory.mktemp("surface")
    proc = RelayProcess(workdir, make_rules(workdir / "rules"), name="surface")
    try:
        proc.start()
        yield proc
    finally:
        proc.close()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with client() as c:
        yield c


def _json(r: httpx.Response) -> Any:
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    return r.json()


def _set_cookie(r: httpx.Response) -> dict[str, str]:
    """The relay's correlation cookie from ``Set-Cookie``: value and attributes (lower-cased
    names; flags map to "")."""
    headers = [v for v in r.headers.get_list("set-cookie") if v.startswith(COOKIE + "=")]
    assert len(headers) == 1, r.headers.get_list("set-cookie")
    first, *attrs = [p.strip() for p in headers[0].split(";")]
    out = {"value": first.partition("=")[2]}
    for attr in attrs:
        name, _, value = attr.partition("=")
        out[name.lower()] = value
    return out


# -- ingestion ----------------------------------------------------------------------------

def test_one_event_is_accepted_with_the_documented_body(relay: RelayProcess,
                                                        http: httpx.Client) -> None:
    r = post_browser(http, relay, page_view())
    assert r.status_code == 202, r.text
    assert _json(r) == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert r.headers.get("cache-control") == "no-store"


def test_a_batch_is_partially_accepted(relay: RelayProcess, http: httpx.Client) -> None:
    good1, good2 = page_view(), page_view()
    items = [good1, {"event_id": new_event_id()}, good2, {"event": "mystery", "event_id": "m1"},
             {"event": "bad name!", "event_id": "b1"}, "not an object"]
    for body in (items, {"batch": items}):
        for ev in (good1, good2):
            ev["event_id"] = new_event_id()
        r = post_browser(http, relay, body)
        assert r.status_code == 202, r.text
        data = _json(r)
        assert data["accepted"] == 2 and data["duplicates"] == 0, data
        rejected = data["rejected"]
        assert [x["index"] for x in rejected] == [1, 3, 4, 5], data
        for x in rejected:
            assert set(x) == {"index", "error"} and isinstance(x["error"], str) and x["error"]
        assert rejected[0]["error"].startswith("event"), rejected  # names the field


def test_a_repeated_event_id_is_a_duplicate(relay: RelayProcess, http: httpx.Client) -> None:
    ev = page_view()
    assert _json(post_browser(http, relay, ev))["accepted"] == 1
    r = post_browser(http, relay, ev)
    assert r.status_code == 202, r.text
    assert _json(r) == {"accepted": 0, "duplicates": 1, "rejected": []}


def test_a_single_invalid_event_is_400_naming_the_field(relay: RelayProcess,
                                                        http: httpx.Client) -> None:
    r = post_backend(http, relay, purchase(properties={"order_id": "O1", "currency": "USD"}))
    assert r.status_code == 400, r.text
    data = _json(r)
    assert "properties.value" in json.dumps(data), data


@pytest.mark.parametrize("body", [b"{", b"", b"   ", b"[1, 2", b"\xff\xfe{}", b'{"batch": 5}',
                                  b"[]", b"nul"])
def test_malformed_json_is_400(relay: RelayProcess, http: httpx.Client, body: bytes) -> None:
    r = http.post(relay.url("/e"), content=body,
                  headers={"Content-Type": "application/json", **US})
    assert r.status_code == 400, (body, r.status_code, r.text)
    assert isinstance(_json(r).get("error"), str)


def test_webhook_signatures_are_checked(relay: RelayProcess, http: httpx.Client) -> None:
    ev = purchase()
    body = json.dumps(ev).encode()
    url = relay.url("/hook/backend")
    now = int(time.time())
    cases = {
        "unsigned": {},
        "wrong secret": {"X-Relay-Signature": signature("not-the-secret", body, now)},
        "stale": {"X-Relay-Signature": signature(BACKEND_SECRET, body, now - 3600)},
        "from the future": {"X-Relay-Signature": signature(BACKEND_SECRET, body, now + 3600)},
        "garbage": {"X-Relay-Signature": "t=abc,v1=zz"},
        "other body": {"X-Relay-Signature": signature(BACKEND_SECRET, body + b" ", now)},
    }
    for name, headers in cases.items():
        r = http.post(url, content=body, headers={"Content-Type": "application/json", **headers})
        assert r.status_code == 401, (name, r.status_code, r.text)
        assert _json(r).get("error"), name
    r = post_backend(http, relay, ev)
    assert r.status_code == 202, r.text
    assert _json(r)["accepted"] == 1


def test_unknown_sources_and_routes_are_404(relay: RelayProcess, http: httpx.Client) -> None:
    for path in ("/t/hook/nope", "/t/hook/browser", "/t/nothing-here", "/elsewhere"):
        r = http.post(relay.base + path, json=page_view())
        assert r.status_code == 404, (path, r.status_code, r.text)
    r = http.get(relay.url("/nothing-here"))
    assert r.status_code == 404, r.text


def test_wrong_methods_are_405(relay: RelayProcess, http: httpx.Client) -> None:
    for method, path in (("GET", "/e"), ("PUT", "/e"), ("DELETE", "/e"),
                         ("GET", "/hook/backend"), ("POST", "/healthz")):
        r = http.request(method, relay.url(path))
        assert r.status_code == 405, (method, path, r.status_code, r.text)


def _over_limit_body() -> bytes:
    body = json.dumps([page_view(properties={"pad": "x" * 2000}) for _ in range(40)]).encode()
    assert len(body) > BODY_LIMIT
    return body


def _chunks(body: bytes) -> Iterator[bytes]:
    """The body without a Content-Length (chunked): the relay must count as it reads."""
    for i in range(0, len(body), 8192):
        yield body[i:i + 8192]


def test_a_body_over_the_limit_is_413(relay: RelayProcess) -> None:
    body = _over_limit_body()
    headers = {"Content-Type": "application/json", **US}
    # A fresh connection for each: reusing one after a 413 is its own test (below).
    for content in (body, _chunks(body)):
        with client() as http:
            r = http.post(relay.url("/e"), content=content, headers=headers)
            assert r.status_code == 413, (r.status_code, r.text)
            assert "error" in _json(r)
    with client() as http:
        r = post_browser(http, relay, [page_view() for _ in range(51)])  # over 50 events
        assert r.status_code == 413, (r.status_code, r.text)


def _read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """(head, body) of one HTTP/1.1 response with a Content-Length; b"" head on EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b"", data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    length = int(m.group(1)) if m else 0
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head, body


def test_a_413_says_connection_close_or_keeps_the_connection_usable(
        relay: RelayProcess) -> None:
    """The relay answers 413 before the client has sent the whole (chunked) body. HTTP/1.1
    then requires the answer to say ``Connection: close``, or the rest of the body to be read
    and the connection kept: a keep-alive client finishes its body and reuses the connection.
    """
    piece = b"x" * 8192
    with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as sock:
        sock.sendall(b"POST /t/e HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                     b"\r\nCF-IPCountry: US\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(9):  # 72 KiB, over the 64 KiB limit; the last chunk is not sent yet
            sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        head, _ = _read_response(sock)
        assert head.startswith(b"HTTP/1.1 413"), head
        if re.search(rb"(?im)^connection:\s*close", head):
            return  # the client knows not to reuse the connection
        try:  # the client finishes its body and sends the next request on the connection
            sock.sendall(b"0\r\n\r\nGET /t/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head2, _ = _read_response(sock)
        except OSError as exc:
            head2 = repr(exc).encode()
    assert head2.startswith(b"HTTP/1.1 200"), (
        "the 413 did not say Connection: close, yet the connection was dropped before the "
        f"next request was answered (413 head: {head!r}; then: {head2!r})")


def test_other_content_types_are_415(relay: RelayProcess, http: httpx.Client) -> None:
    body = json.dumps(page_view()).encode()
    for ctype in ("application/x-www-form-urlencoded", "application/xml", "multipart/form-data",
                  None):
        headers = {**US} if ctype is None else {"Content-Type": ctype, **US}
        r = http.post(relay.url("/e"), content=body, headers=headers)
        assert r.status_code == 415, (ctype, r.status_code, r.text)
    r = http.post(relay.url("/hook/backend"), content=body,
                  headers={"Content-Type": "text/plain",
                           "X-Relay-Signature": signature(BACKEND_SECRET, body)})
    assert r.status_code == 415, (r.status_code, r.text)


def test_a_send_beacon_text_plain_body_is_accepted(relay: RelayProcess,
                                                   http: httpx.Client) -> None:
    r = http.post(relay.url("/e"), content=json.dumps(page_view()).encode(),
                  headers={"Content-Type": "text/plain;charset=UTF-8", **US})
    assert r.status_code == 202, r.text
    assert _json(r)["accepted"] == 1


def test_the_flat_datalayer_form_becomes_properties(relay: RelayProcess,
                                                    http: httpx.Client) -> None:
    eid = new_event_id("flat")
    r = post_browser(http, relay, {"event": "page_view", "event_id": eid, "section": "shoes",
                                   "items": 3})
    assert r.status_code == 202, r.text
    assert _json(r)["accepted"] == 1
    line = wait_until(lambda: next((e for e in archived(relay) if e["event_id"] == eid), None),
                      10, f"{eid} in var/events.jsonl")
    assert line["properties"] == {"section": "shoes", "items": 3}, line
    assert "section" not in line and "items" not in line, line


def test_a_browser_cannot_set_relay_fields(relay: RelayProcess, http: httpx.Client) -> None:
    eid = new_event_id("forged")
    r = post_browser(http, relay, page_view(
        eid, source="backend", received_at="2000-01-01T00:00:00Z", correlation_id="forged-cid",
        context={"ip": "198.51.100.9", "country": "FR", "gpc": True,
                 "user_agent": "forged-agent/1.0"}))
    assert r.status_code in (202, 400), r.text
    if r.status_code == 202:
        line = wait_until(lambda: next((e for e in archived(relay) if e["event_id"] == eid),
                                       None), 10, f"{eid} in var/events.jsonl")
        assert line["source"] == "browser", line
        assert line["received_at"] != "2000-01-01T00:00:00Z", line
        assert line.get("correlation_id") != "forged-cid", line
        assert line["context"].get("country") == "US", line
        assert "198.51.100" not in json.dumps(line), line


# -- the correlation cookie ---------------------------------------------------------------

def test_the_correlation_cookie_attributes(relay: RelayProcess, http: httpx.Client) -> None:
    r = post_browser(http, relay, page_view())
    assert r.status_code == 202, r.text
    c = _set_cookie(r)
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", c["value"]), c
    assert c.get("max-age") == "1800", c  # the shipped 30m
    assert c.get("path") == "/", c
    assert "httponly" in c, c
    assert c.get("samesite") == "Lax", c
    assert "secure" not in c, c  # 127.0.0.1 is local
    # Outside localhost the cookie is Secure.
    r = http.post(relay.url("/e"), json=page_view(), headers={**US, "Host": "shop.example"})
    assert r.status_code == 202, r.text
    assert "secure" in _set_cookie(r), r.headers.get_list("set-cookie")


def _cid(value: str) -> str:
    return value.split(".", 1)[0]


def test_a_valid_cookie_is_kept_and_a_tampered_one_replaced(relay: RelayProcess,
                                                            http: httpx.Client) -> None:
    first = _set_cookie(post_browser(http, relay, page_view()))["value"]
    http.cookies.clear()

    eid = new_event_id("kept")
    again = _set_cookie(post_browser(http, relay, page_view(eid),
                                     headers={"Cookie": f"{COOKIE}={first}"}))["value"]
    http.cookies.clear()
    assert _cid(again) == _cid(first), (first, again)  # the same visit, re-signed

    head, _, sig = first.rpartition(".")
    tampered_values = [
        head + "." + ("A" if sig[0] != "A" else "B") + sig[1:],  # signature changed
        "attacker" + first[len("attacker"):],  # id changed
        "not-a-signed-value",
        first + "x",
    ]
    eids = []
    for tampered in tampered_values:
        eid_t = new_event_id("tampered")
        eids.append(eid_t)
        r = post_browser(http, relay, page_view(eid_t), headers={"Cookie": f"{COOKIE}={tampered}"})
        http.cookies.clear()
        assert r.status_code == 202, r.text
        fresh = _set_cookie(r)["value"]
        assert fresh != tampered and _cid(fresh) != _cid(tampered), (tampered, fresh)
        assert _cid(fresh) != _cid(first), (tampered, fresh)

    lines = wait_until(lambda: (lambda got: got if len(got) == len(eids) + 1 else None)(
        {e["event_id"]: e for e in archived(relay) if e["event_id"] in (*eids, eid)}),
        10, "the cookie test's events in var/events.jsonl")
    assert lines[eid].get("correlation_id") == _cid(first), lines[eid]
    for eid_t, tampered in zip(eids, tampered_values, strict=True):
        assert lines[eid_t].get("correlation_id") not in (_cid(tampered), _cid(first)), (
            tampered, lines[eid_t])


# -- liveness and the admin listener ------------------------------------------------------

def test_healthz(relay: RelayProcess, http: httpx.Client) -> None:
    r = http.get(relay.url("/healthz"))
    assert r.status_code == 200


def test_admin_metrics_has_the_spec_metrics(relay: RelayProcess, http: httpx.Client) -> None:
    dup = page_view()
    post_browser(http, relay, [dup, page_view(), {"event": "mystery", "event_id": "x"}])
    post_browser(http, relay, dup)
    post_browser(http, relay, page_view(consent={"analytics": "denied"}))  # suppressed
    r = http.get(relay.admin_url("/metrics"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain"), r.headers
    text = r.text
    missing = [m for m in SPEC_METRICS if m not in metric_names(text)]
    assert not missing, f"missing metrics: {missing}"
    assert metric(text, "relay_events_received_total", source="browser", event="page_view") >= 3
    assert metric(text, "relay_events_rejected_total", source="browser") >= 1
    assert metric(text, "relay_events_duplicate_total") >= 1
    assert metric(text, "relay_consent_suppressed_total", destination="archive",
                  purpose="analytics") >= 1
    assert metric(text, "relay_fields_redacted_total", transform="ip") >= 1
    assert metric(text, "relay_ingest_latency_seconds_count") >= 3
    wait_until(lambda: metric(scrape(http, relay), "relay_deliveries_total",
                              destination="archive", outcome="delivered") >= 1,
               10, "relay_deliveries_total{destination=archive,outcome=delivered}")
    for line in text.splitlines():
        assert line.startswith("#") or line.startswith("relay_") or not line.strip() or \
            line.startswith(("python_", "process_")), line


def test_readyz_names_the_rules_version(relay: RelayProcess, http: httpx.Client,
                                        tmp_path: Path) -> None:
    done = run_cli(["check", "--rules", str(relay.rules_dir)], cwd=tmp_path)
    m = re.search(r"rules version (\S+)", done.stdout)
    assert m, done.stdout + done.stderr
    r = http.get(relay.admin_url("/readyz"))
    assert r.status_code == 200, r.text
    assert m.group(1) in r.text, r.text


def test_admin_rules_masks_secrets(relay: RelayProcess, http: httpx.Client) -> None:
    r = http.get(relay.admin_url("/rules"))
    assert r.status_code == 200, r.text
    assert RELAY_SECRET not in r.text and BACKEND_SECRET not in r.text, r.text
    assert "destinations" in r.text and "archive" in r.text, r.text[:500]


def test_admin_pages_are_not_on_the_public_port(relay: RelayProcess, http: httpx.Client) -> None:
    for path in ("/metrics", "/t/metrics", "/readyz", "/rules", "/dlq", "/t/dlq", "/t/rules"):
        r = http.get(relay.base + path)
        assert r.status_code == 404, (path, r.status_code)


# -- never a 500 --------------------------------------------------------------------------

NASTY_BODIES: list[Any] = [
    None, 0, "page_view", [], [None], [[]], {}, {"batch": None}, {"batch": [None, 1, "x"]},
    {"event": None}, {"event": ["page_view"]}, {"event": "page_view", "event_id": 5},
    {"event": "page_view", "event_id": "x" * 500}, {"event": "x" * 300},
    {"event": "page_view", "time": "yesterday"}, {"event": "page_view", "time": 1e300},
    {"event": "page_view", "time": -1}, {"event": "page_view", "consent": "yes"},
    {"event": "page_view", "consent": {"analytics": [1]}}, {"event": "page_view", "user": "u"},
    {"event": "page_view", "user": {"email": ["a@b.c"]}}, {"event": "page_view", "context": []},
    {"event": "page_view", "context": {"page": {"url": 7}}},
    {"event": "page_view", "context": {"page": {"url": "http://[::1"}}},
    {"event": "page_view", "properties": [1, 2]},
    {"event": "page_view", "properties": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}},
    {"event": "page_view", "properties": {f"p{i}": i for i in range(150)}},
    {"event": "page_view", "properties": {"s": "y" * 5000}},
    {"event": "page_view", "schema": "two"}, {"event": "page_view", "value": float("1e308")},
    {"event": "purchase", "properties": {"order_id": 1, "value": "ten", "currency": "usd"}},
    {"event": "page_view", "\u0000": "\u0000", "event_id": "\ud7ff"},
]


def test_no_client_input_gives_a_500(relay: RelayProcess, http: httpx.Client) -> None:
    statuses = []
    for body in NASTY_BODIES:
        for path, sign in (("/e", False), ("/hook/backend", True)):
            raw = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **US}
            if sign:
                headers["X-Relay-Signature"] = signature(BACKEND_SECRET, raw)
            r = http.post(relay.url(path), content=raw, headers=headers)
            statuses.append(r.status_code)
            assert r.status_code < 500, (path, body, r.status_code, r.text)
            assert r.status_code in (200, 202, 400, 413), (path, body, r.status_code, r.text)
    # Odd headers are client input too.
    odd: list[dict[str, str | bytes]] = [
        {"X-Forwarded-For": "not-an-ip"}, {"CF-IPCountry": "??"}, {"Sec-GPC": "x"},
        {"Cookie": f"{COOKIE}=" + "a" * 4000}, {"User-Agent": ("\u00e9" * 100).encode()},
        {"Cookie": f"{COOKIE}=\u00e9\u00e9.1.2".encode()}, {"Host": "[::1"},
        {"Content-Type": "application/json; charset=latin-1"},
    ]
    for extra in odd:
        merged = {"Content-Type": "application/json", **US, **extra}
        raw_headers = [(k.encode(), v if isinstance(v, bytes) else v.encode())
                       for k, v in merged.items()]
        r = http.post(relay.url("/e"), content=json.dumps(page_view()).encode(),
                      headers=raw_headers)
        assert r.status_code < 500, (extra, r.status_code, r.text)


def test_serve_prints_nothing_on_stdout(relay: RelayProcess) -> None:
    assert relay.stdout_text() == ""
    assert relay.log_text().strip(), "relay serve logs to stderr"
