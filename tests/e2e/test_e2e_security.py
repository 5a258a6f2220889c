"""The relay's security controls, through real ``relay serve`` processes (SECURITY.md says
what each one stops):

- the correlation cookie: forged, tampered, expired and cross-secret values are replaced,
  never trusted; during a rotation the old secret still verifies and the new one signs;
- webhook source auth: missing, wrong, stale, from the future, a body changed after signing,
  and a replay of a valid signed request (on the same relay, and on another replica sharing
  the Redis state) are all 401; a retry signed afresh is a duplicate, never a second copy;
- the admin listener: every admin path is 404 on the public port, and the admin port binds
  loopback while the public one is elsewhere;
- secret masking: with known secret values, no output of a run contains any of them (logs,
  ``relay check``, ``relay datamap``, the admin pages, the debug feed, metrics, error
  answers, and the log of a relay that fails).
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from itsdangerous import TimestampSigner

from relay.admin.routes import routes as admin_routes

from .conftest import MakeRelay, MakeVendor
from .relayproc import BACKEND_SECRET, RELAY_SECRET, RelayProcess, free_port, run_cli
from .rulesdir import make_rules, webhook
from .wire import (
    US,
    DebugStream,
    archived,
    client,
    new_event_id,
    page_view,
    post_backend,
    post_browser,
    purchase,
    signature,
    wait_until,
)

COOKIE = "_rc"
SALT = "relay.correlation"  # relay.engine.identity's; a forger would know it (it is public)
OLD_SECRET = "e2e-old-cookie-secret-retired-7f3a"
ATTACKER_SECRET = "an-attacker-guessing-the-secret-1"


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with client() as c:
        yield c


# -- the correlation cookie ---------------------------------------------------------------

def rotating_rules(directory: Path) -> Path:
    """The shipped rules with the cookie secret a list, oldest first: a rotation."""
    rules = make_rules(directory)
    relay_yaml = rules / "relay.yaml"
    text = relay_yaml.read_text()
    assert "secret: ${RELAY_SECRET:-}" in text
    relay_yaml.write_text(text.replace("secret: ${RELAY_SECRET:-}",
                                       'secret: ["${OLD_COOKIE_SECRET}", "${RELAY_SECRET}"]'))
    return rules


def signed(secret: str, cid: str, at: int | None = None) -> str:
    """A cookie value as the relay makes them, signed with ``secret`` at unix time ``at``."""

    class At(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) if at is None else at

    return At(secret, salt=SALT).sign(cid).decode()


def cid_of(value: str) -> str:
    return value.split(".", 1)[0]


def set_cookie(r: httpx.Response) -> str:
    values = [v for v in r.headers.get_list("set-cookie") if v.startswith(COOKIE + "=")]
    assert len(values) == 1, r.headers.get_list("set-cookie")
    return values[0].split(";", 1)[0].partition("=")[2]


def correlation_of(relay: RelayProcess, eid: str) -> str | None:
    line = wait_until(lambda: next((e for e in archived(relay) if e["event_id"] == eid), None),
                      20, f"{eid} in var/events.jsonl")
    cid: str | None = line.get("correlation_id")
    return cid


def send_with(http: httpx.Client, relay: RelayProcess, cookie: str) -> tuple[str, str]:
    """(the event's id, the cookie the relay set) for a page view sent with ``cookie``."""
    eid = new_event_id("cookie")
    r = post_browser(http, relay, page_view(eid), headers={"Cookie": f"{COOKIE}={cookie}"})
    http.cookies.clear()
    assert r.status_code == 202, r.text
    return eid, set_cookie(r)


def test_cookies_are_trusted_only_when_signed_by_a_current_secret_and_fresh(
        relays: MakeRelay, tmp_path: Path, http: httpx.Client) -> None:
    relay = relays(rotating_rules(tmp_path / "rotating"), env={"OLD_COOKIE_SECRET": OLD_SECRET})
    trusted = {
        "signed by the new secret": signed(RELAY_SECRET, secrets.token_urlsafe(12)),
        "signed by the old secret (rotation)": signed(OLD_SECRET, secrets.token_urlsafe(12)),
    }
    good = signed(RELAY_SECRET, secrets.token_urlsafe(12))
    head, _, sig = good.rpartition(".")
    replaced = {
        "forged with another secret": signed(ATTACKER_SECRET, secrets.token_urlsafe(12)),
        "expired (signed 2 hours ago, max_age 30m)": signed(
            RELAY_SECRET, secrets.token_urlsafe(12), at=int(time.time()) - 7200),
        "signed in the future": signed(RELAY_SECRET, secrets.token_urlsafe(12),
                                       at=int(time.time()) + 7200),
        "signature changed": head + "." + ("A" if sig[0] != "A" else "B") + sig[1:],
        "id changed": ("X" if good[0] != "X" else "Y") + good[1:],  # never the same id
        "timestamp changed": ".".join([cid_of(good), "AAAAAA", sig]),
        "unsigned": secrets.token_urlsafe(12),
        "empty": "",
    }
    for why, value in trusted.items():
        eid, fresh = send_with(http, relay, value)
        assert cid_of(fresh) == cid_of(value), why
        assert correlation_of(relay, eid) == cid_of(value), why
        # What the relay sets is signed by the newest secret, whichever signed the visit.
        assert TimestampSigner(RELAY_SECRET, salt=SALT).validate(fresh), (why, fresh)
    for why, value in replaced.items():
        eid, fresh = send_with(http, relay, value)
        assert cid_of(fresh) != cid_of(value), why
        assert correlation_of(relay, eid) not in (cid_of(value), None), why
        assert TimestampSigner(RELAY_SECRET, salt=SALT).validate(fresh), (why, fresh)
        assert not TimestampSigner(OLD_SECRET, salt=SALT).validate(fresh), why


def test_after_the_rotation_the_retired_secret_is_not_trusted(relays: MakeRelay,
                                                              http: httpx.Client) -> None:
    relay = relays()  # RELAY_SECRET only: OLD_SECRET has been dropped from the list
    value = signed(OLD_SECRET, secrets.token_urlsafe(12))
    eid, fresh = send_with(http, relay, value)
    assert cid_of(fresh) != cid_of(value)
    assert correlation_of(relay, eid) != cid_of(value)


# -- webhook source auth ------------------------------------------------------------------

def test_webhook_auth_refuses_every_unauthentic_request(relays: MakeRelay,
                                                        http: httpx.Client) -> None:
    relay = relays()
    body = json.dumps(purchase()).encode()
    now = int(time.time())
    url = relay.url("/hook/backend")
    bad = {
        "no signature": {},
        "an empty signature": {"X-Relay-Signature": ""},
        "no t": {"X-Relay-Signature": signature(BACKEND_SECRET, body, now).split(",", 1)[1]},
        "no v1": {"X-Relay-Signature": f"t={now}"},
        "a wrong secret": {"X-Relay-Signature": signature("not-the-secret", body, now)},
        "stale (an hour old)": {"X-Relay-Signature": signature(BACKEND_SECRET, body, now - 3600)},
        "from the future": {"X-Relay-Signature": signature(BACKEND_SECRET, body, now + 3600)},
        "t not a number": {"X-Relay-Signature": "t=soon,v1=" + "0" * 64},
        "a bearer token instead": {"Authorization": f"Bearer {BACKEND_SECRET}"},
    }
    for why, headers in bad.items():
        r = http.post(url, content=body, headers={"Content-Type": "application/json", **headers})
        assert r.status_code == 401, (why, r.status_code, r.text)
        assert r.json()["error"].startswith("source backend: "), (why, r.text)
    # The body changed after signing: one byte more, one byte different, another event.
    sig = signature(BACKEND_SECRET, body, now)
    for changed in (body + b" ", body.replace(b"USD", b"EUR"),
                    json.dumps(purchase()).encode()):
        r = http.post(url, content=changed, headers={"Content-Type": "application/json",
                                                     "X-Relay-Signature": sig})
        assert r.status_code == 401, (changed, r.text)
    assert not archived(relay) or all(e["event"] != "purchase" for e in archived(relay))


def test_a_replayed_signed_request_is_refused(relays: MakeRelay, http: httpx.Client) -> None:
    relay = relays()
    event = purchase()
    body = json.dumps(event).encode()
    headers = {"Content-Type": "application/json",
               "X-Relay-Signature": signature(BACKEND_SECRET, body)}
    first = http.post(relay.url("/hook/backend"), content=body, headers=headers)
    assert first.status_code == 202 and first.json()["accepted"] == 1, first.text
    for _ in range(3):
        again = http.post(relay.url("/hook/backend"), content=body, headers=headers)
        assert again.status_code == 401, again.text
        assert "already received (a replay)" in again.json()["error"], again.text
    # The backend's retry, signed afresh: a duplicate, not a second delivery.
    retry = post_backend(http, relay, event, t=int(time.time()) - 1)
    assert retry.status_code == 202 and retry.json()["duplicates"] == 1, retry.text
    copies = wait_until(lambda: [e for e in archived(relay)
                                 if e["event_id"] == event["event_id"]] or None,
                        20, "the purchase in var/events.jsonl")
    time.sleep(0.5)  # let a wrongly accepted second copy land, if there were one
    assert len([e for e in archived(relay) if e["event_id"] == event["event_id"]]) == \
        len(copies) == 1


def test_a_replay_on_another_replica_is_refused(relays: MakeRelay, redis_url: str,
                                                http: httpx.Client) -> None:
    env = {"RELAY_STATE": redis_url}
    a, b = relays(env=env, name="a"), relays(env=env, name="b")
    body = json.dumps(purchase()).encode()
    headers = {"Content-Type": "application/json",
               "X-Relay-Signature": signature(BACKEND_SECRET, body)}
    assert http.post(a.url("/hook/backend"), content=body, headers=headers).status_code == 202
    r = http.post(b.url("/hook/backend"), content=body, headers=headers)
    assert r.status_code == 401 and "a replay" in r.text, r.text


# -- the admin listener -------------------------------------------------------------------

def admin_paths() -> list[str]:
    """Every path the admin app routes, with its parameters filled in."""
    return sorted({re.sub(r"\{[^}]+\}", "x", getattr(r, "path", "")) for r in admin_routes()})


def test_no_admin_path_answers_on_the_public_port(relays: MakeRelay, http: httpx.Client) -> None:
    relay = relays()
    paths = admin_paths()
    assert {"/metrics", "/readyz", "/rules", "/dlq", "/debug", "/forget",
            "/openapi.yaml"} <= set(paths), paths
    for path in paths:
        if path != "/debug/stream":  # an endless stream, read in test_no_output_...
            assert http.get(relay.admin_url(path)).status_code != 404, path  # the admin has it
        for public in (relay.base + path, relay.url(path), relay.base + "/t/.." + path,
                       relay.base + "//" + path.lstrip("/")):
            for method in ("GET", "POST"):
                r = http.request(method, public, content=b"{}",
                                 headers={"Content-Type": "application/json"})
                assert r.status_code in (404, 405), (method, public, r.status_code)
                assert r.status_code == 404 or public == relay.url("/e"), (method, public)
                assert "relay_" not in r.text and "rules_version" not in r.text, public


class ElsewhereRelay(RelayProcess):
    """A relay whose public listener is on another loopback address (127.0.0.2), as a
    public address would be; the admin listener stays where the rules put it."""

    HOST = "127.0.0.2"

    @property
    def base(self) -> str:
        return f"http://{self.HOST}:{self.port}"

    def command(self) -> list[str]:
        return [*super().command(), "--host", self.HOST]


def test_the_admin_port_binds_loopback_by_default(tmp_path: Path, http: httpx.Client) -> None:
    relay = ElsewhereRelay(tmp_path / "elsewhere", make_rules(tmp_path / "elsewhere" / "rules"),
                           name="elsewhere")
    try:
        relay.start()
        assert http.get(relay.url("/healthz")).status_code == 200
        assert http.get(f"http://127.0.0.1:{relay.admin_port}/readyz").status_code == 200
        with pytest.raises(OSError):  # nothing listens there: the admin port is not public
            socket.create_connection((ElsewhereRelay.HOST, relay.admin_port), timeout=5).close()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", relay.port), timeout=5).close()
    finally:
        relay.close()


# -- secrets masked in every output -------------------------------------------------------

HOOK_SECRET = "e2e-destination-hook-secret-c0ffee"
WRITE_KEY = "e2e-segment-write-key-f00dcafe"
ADMIN_TOKEN = "e2e-admin-token-d15ea5e"
URL_PASSWORD = "e2e-url-password-b0a710ad"
KNOWN = (RELAY_SECRET, BACKEND_SECRET, HOOK_SECRET, WRITE_KEY, ADMIN_TOKEN, URL_PASSWORD)


def leaks(text: str) -> list[str]:
    return [s for s in KNOWN if s in text]


def test_no_output_of_a_run_shows_a_secret(relays: MakeRelay, vendors: MakeVendor,
                                           tmp_path: Path) -> None:
    vendor = vendors(secret=HOOK_SECRET, name="masked")
    broken = vendors(name="broken")
    broken.respond(400)  # its copies are dead letters, with the vendor's answer
    rules = make_rules(
        tmp_path / "secret-rules",
        relay={"admin": {"token": "${ADMIN_TOKEN}"}},
        sources={"apps": {"type": "segment", "write_keys": ["${SEGMENT_KEY}"]}},
        destinations={
            "signed": webhook(vendor, pipeline=None),
            # A credential in a URL: masked wherever the URL is shown.
            "broken": {**webhook(broken, retry={"attempts": 1, "base_backoff": "100ms",
                                               "max_backoff": "1s", "max_age": "1h"}),
                       "settings": {"url": broken.url.replace(
                           "http://", f"http://user:{URL_PASSWORD}@")}},
        },
    )
    env = {"ADMIN_TOKEN": ADMIN_TOKEN, "SEGMENT_KEY": WRITE_KEY}
    relay = relays(rules, env=env)
    outputs: dict[str, str] = {}
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with client() as http, DebugStream(relay, query=f"token={ADMIN_TOKEN}") as debug:
        eids = [new_event_id("masked") for _ in range(3)]
        for eid in eids:
            r = post_browser(http, relay, page_view(eid, user={"email": "ann@example.com"}))
            assert r.status_code == 202, r.text
        assert post_backend(http, relay, purchase()).status_code == 202
        r = http.post(relay.url("/v1/track"), auth=(WRITE_KEY, ""),
                      json={"event": "page_view", "messageId": new_event_id(), "userId": "u1"})
        assert r.status_code == 200, r.text
        # Error answers, including ones about the secrets themselves.
        for name, response in {
            "wrong hmac": http.post(relay.url("/hook/backend"), content=b"{}", headers={
                "Content-Type": "application/json",
                "X-Relay-Signature": signature(BACKEND_SECRET[:-1], b"{}")}),
            "wrong write key": http.post(relay.url("/v1/track"), auth=(WRITE_KEY + "x", ""),
                                         json={"event": "x"}),
            "wrong admin token": http.get(relay.admin_url("/rules"),
                                          headers={"Authorization": "Bearer " + ADMIN_TOKEN[:-1]}),
            "bad json": http.post(relay.url("/e"), content=b"{" + RELAY_SECRET[:8].encode(),
                                  headers={"Content-Type": "application/json", **US}),
        }.items():
            outputs[f"answer: {name}"] = (f"{response.status_code} {response.headers} "
                                          f"{response.text}")
        wait_until(lambda: all(vendor.delivered()[e] for e in eids), 20, "deliveries")
        wait_until(lambda: broken.attempts() >= 1, 20, "the broken destination tried")
        wait_until(lambda: http.get(relay.admin_url("/dlq"), headers=auth).json() or None, 20,
                   "a dead letter")
        wait_until(lambda: "delivered" in debug.text or None, 20, "deliveries in the debug feed")
        for path in ("/metrics", "/rules", "/readyz", "/dlq", "/quarantine", "/reconcile.json",
                     "/debug", "/openapi.yaml"):
            r = http.get(relay.admin_url(path), headers=auth)
            assert r.status_code == 200, (path, r.status_code)
            outputs[f"admin {path}"] = r.text
        outputs["debug feed"] = debug.text
    for command in (["check"], ["check", "--strict"], ["datamap"], ["datamap", "--format", "json"],
                    ["trace", eids[0]], ["trace", eids[0], "--format", "json"],
                    ["reconcile", "--format", "json"], ["dlq", "list"], ["test"]):
        done = relay.cli(*command)
        outputs["relay " + " ".join(command)] = done.stdout + done.stderr
    relay.stop()
    outputs["relay serve's log"] = relay.log_text() + relay.stdout_text()
    assert outputs["relay datamap"].strip() and outputs["admin /rules"].count("***") >= 4
    assert "Traceback" not in outputs["relay serve's log"]
    found = {where: leaks(text) for where, text in outputs.items() if leaks(text)}
    assert not found, found


def test_a_relay_whose_state_store_is_down_shows_no_secret(tmp_path: Path,
                                                          relays: MakeRelay) -> None:
    """A Redis state store with a password in its URL, and nothing listening there: each
    request is a 503 (nothing accepted, retry later), and no output shows the password."""
    closed = free_port()
    rules = make_rules(tmp_path / "failing-rules",
                       sources={"apps": {"type": "segment", "write_keys": ["${SEGMENT_KEY}"]}})
    relay_yaml = rules / "relay.yaml"
    relay_yaml.write_text(re.sub(r"(?m)^  state: .*$",
                                 f"  state: redis://:{URL_PASSWORD}@127.0.0.1:{closed}/0",
                                 relay_yaml.read_text()))
    env = {"SEGMENT_KEY": WRITE_KEY}
    outputs = {}
    check = run_cli(["check", "--rules", str(rules)], cwd=tmp_path, env=env)
    outputs["relay check"] = check.stdout + check.stderr
    relay = relays(rules, env=env, name="failing", start=False)
    try:
        relay.start(timeout=20)
        with client() as http:  # the state store is down: every event is refused, retryable
            for r in (post_browser(http, relay, page_view()),
                      post_backend(http, relay, purchase())):
                outputs[f"answer {r.url}"] = f"{r.status_code} {r.headers} {r.text}"
                assert r.status_code == 503 and r.headers["retry-after"], r.text
                assert "nothing was accepted" in r.text, r.text
    finally:
        relay.close()
    outputs["log"] = relay.log_text() + relay.stdout_text()
    assert URL_PASSWORD not in outputs["relay check"]
    found = {where: leaks(text) for where, text in outputs.items() if leaks(text)}
    assert not found, found
    assert outputs["log"].strip(), "the failing relay logged nothing"
