"""Segment's own server libraries against a real ``relay serve``: ``segment-analytics-python``
(plain and gzip, batches over the browser limits) and ``@segment/analytics-node`` (run with
``node`` from tests/js). Every message arrives with its ``messageId`` as ``event_id``; a
permanent error is sent once; the relay's 503 is retried and the message then arrives once.
analytics.js in Chromium is tests/browser/test_segment_browser.py."""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import segment.analytics.request as segment_request
from segment.analytics import Client

from relay.ingest.segment import fail

from .conftest import MakeRelay
from .relayproc import REPO_ROOT, RelayProcess
from .wire import wait_until

WRITE_KEY = "e2e-segment-ingest-write-key-4b1"
JS = REPO_ROOT / "tests" / "js"
NODE_TIMEOUT = 60
EVENTS = {
    "Order Completed": {"properties": {"order_id": {"type": "string", "required": True}}},
    "identify": {"properties": {"plan": {"type": "string", "enum": ["free", "pro"]}},
                 "additional_properties": "drop"},
    "group": {}, "alias": {}, "screen_view": {},
}


@pytest.fixture
def relay(relays: MakeRelay) -> RelayProcess:
    return relays(sources={"apps": {"type": "segment", "write_keys": [WRITE_KEY]}},
                  events=EVENTS)


def archived(relay: RelayProcess) -> dict[str, dict[str, Any]]:
    """What the shipped archive destination wrote, by event_id."""
    path = relay.archive_path
    if not path.exists():
        return {}
    lines = path.read_text().splitlines()
    return {e["event_id"]: e for e in map(json.loads, lines)}


def wait_archived(relay: RelayProcess, ids: set[str], what: str) -> dict[str, dict[str, Any]]:
    def done() -> dict[str, dict[str, Any]] | None:
        got = archived(relay)
        return got if ids <= set(got) else None
    return wait_until(done, 20, what)


@pytest.fixture
def posts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every request the Python library makes (URL, status): it still goes to the network."""
    seen: list[tuple[str, int]] = []
    post = segment_request._session.post

    def counting(url: str, **kwargs: Any) -> Any:
        response = post(url, **kwargs)
        seen.append((url, response.status_code))
        return response

    monkeypatch.setattr(segment_request._session, "post", counting)
    return seen


def python_client(host: str, **options: Any) -> Client:
    return Client(WRITE_KEY, host=host, **{"upload_interval": 0.1, "max_retries": 3, **options})


def every_call(c: Client, tag: str) -> list[str]:
    """One message of each type through the Python library; their messageIds."""
    sent = [
        c.track(user_id="u_42", event="Order Completed",
                properties={"order_id": f"O-{tag}", "revenue": 10.5},
                context={"ip": "203.0.113.9", "country": "US"}),
        c.identify(user_id="u_42", traits={"email": "ann@example.com", "plan": "pro",
                                           "firstName": "Ann", "internal": "dropped"},
                   context={"country": "US"}),
        c.page(user_id="u_42", name="Docs", properties={"url": "https://shop.example/docs"},
               context={"country": "US"}),
        c.screen(anonymous_id="anon-1", name="Home", context={"country": "US"}),
        c.group(user_id="u_42", group_id="acme", traits={"name": "Acme"},
                context={"country": "US"}),
        c.alias(previous_id="anon-1", user_id="u_42", context={"country": "US"}),
    ]
    return [msg["messageId"] for ok, msg in sent if ok]


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_python_library_every_call(relay: RelayProcess, posts: list[tuple[str, int]],
                                   gzip: bool) -> None:
    c = python_client(relay.base + "/t", gzip=gzip)
    ids = every_call(c, "py")
    assert len(ids) == 6
    c.flush()
    c.join()
    got = wait_archived(relay, set(ids), "the Python library's six messages in the archive")
    assert [got[i]["event"] for i in ids] == [
        "Order Completed", "identify", "page_view", "screen_view", "group", "alias"]
    identify = got[ids[1]]
    assert identify["properties"] == {"plan": "pro"}  # the contract dropped "internal"
    assert identify["user"]["first_name"] == "Ann" and len(identify["user"]["email"]) == 64
    assert got[ids[4]]["properties"] == {"group_id": "acme", "name": "Acme"}
    assert got[ids[5]]["properties"] == {"previous_id": "anon-1"}
    assert posts and all(url == relay.url("/v1/batch") and status == 200
                         for url, status in posts)


def test_python_library_large_batches(relay: RelayProcess, posts: list[tuple[str, int]]
                                      ) -> None:
    """The library's own batching (up to 100 messages, ~475 KB) is over the browser
    endpoint's limits (64 KiB, 50 events): the Segment endpoints take it whole."""
    c = python_client(relay.base + "/t", upload_size=100, upload_interval=1.0)
    ids = [c.track(user_id="u_1", event="Order Completed",
                   properties={"order_id": f"O-{i}",
                               **{f"pad{k}": "x" * 1000 for k in range(3)}},
                   context={"country": "US"})[1]["messageId"] for i in range(150)]
    c.flush()
    c.join()
    wait_archived(relay, set(ids), "150 padded messages in the archive")
    assert all(status == 200 for _, status in posts), posts
    assert len(posts) <= 3  # so one request held at least 50 messages, over 64 KiB


def test_python_library_does_not_retry_a_permanent_error(
        relay: RelayProcess, posts: list[tuple[str, int]]) -> None:
    errors: list[Exception] = []
    c = Client("not-the-write-key-0000", host=relay.base + "/t", upload_interval=0.1,
               max_retries=3, on_error=lambda e, batch: errors.append(e))
    c.track(user_id="u", event="Order Completed", properties={"order_id": "O"})
    c.flush()
    c.join()
    assert posts == [(relay.url("/v1/batch"), 401)]  # once, not retried
    (error,) = errors
    assert isinstance(error, segment_request.APIError)
    assert (error.status, error.code) == (401, "unauthorized")
    assert "unknown writeKey" in error.message


class Front:
    """A forwarder in front of the relay that answers the first ``failures`` requests with
    the relay's own 503 (``relay.ingest.segment.fail``: what it answers when the spool
    cannot commit), then passes everything through: as when the relay's disk is full."""

    def __init__(self, relay: RelayProcess, failures: int) -> None:
        self.relay = relay
        self.failures = failures
        self.statuses: list[int] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if len(front.statuses) < front.failures:
                    status, answer, raw = fail(
                        503, "unavailable", "spool not writable; nothing was accepted, "
                        "retry later", {"Retry-After": "1"})
                    data = json.dumps(answer).encode()
                    headers = [(k.decode(), v.decode()) for k, v in raw]
                else:
                    conn = http.client.HTTPConnection("127.0.0.1", front.relay.port, timeout=10)
                    conn.request("POST", self.path, body, dict(self.headers.items()))
                    response = conn.getresponse()
                    status, data = response.status, response.read()
                    headers = [("Content-Type", "application/json")]
                    conn.close()
                front.statuses.append(status)
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


@pytest.fixture
def front(relay: RelayProcess) -> Iterator[Front]:
    f = Front(relay, failures=2)
    yield f
    f.close()


def test_python_library_retries_a_503(relay: RelayProcess, front: Front) -> None:
    c = python_client(front.base + "/t")
    (_, msg) = c.track(user_id="u", event="Order Completed", properties={"order_id": "O-r"},
                        context={"country": "US"})
    c.flush()
    c.join()
    got = wait_archived(relay, {msg["messageId"]}, "the message after two 503s")
    assert front.statuses == [503, 503, 200]
    assert got[msg["messageId"]]["properties"]["order_id"] == "O-r"


NODE_SCRIPT = r"""
const { Analytics } = require('@segment/analytics-node')
const [host, path, writeKey] = process.argv.slice(1)
const a = new Analytics({ writeKey, host, path, flushAt: 3, flushInterval: 200, maxRetries: 3 })
const sent = [], statuses = [], errors = []
a.on('http_request', (r) => { for (const m of JSON.parse(r.body).batch) sent.push(m.messageId) })
a.on('http_response', (r) => statuses.push(r.status))
a.on('error', (e) => errors.push(String(e.reason || e.code || e)))
const ctx = { ip: '203.0.113.9', country: 'US' }
a.track({ userId: 'u_42', event: 'Order Completed', properties: { order_id: 'O-node' },
  context: ctx })
a.identify({ userId: 'u_42', traits: { plan: 'free', email: 'bo@example.com' }, context: ctx })
a.page({ userId: 'u_42', name: 'Docs', properties: { url: 'https://shop.example/docs' },
  context: ctx })
a.screen({ anonymousId: 'anon-2', name: 'Home', context: ctx })
a.group({ userId: 'u_42', groupId: 'acme', traits: { name: 'Acme' }, context: ctx })
a.alias({ previousId: 'anon-2', userId: 'u_42', context: ctx })
a.closeAndFlush({ timeout: 20000 }).then(() => {
  console.log(JSON.stringify({ sent: [...new Set(sent)], statuses, errors }))
})
"""


def run_node(host: str, path: str, write_key: str = WRITE_KEY) -> dict[str, Any]:
    assert (JS / "node_modules" / "@segment" / "analytics-node").is_dir(), (
        "tests/js/node_modules is missing: run `npm ci` in tests/js (.ci/run does)")
    done = subprocess.run(["node", "-e", NODE_SCRIPT, host, path, write_key], cwd=JS,
                          capture_output=True, text=True, timeout=NODE_TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_node_library_every_call(relay: RelayProcess) -> None:
    """The host without the prefix and the path with it: the library builds
    ``new URL(path, host)``, which would drop a path given in the host."""
    out = run_node(relay.base, "/t/v1/batch")
    assert out["errors"] == [] and set(out["statuses"]) == {200}, out
    ids = out["sent"]
    assert len(ids) == 6
    got = wait_archived(relay, set(ids), "the Node library's six messages in the archive")
    assert sorted(e["event"] for e in got.values() if e["event_id"] in ids) == sorted(
        ["Order Completed", "identify", "page_view", "screen_view", "group", "alias"])
    identify = next(got[i] for i in ids if got[i]["event"] == "identify")
    assert identify["properties"] == {"plan": "free"}


def test_node_library_with_the_prefix_in_the_host_misses_the_relay(relay: RelayProcess
                                                                    ) -> None:
    """Why the README says so: ``host: .../t`` posts to ``/v1/batch``, outside the prefix."""
    out = run_node(relay.base + "/t", "/v1/batch")
    assert out["statuses"] and set(out["statuses"]) == {404}, out


def test_node_library_permanent_error_and_retry(relay: RelayProcess, front: Front) -> None:
    wrong = run_node(relay.base, "/t/v1/batch", write_key="not-the-write-key-0000")
    # Six messages at flushAt 3: two batches, each sent once and given up.
    assert wrong["statuses"] == [401, 401] and wrong["errors"], wrong
    out = run_node(front.base, "/t/v1/batch")
    assert front.statuses[:2] == [503, 503] and set(front.statuses[2:]) == {200}, front.statuses
    wait_archived(relay, set(out["sent"]), "the Node library's messages after two 503s")

