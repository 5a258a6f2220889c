"""Privacy invariants, searched for in everything the relay writes.

Events come through the browser, webhook and Segment endpoints and carry raw IPs (v4 and
v6: X-Forwarded-For with trusted_hops 1 for the browser, ``context.ip`` from the backend and
Segment), emails, phone numbers, user agents, an anonymous id and cookie values, in the
envelope, URLs, properties and headers. None of them may appear in the relay's log,
/metrics, the SQLite spool (the database file AND its WAL), the delivery ledger (var/ledger.db
and its WAL), ``relay trace`` (text and JSON), the /debug stream, /quarantine, /dlq, /rules
or ``relay dlq list``. The shipped ``minimize`` pipeline also keeps the raw IP, email, phone
and user agent out of what destinations receive (the archive file and the stand-in vendors).
A copy suppressed by consent never touches the spool.
"""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path
from typing import Any

from .conftest import MakeRelay, MakeVendor
from .relayproc import BACKEND_SECRET, RELAY_SECRET, RelayProcess
from .rulesdir import edit, webhook
from .wire import DebugStream, archived, client, new_event_id, post_backend, wait_until

RAW_IP = "203.0.113.77"
SPOOFED_IP = "198.51.100.23"  # the client's own X-Forwarded-For entry, not trusted
RAW_IP6 = "2001:db8:85a3:4c1d:8a2e:370:7334:1"
BACKEND_IP = "192.0.2.201"
SEGMENT_IP = "198.51.100.144"
SEGMENT_IP6 = "2001:db8:5e9:77aa:bb01:cc02:dd03:4"
SEGMENT_KEY = "e2e-segment-write-key-7f3a9c21d0"
ANONYMOUS_ID = "anon-privacy-probe-3d8e1f"
EMAIL = "Privacy.Probe+e2e@Example.org"
PHONE = "+1 (555) 010-4477"
UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
      "Chrome/125.0.0.0 Safari/537.36 PrivacyProbe/7.7")
GA_COOKIE = "GA1.1.987654321.1700000000"
SESSION_COOKIE = "SessPrivacyProbe42"
SUPPRESSED_MARKER = "suppressed-marker-5f2c9"
PENDING_MARKER = "pending-consent-marker-81d3"

# What must never show, however written. The raw IPs' truncated forms (/24, /48) are allowed.
PERSONAL = {
    "raw IP": [RAW_IP, SPOOFED_IP, BACKEND_IP, SEGMENT_IP, "8a2e:370:7334", "4c1d:8a2e",
               "77aa:bb01", "cc02:dd03"],
    "email": [EMAIL, EMAIL.lower(), "privacy.probe", "privacy.probe%2be2e"],
    "phone": [PHONE, "010-4477", "5550104477", "555) 010", "555 010 4477"],
    "user agent": [UA, "PrivacyProbe"],
}


def _find(haystack: bytes, needles: dict[str, list[str]]) -> list[str]:
    low = haystack.lower()
    return [f"{what}: {n!r}" for what, ns in needles.items() for n in ns
            if n.lower().encode() in low]


def _spool_bytes(relay: RelayProcess) -> bytes:
    files = [relay.spool_path, Path(f"{relay.spool_path}-wal"), Path(f"{relay.spool_path}-shm")]
    return b"".join(p.read_bytes() for p in files if p.exists())


def _quarantine_unknown_events(relay: RelayProcess) -> None:
    def change(data: dict[str, Any]) -> None:
        data["events"]["*"] = "quarantine"

    edit(relay.rules_dir / "events.yaml", change)


def _unknown_event(name: str) -> dict[str, Any]:
    """An event with no contract, carrying every kind of personal data a client can send."""
    return {
        "event": name, "event_id": new_event_id("quar"),
        "user": {"id": "u-privacy", "email": EMAIL, "phone": PHONE},
        "context": {"page": {"url": f"https://shop.example/?email={EMAIL}&phone=5550104477",
                             "title": f"Hi {EMAIL}"}},
        "properties": {"note": f"call {PHONE} or mail {EMAIL}", "seen_from": RAW_IP,
                       "mobile": "5550104477", "userAgent": UA},
    }


def _ledger_bytes(relay: RelayProcess) -> bytes:
    files = sorted(relay.var_dir.glob("ledger.db*"))
    assert files, f"no ledger under {relay.var_dir}"
    return b"".join(p.read_bytes() for p in files)


def _segment_messages() -> list[dict[str, Any]]:
    """What analytics.js and analytics-node send, with personal data everywhere."""
    context = {"ip": SEGMENT_IP, "userAgent": UA,
               "page": {"url": f"https://shop.example/?email={EMAIL}&utm_source=news",
                        "referrer": f"https://mail.example/?from={EMAIL}"}}
    return [
        {"type": "page", "messageId": new_event_id("seg"), "anonymousId": ANONYMOUS_ID,
         "userId": "u-privacy", "traits": {"email": EMAIL, "phone": PHONE},
         "context": context, "properties": {"note": f"call {PHONE} or mail {EMAIL}"}},
        {"type": "track", "event": "signup", "messageId": new_event_id("seg"),
         "anonymousId": ANONYMOUS_ID, "context": {**context, "ip": SEGMENT_IP6},
         "properties": {"plan": "pro", "contact": f"{EMAIL} / {PHONE}"}},
    ]


def test_no_personal_data_in_logs_metrics_spool_ledger_trace_debug_or_dlq(
        relays: MakeRelay, vendors: MakeVendor) -> None:
    rejecting = vendors(name="rejecting")  # 400: the copies go to the dead-letter store
    rejecting.respond(400, body=b'{"error":"e2e-vendor refuses"}')
    down = vendors(name="down")  # 503: the copies stay in the spool, retried
    down.respond(503, body=b'{"error":"e2e-vendor down"}')
    slow_retry = {"attempts": 1000, "base_backoff": "1s", "max_backoff": "2s", "max_age": "1h"}
    relay = relays(
        relay={"client_ip": {"header": "X-Forwarded-For", "trusted_hops": 1}},
        destinations={"rejecting": webhook(rejecting), "down": webhook(down, retry=slow_retry)},
        sources={"apps": {"type": "segment", "write_keys": [SEGMENT_KEY]}},
        start=False,
    )
    _quarantine_unknown_events(relay)
    # The pages below are on https://shop.example, the relay on 127.0.0.1: allow the site.
    edit(relay.rules_dir / "sources.yaml", lambda d: d["sources"]["browser"].update(
        {"allowed_origins": ["https://shop.example"]}))
    relay.start()
    with client() as http, DebugStream(relay) as debug:
        r = http.post(relay.url("/e"), json={"event": "page_view", "event_id": new_event_id()},
                      headers={"CF-IPCountry": "US"})
        assert r.status_code == 202, r.text
        rc = r.cookies.get("_rc")
        assert rc, r.headers
        cid = rc.split(".", 1)[0]
        http.cookies.clear()
        cookie_values = {"cookie": [rc, rc.rsplit(".", 1)[1], GA_COOKIE, SESSION_COOKIE]}
        headers = {
            "X-Forwarded-For": f"{SPOOFED_IP}, {RAW_IP}", "User-Agent": UA, "CF-IPCountry": "US",
            "Cookie": f"_rc={rc}; _ga={GA_COOKIE}; sessionid={SESSION_COOKIE}",
            "Referer": f"https://shop.example/account?email={EMAIL}",
        }
        ids = [new_event_id("priv") for _ in range(4)]
        browser_events = [
            {"event": "page_view", "event_id": ids[0],
             "user": {"id": "u-privacy", "email": EMAIL, "phone": PHONE},
             "context": {"page": {
                 "url": "https://shop.example/account?email=privacy.probe%2Be2e%40example.org"
                        "&phone=5550104477&utm_source=news",
                 "referrer": f"https://mail.example/?from={EMAIL}",
                 "title": f"Account of {EMAIL}"}},
             "properties": {"note": f"call {PHONE} or mail {EMAIL}", "ua_copy": "none"}},
            {"event": "page_view", "event_id": ids[1], "user": {"email": f"  {EMAIL.upper()} "}},
        ]
        r = http.post(relay.url("/e"), json=browser_events, headers=headers)
        assert r.status_code == 202 and r.json()["accepted"] == 2, r.text
        v6 = {**headers, "X-Forwarded-For": RAW_IP6}
        r = http.post(relay.url("/e"), json={"event": "page_view", "event_id": ids[2]},
                      headers=v6)
        assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
        http.cookies.clear()
        r = post_backend(http, relay, {
            "event": "purchase", "event_id": ids[3],
            "user": {"email": EMAIL, "phone": PHONE},
            "context": {"ip": BACKEND_IP, "user_agent": UA, "country": "US"},
            "properties": {"order_id": "O-priv-1", "value": 5, "currency": "USD"}})
        assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
        segment = _segment_messages()
        auth = "Basic " + base64.b64encode(f"{SEGMENT_KEY}:".encode()).decode()
        r = http.post(relay.url("/v1/batch"), json={"batch": segment},
                      headers={"Authorization": auth, "User-Agent": UA,
                               "X-Forwarded-For": RAW_IP6})
        assert r.status_code == 200 and r.json() == {"success": True}, r.text
        ids += [m["messageId"] for m in segment]
        # Consent denied: suppressed everywhere, so it must never reach the spool; nor may
        # an EU event waiting for a consent choice.
        r = http.post(relay.url("/e"), json={"event": "page_view", "event_id": new_event_id(),
                                             "consent": {"analytics": "denied"},
                                             "properties": {"marker": SUPPRESSED_MARKER}},
                      headers={"CF-IPCountry": "US"})
        assert r.status_code == 202, r.text
        r = http.post(relay.url("/e"), json={"event": "page_view", "event_id": new_event_id(),
                                             "properties": {"marker": PENDING_MARKER}},
                      headers={"CF-IPCountry": "DE"})
        assert r.status_code == 202, r.text
        # No contract: quarantined, with all of it in the payload and the name.
        unknown = _unknown_event(f"call 555 010 4477 from {RAW_IP}")
        r = http.post(relay.url("/e"), json=unknown, headers=headers)
        assert r.status_code == 202 and r.json().get("quarantined") == 1, r.text

        def settled() -> bool:
            letters = http.get(relay.admin_url("/dlq")).json()
            in_archive = {e["event_id"] for e in archived(relay)}
            return (len(letters) >= len(ids) and set(ids) <= in_archive
                    and down.attempts() >= 1)

        wait_until(settled, 20, "the copies archived, dead-lettered and retried")
        time.sleep(0.5)  # let the debug stream and the log catch up
        metrics_text = http.get(relay.admin_url("/metrics")).text
        quarantine = http.get(relay.admin_url("/quarantine"))
        assert quarantine.status_code == 200 and len(quarantine.json()) == 1, quarantine.text
        dlq_text = http.get(relay.admin_url("/dlq")).text
        rules_text = http.get(relay.admin_url("/rules")).text
        every_key = {"by": "day,event,source,destination"}
        reconcile_page = http.get(relay.admin_url("/reconcile"), params=every_key)
        reconcile_json = http.get(relay.admin_url("/reconcile.json"), params=every_key)
        assert reconcile_page.status_code == reconcile_json.status_code == 200
    dlq_cli = relay.cli("dlq", "list")
    reconcile_cli = relay.cli("reconcile", "--by", "day,event,source,destination")
    assert reconcile_cli.returncode == 0, reconcile_cli.stderr
    assert dlq_cli.returncode == 0, dlq_cli.stderr
    traces = b""
    for event_id in ids:
        for form in ("text", "json"):
            done = relay.cli("trace", event_id, "--format", form)
            assert done.returncode == 0, done.stderr
            traces += (done.stdout + done.stderr).encode()
    assert b"spooled" in traces and b"delivered" in traces
    entries = debug.entries()
    assert len(entries) >= 5, f"the debug stream showed {len(entries)} events: {debug.text[:500]}"
    assert debug.error is None, debug.error

    never = {**PERSONAL, **cookie_values, "correlation id": [cid],
             "anonymous id": [ANONYMOUS_ID]}
    secrets = {"secret": [RELAY_SECRET, BACKEND_SECRET]}
    places = {
        "relay stderr log": (relay.log_text().encode(), {**never, **secrets}),
        "/metrics": (metrics_text.encode(), {**never, **secrets}),
        "/debug/stream": (debug.raw, {**never, **secrets}),
        "/quarantine": (quarantine.content, {**never, **secrets}),
        "/dlq": (dlq_text.encode(), {**never, **secrets}),
        "relay dlq list": ((dlq_cli.stdout + dlq_cli.stderr).encode(), {**never, **secrets}),
        "/rules": (rules_text.encode(), {**never, **secrets, "write key": [SEGMENT_KEY]}),
        "/reconcile and /reconcile.json": (reconcile_page.content + reconcile_json.content,
                                           {**never, **secrets}),
        "relay reconcile": ((reconcile_cli.stdout + reconcile_cli.stderr).encode(),
                            {**never, **secrets}),
        "delivery ledger (db, WAL)": (_ledger_bytes(relay), {**never, **secrets}),
        "relay trace (text, json)": (traces, {**never, **secrets}),
        # The spool holds what destinations receive: the correlation id may be in it.
        "SQLite spool (db, WAL, shm)": (_spool_bytes(relay),
                                        {**PERSONAL, **cookie_values, **secrets,
                                         "suppressed copy": [SUPPRESSED_MARKER],
                                         "copy pending consent": [PENDING_MARKER]}),
        "archive (file destination, minimize)": (relay.archive_path.read_bytes(),
                                                  {**PERSONAL, **cookie_values}),
        "stand-in vendors' requests": (
            b"".join(r.body + json.dumps(r.headers).encode()
                     for v in (rejecting, down) for r in v.received),
            {**PERSONAL, **cookie_values, **secrets}),
    }
    leaks = {place: found for place, (data, needles) in places.items()
             if (found := _find(data, needles))}
    assert not leaks, f"personal data found: {json.dumps(leaks, indent=1)}"
    assert _spool_bytes(relay), "no spool file to search"
    assert rejecting.problems == [] and down.problems == []


ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
MASKED_IP = re.compile(r"^(\d+\.\d+\.\d+\.0) (#[0-9a-f]{8})$")


def test_the_debug_view_shows_real_times_and_tells_addresses_apart(relays: MakeRelay) -> None:
    """Masked by meaning: the event's own time and the URL's host and port are shown as
    they are, and each address is its network plus a keyed tag of its own."""
    relay = relays(relay={"client_ip": {"header": "X-Forwarded-For", "trusted_hops": 1}},
                   start=False)
    _quarantine_unknown_events(relay)
    relay.start()
    when = "2026-11-28T19:20:17.188Z"
    with client() as http, DebugStream(relay) as debug:
        for ip in ("203.0.113.77", "198.51.100.23"):
            r = http.post(relay.url("/e"), json={
                "event": "page_view", "event_id": new_event_id(), "time": when,
                "context": {"page": {"url": "http://127.0.0.1:8080/p?utm_source=news"}}},
                headers={"X-Forwarded-For": ip, "CF-IPCountry": "US", "User-Agent": UA})
            assert r.status_code == 202, r.text
            http.cookies.clear()
        for ip in ("203.0.113.77", "203.0.113.78"):  # one network, two visitors
            r = http.post(relay.url("/e"), json={"event": "newsletter_signup", "time": when},
                          headers={"X-Forwarded-For": ip, "CF-IPCountry": "US"})
            assert r.status_code == 202 and r.json().get("quarantined") == 1, r.text
            http.cookies.clear()
        wait_until(lambda: len(debug.entries()) >= 4, 10, "four events in the debug stream")
        quarantine = http.get(relay.admin_url("/quarantine")).json()
    views = [e for e in debug.entries() if e.get("event") == "page_view"]
    assert len(views) == 2, debug.text[:2000]
    sent = [v["copies"][0]["sent"] for v in views]
    for view, copy in zip(views, sent, strict=True):
        assert copy["time"] == when
        assert ISO_MS.match(copy["received_at"]), copy["received_at"]
        assert copy["context"]["page"]["url"] == "http://127.0.0.1:8080/p"
        assert copy["correlation_id"] == view["cid"]  # what ?cid= takes
    ips = [MASKED_IP.match(c["context"]["ip"]) for c in sent]
    assert all(ips), [c["context"]["ip"] for c in sent]
    assert [m.group(1) for m in ips if m] == ["203.0.113.0", "198.51.100.0"]
    assert len({m.group(2) for m in ips if m}) == 2  # not one tag for every address
    # Quarantine keeps the event as it arrived: both visitors of 203.0.113.0/24 stay apart.
    assert len(quarantine) == 2, quarantine
    held = [MASKED_IP.match(q["payload"]["context"]["ip"]) for q in quarantine]
    assert all(held), quarantine
    assert {m.group(1) for m in held if m} == {"203.0.113.0"}
    assert len({m.group(2) for m in held if m}) == 2
    assert all(q["payload"]["time"] == when for q in quarantine)
