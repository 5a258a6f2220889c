"""Hand-made hops for ledger tests, fed through the ledger's own hop listener.

``Feed`` writes hops as ``relay.observe.log.hop`` hands them to listeners (the log's names,
``dead-lettered`` included, and the fields each hop of the engine, the ingest commit and
the dispatcher carries), at times the test chooses.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from relay.ledger import Ledger
from relay.ledger import open_ledger as open_url

SOURCES = {"browser": "browser", "backend": "webhook", "apps": "segment"}


def at(text: str) -> float:
    """``2026-11-28T10:00:00`` (UTC) as Unix seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


class Feed:
    """Hops of events, each a call: ``feed.received("e1", t, "browser", "page_view")``."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def hop(self, name: str, when: float, **fields: Any) -> None:
        self.ledger.listener(name, fields, when)

    def received(self, eid: str, when: float, source: str, event: str) -> None:
        self.hop("received", when, event_id=eid, source=source, event=event, schema=None,
                 consent=None, cid=None, _people=None)

    def spooled(self, eid: str, when: float, dest: str) -> None:
        self.hop("spooled", when, event_id=eid, destination=dest, _source=None, _event=None,
                 _schema=None, _consent={"analytics": "granted"}, _fields=("event",))

    def delivered(self, eid: str, when: float, dest: str, attempt: int = 1) -> None:
        self.hop("delivered", when, event_id=eid, destination=dest, status=200,
                 attempt=attempt, latency_ms=3.0)

    def retried(self, eid: str, when: float, dest: str, attempt: int = 1) -> None:
        self.hop("retried", when, event_id=eid, destination=dest, status=503, attempt=attempt,
                 retry_in=1.0)

    def dead(self, eid: str, when: float, dest: str, attempt: int = 1) -> None:
        self.hop("dead-lettered", when, event_id=eid, destination=dest, status=400,
                 attempt=attempt, reason="permanent")

    def duplicate(self, eid: str, when: float, event: str, dest: str | None = None) -> None:
        if dest is None:  # the authority had confirmed it already
            self.hop("duplicate", when, event_id=eid, event=event,
                     reason="authority already confirmed")
        else:
            self.hop("duplicate", when, event_id=eid, event=event, destination=dest)

    def suppressed(self, eid: str, when: float, event: str, dest: str, purpose: str,
                   reason: str = "default (EU)") -> None:
        self.hop("suppressed", when, event_id=eid, event=event, destination=dest,
                 purpose=purpose, reason=reason)

    def dropped(self, eid: str, when: float, event: str, dest: str) -> None:
        self.hop("dropped", when, event_id=eid, event=event, destination=dest)

    def held_for_authority(self, eid: str, when: float, event: str) -> None:
        self.hop("held", when, event_id=eid, event=event, authority="backend")

    def confirmed(self, eid: str, when: float, event: str) -> None:
        self.hop("released", when, event_id=eid, event=event, merged=1)

    def unconfirmed(self, eid: str, when: float, event: str) -> None:
        self.hop("expired", when, event_id=eid, event=event,
                 reason="unconfirmed by the authoritative source")

    def held_for_consent(self, eid: str, when: float, event: str, dest: str,
                         purpose: str) -> None:
        self.hop("held", when, event_id=eid, event=event, destination=dest, purpose=purpose,
                 reason="pending consent")

    def released(self, eid: str, when: float, event: str, dest: str, purpose: str) -> None:
        self.hop("released", when, event_id=eid, event=event, destination=dest,
                 purpose=purpose, reason="consent")

    def consent_expired(self, eid: str, when: float, event: str,
                        waits: dict[str, str]) -> None:
        for dest, purpose in waits.items():
            self.suppressed(eid, when, event, dest, purpose, "pending consent expired")
        self.hop("expired", when, event_id=eid, event=event, reason="pending consent expired")

    def replayed(self, when: float, dest: str) -> None:
        self.hop("replayed", when, destination=dest, count=1)


async def open_ledger(url: str) -> Ledger:
    """The ledger at ``url`` (the ``ledger_url`` fixture's), started."""
    ledger = open_url(url, retention=1e12)  # keeps whatever time a test uses
    await ledger.start()
    return ledger


def sample(feed: Feed, t: float) -> None:
    """A small period from ``t`` on, for the command and the page: a page view delivered,
    an order the backend confirms (delivered to the archive, dead-lettered by the crm) and
    repeats, an order never confirmed, and an EU page view waiting for consent.

    By destination: archive browser 2, backend 2, delivered 2, duplicates 1, held 1; crm
    backend 2, duplicates 1, dead_lettered 1; (none) browser 2, unconfirmed 1. In total:
    browser 4, backend 2, delivered 2, duplicates 1, held 1, unconfirmed 1, dead_lettered 1.
    """
    feed.received("s-pv1", t, "browser", "page_view")
    feed.spooled("s-pv1", t, "archive")
    feed.delivered("s-pv1", t + 1, "archive")
    feed.received("s-o1", t + 10, "browser", "purchase")
    feed.held_for_authority("s-o1", t + 10, "purchase")
    feed.received("s-o1", t + 20, "backend", "purchase")
    feed.confirmed("s-o1", t + 20, "purchase")
    feed.spooled("s-o1", t + 20, "archive")
    feed.spooled("s-o1", t + 20, "crm")
    feed.delivered("s-o1", t + 21, "archive")
    feed.dead("s-o1", t + 21, "crm")
    feed.received("s-o1", t + 30, "backend", "purchase")
    feed.duplicate("s-o1", t + 30, "purchase", "archive")
    feed.duplicate("s-o1", t + 30, "purchase", "crm")
    feed.received("s-o2", t + 40, "browser", "purchase")
    feed.held_for_authority("s-o2", t + 40, "purchase")
    feed.unconfirmed("s-o2", t + 50, "purchase")
    feed.received("s-pv2", t + 60, "browser", "page_view")
    feed.held_for_consent("s-pv2", t + 60, "page_view", "archive", "analytics")
