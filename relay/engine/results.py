"""What the engine decides: the request's ``Meta`` in, per event a ``Result`` with one
``Copy`` per destination, and the ``Batch`` of spool rows a request commits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from relay.engine.envelope import format_ms
from relay.engine.marks import Marks
from relay.observe.changes import changes
from relay.observe.log import digest
from relay.observe.mask import Masker
from relay.rules.model import Outcome, Source
from relay.spool.base import Quarantined, Row
from relay.state.base import Pending
from relay.types import Event

# "released" and "expired" are not a request's events: they are what became of an event
# that waited for a consent choice (``Batch.releases``, and the expiry sweep's results).
EventStatus = Literal[
    "accepted", "duplicate", "rejected", "held", "quarantined", "released", "expired"
]


@dataclass(frozen=True, slots=True)
class Meta:
    """What the request says about the user, filled in by the handler."""

    source: Source
    received_ms: int
    ip: str | None = None
    user_agent: str | None = None
    country: str | None = None
    gpc: bool = False
    correlation_id: str | None = None  # verified (unsigned) id, never the cookie value
    bot: bool = False  # a recognised bot the source flags: context.bot
    verify_correlation: Callable[[str], str | None] | None = None  # for webhook echoes


@dataclass(slots=True)
class Copy:
    destination: str
    outcome: Outcome
    detail: str = ""
    sent: Event | None = None  # what the destination will receive
    purpose: str | None = None  # held or suppressed: the purpose it waits for or was refused
    # While the debug view watches, a vendor destination's copy after its pipeline and
    # before the vendor's mapping (``sent`` is the vendor's item): what the diff compares.
    minimized: Event | None = None


@dataclass(slots=True)
class Result:
    index: int
    status: EventStatus
    event_id: str | None = None
    event: str | None = None
    error: str | None = None
    copies: list[Copy] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cid: str | None = None  # the browser's correlation id (the debug view filters on it)
    audit: Audit | None = None  # for the delivery ledger, once the event is routed
    source: str | None = None
    received_ms: int | None = None
    # For the debug view, only while it watches: the event as it arrived (after the relay
    # filled in its context, before the contract), as JSON.
    input: bytes | None = None
    held_for: str | None = None  # held: the authoritative source it waits for
    confirms: str | None = None  # the event_id of the held browser copy this one confirmed
    merged: tuple[str, ...] = ()  # and the paths (enrich_from_browser) it took from it


@dataclass(frozen=True, slots=True)
class Audit:
    """What the ledger keeps of a routed event beside its copies: its source, schema version
    and consent snapshot (each purpose's state when it was routed)."""

    source: str
    event: str  # as the hop lines name it (a name the rules do not know is masked)
    schema: int | None
    consent: dict[str, str]


@dataclass(slots=True)
class Batch:
    results: list[Result] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)
    marks: Marks = field(default_factory=Marks)  # its tentative dedup marks
    # ``auth:<event_id>`` of the authoritative copies in it: marked once they are committed.
    authorities: list[str] = field(default_factory=list)
    # Events that waited for a consent choice this batch made, one result each.
    releases: list[Result] = field(default_factory=list)
    # Taken from the state once the batch is committed (``Engine._confirm``), never before,
    # so a batch that is not committed (or whose process dies first) leaves them in place:
    # per browser, the waiting events it released (event id -> what of it still waits),
    settled: dict[str, dict[str, Pending | None]] = field(default_factory=dict)
    # and the aliases of the held browser copies its authoritative copies merged.
    merged: list[list[str]] = field(default_factory=list)
    # Browsers whose remembered consent this batch changed: (cid, what it was before).
    remembered: list[tuple[str, dict[str, str] | None]] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(1 for r in self.results if r.status not in ("rejected", "duplicate"))

    @property
    def held(self) -> int:
        """Events of this request that have a copy waiting: for a consent choice, or (the
        whole event) for its authoritative source."""
        return sum(
            1
            for r in self.results
            if r.status == "held" or any(c.outcome == "held" for c in r.copies)
        )

    @property
    def duplicates(self) -> int:
        return sum(1 for r in self.results if r.status == "duplicate")

    def rejected(self) -> list[dict[str, Any]]:
        return [
            {"index": r.index, "error": r.error} for r in self.results if r.status == "rejected"
        ]

    def destinations(self) -> set[str]:
        return {row.destination for row in self.rows}


def debug_entry(result: Result, masker: Masker, now_ms: int | None = None) -> dict[str, Any]:
    """What the debug view shows of one event: its status and each destination's decision
    (the purpose of a held or suppressed copy), with what would be sent and how that differs
    from the input (``relay.observe.changes``), all masked (``relay.observe.mask``). The
    event's name, the error and the notes may quote the client (a rejected name, a key):
    masked as free text. ``at`` is when it was received, or ``now_ms`` for what became of
    a waiting event."""
    text = masker.text
    arrived = _decoded(result.input)
    copies = []
    for c in result.copies:
        copy: dict[str, Any] = {
            "destination": c.destination,
            "outcome": c.outcome,
            "purpose": c.purpose,
            "detail": text(c.detail),
            "sent": masker.event(c.sent) if c.sent else None,
        }
        compared = c.minimized if c.minimized is not None else c.sent
        if isinstance(arrived, dict) and compared is not None:
            copy["changes"] = changes(arrived, compared, masker)
        copies.append(copy)
    at = result.received_ms if result.received_ms is not None else now_ms
    return {
        "event_id": result.event_id,
        "event": text(result.event) if result.event is not None else None,
        "status": result.status,
        "error": text(result.error) if result.error is not None else None,
        "notes": [text(n) for n in result.notes],
        "copies": copies,
        "cid": digest(result.cid) if result.cid else None,
        "source": result.source,
        "at": format_ms(at) if at is not None else None,
        "input": _masked_input(arrived, masker, result.status == "rejected"),
        "held_for": result.held_for,
        "confirms": result.confirms,
        "merged": list(result.merged),
    }


def debug_entries(
    batch: Batch, masker: Masker, now_ms: int | None = None
) -> list[dict[str, Any]]:
    """The debug view's entries for a batch: its events, then each event a consent choice
    in it released (status ``released``) or found expired (``expired``), as its own entry."""
    return [debug_entry(r, masker, now_ms) for r in (*batch.results, *batch.releases)]


def _decoded(blob: bytes | None) -> Any:
    if blob is None:
        return None
    try:
        return orjson.loads(blob)
    except orjson.JSONDecodeError:
        return None


def _masked_input(arrived: Any, masker: Masker, rejected: bool) -> Any:
    """The input masked; a rejected event's ``event_id`` may not be one (the envelope may
    have refused it): masked as free text."""
    if not isinstance(arrived, dict):
        return None if arrived is None else masker.value(arrived)
    shown = masker.event(arrived)
    if rejected and "event_id" in arrived:
        shown["event_id"] = masker.value(arrived["event_id"])
    return shown

