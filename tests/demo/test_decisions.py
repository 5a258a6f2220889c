"""The demo's reading of its relay's debug feed: decisions per event and destination with the
consent choice that made them (``decisions``, ``consent``), and the pairing of stand-in
requests with the relay's delivery reports (``inbox``, ``feed``)."""

from __future__ import annotations

from typing import Any

from relay.demo.consent import cell_text, table
from relay.demo.decisions import Cell, Decisions, Row
from relay.demo.feed import take
from relay.demo.inbox import Inbox
from relay.demo.lineup import Vendor
from relay.demo.record import Recorder
from relay.demo.standins.base import Answer, Call, Took

VENDORS = [Vendor("ga4", "ga4", "ga4", "GA4", "analytics", None, "", None),
           Vendor("meta", "meta", "meta_capi", "Meta", "ads", None, "", None)]


def copy(dest: str, outcome: str, purpose: str | None = None, detail: str = "") -> dict[str, Any]:
    return {"destination": dest, "outcome": outcome, "purpose": purpose, "detail": detail,
            "sent": None}


def entry(event_id: str, event: str, status: str, *copies: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": event_id, "event": event, "status": status, "cid": "c1",
            "copies": list(copies), "notes": [], "error": None}


def test_a_choice_releases_what_waited_and_decides_what_follows() -> None:
    recorder = Recorder()
    recorder.client_sent("browser", [
        {"event": "page_view", "event_id": "pv"},
        {"event": "consent_update", "event_id": "c", "consent": {"analytics": "granted"}},
        {"event": "consent_update", "event_id": "d", "consent": {"ads": "denied"}},
        {"event": "add_to_cart", "event_id": "a"}])
    decisions = Decisions(recorder)
    decisions.entry(entry("pv", "page_view", "accepted",
                          copy("ga4", "held", "analytics"), copy("meta", "held", "ads")))
    decisions.entry(entry("c", "consent_update", "accepted"))
    decisions.entry(entry("pv", "page_view", "released", copy("ga4", "delivered"),
                          copy("meta", "held", "ads")))
    decisions.entry(entry("d", "consent_update", "accepted"))
    decisions.entry(entry("pv", "page_view", "released",
                          copy("meta", "suppressed", "ads", "ads: explicit denial")))
    decisions.entry(entry("a", "add_to_cart", "accepted", copy("ga4", "delivered"),
                          copy("meta", "suppressed", "ads", "ads: explicit denial")))
    [first, second] = decisions.choices
    assert (first.n, first.consent) == (1, {"analytics": "granted"})
    assert second.consent == {"analytics": "granted", "ads": "denied"}  # merged, as remembered
    pv, cart = decisions.rows
    assert pv.sent is not None and pv.sent.event["event_id"] == "pv" and pv.choice is None
    assert (pv.cells["ga4"].outcome, pv.cells["ga4"].choice) == ("delivered", 1)
    assert (pv.cells["meta"].outcome, pv.cells["meta"].choice) == ("suppressed", 2)
    assert cart.choice == 2 and cart.cells["ga4"].choice is None
    assert decisions.delivered("pv", "ga4") is pv and decisions.delivered("pv", "meta") is None

    shown = table(decisions, VENDORS)
    kinds = [(line["kind"], line.get("event") or line.get("n")) for line in shown["lines"]]
    assert kinds == [("event", "page_view"), ("choice", 1), ("choice", 2),
                     ("event", "add_to_cart")]
    texts = {line["event"]: {k: c["text"] for k, c in line["cells"].items()}
             for line in shown["lines"] if line["kind"] == "event"}
    assert texts["page_view"] == {"ga4": "sent after choice 1",
                                  "meta": "suppressed after choice 2 (ads: explicit denial)"}
    assert texts["add_to_cart"] == {"ga4": "sent", "meta": "suppressed (ads: explicit denial)"}


def test_the_same_event_id_from_the_browser_then_the_backend_is_two_rows() -> None:
    recorder = Recorder()
    recorder.client_sent("browser", [{"event": "purchase", "event_id": "o"}])
    recorder.client_sent("backend", [{"event": "purchase", "event_id": "o"}])
    recorder.client_sent("browser", [{"event": "purchase", "event_id": "o"}])
    decisions = Decisions(recorder)
    decisions.entry(entry("o", "purchase", "held"))
    decisions.entry(entry("o", "purchase", "accepted", copy("ga4", "delivered")))
    decisions.entry(entry("o", "purchase", "duplicate"))
    held, confirmed, again = decisions.rows
    assert [r.sent.source if r.sent else None for r in decisions.rows] == [
        "browser", "backend", "browser"]
    assert decisions.delivered("o", "ga4") is confirmed
    assert cell_text(None, held) == "held until the backend confirms"
    assert cell_text(None, again) == "duplicate: not sent again"
    assert cell_text(None, confirmed) == "-"  # meta: not one of its events


def test_cell_texts() -> None:
    row = Row("e", "page_view", "accepted", 1, 0.0, None, None, None)
    assert cell_text(Cell("held", "", "ads"), row) == "waiting for ads consent"
    assert cell_text(Cell("dropped", "meta_capi: no user agent"), row) == (
        "dropped: meta_capi: no user agent")
    assert cell_text(Cell("expired"), row) == "expired: no choice in time"


def test_an_expired_wait_is_shown() -> None:
    decisions = Decisions(Recorder())
    decisions.entry(entry("pv", "page_view", "accepted", copy("ga4", "held", "analytics")))
    decisions.entry(entry("pv", "page_view", "expired"))
    assert decisions.rows[0].cells["ga4"].outcome == "expired"


def _took(status: int, n: int) -> Took:
    return Took(Answer(status), items=[{}] * n)


def test_each_delivery_report_names_its_request() -> None:
    inbox, decisions = Inbox(), Decisions(Recorder())
    c = Call("POST", "/x", (), {}, b"")
    first = inbox.received("ga4", "ga4", c, _took(204, 2))
    lost = inbox.received("ga4", "ga4", c, _took(204, 1))
    third = inbox.received("ga4", "ga4", c, _took(500, 1))
    take({"delivery": "ga4", "outcome": "ok", "status": 204, "event_ids": ["a", "b"]},
         decisions, inbox)
    assert first.event_ids == ("a", "b")
    take({"delivery": "ga4", "outcome": "retry", "status": 500, "event_ids": ["c"]},
         decisions, inbox)
    assert third.event_ids == ("c",) and lost.event_ids is None  # its report never came
    take({"delivery": "meta", "status": 200, "event_ids": ["z"]}, decisions, inbox)
    take({"delivery": "ga4", "status": None, "event_ids": ["y"]}, decisions, inbox)
    assert [d.event_ids for d in inbox.deliveries("ga4")] == [("a", "b"), None, ("c",)]
    take(entry("pv", "page_view", "accepted", copy("ga4", "delivered")), decisions, inbox)
    assert [r.event_id for r in decisions.rows] == ["pv"]
