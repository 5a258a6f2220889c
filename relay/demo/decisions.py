"""What the relay decided for each event, per destination, and which consent choice decided it.

Read from the relay's own debug feed (``relay.demo.feed``): one entry per event as it is
routed (``status`` and one copy per destination: delivered, suppressed, held, dropped,
duplicate), then, when a consent choice releases events that waited for it, one
``released`` entry per such event (``expired`` when the wait ended first). A ``consent_update``
entry is a choice: its consent is what the browser sent (``record.Recorder``), merged over
the same browser's previous choice, as the relay remembers it.

Rows are in arrival order; a released entry updates the row of the event that waited, and
its cells name the choice that released them. Everything is in memory and bounded.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from relay.demo.record import CONSENT_EVENT, Recorder, Sent

KEEP_ROWS = 500


@dataclass(frozen=True, slots=True)
class Choice:
    n: int  # 1, 2, ... in the order they were made
    seq: int  # its place among the choices and rows
    at: float
    cid: str | None  # the browser's correlation id digest, as the feed names it
    consent: dict[str, str]  # every purpose chosen so far by this browser


@dataclass(slots=True)
class Cell:
    outcome: str  # delivered | suppressed | held | dropped | duplicate | expired
    detail: str = ""
    purpose: str | None = None
    choice: int | None = None  # the choice that released (or ended) a waiting copy


@dataclass(slots=True)
class Row:
    event_id: str
    event: str
    status: str  # accepted | held | duplicate | rejected | quarantined (as the feed says)
    seq: int  # its place among the choices and rows
    at: float
    cid: str | None
    sent: Sent | None  # what the client sent (None when the tap did not record it)
    choice: int | None  # the choice in effect when it arrived (None: no choice yet)
    error: str | None = None
    cells: dict[str, Cell] = field(default_factory=dict)


class Decisions:
    def __init__(self, recorder: Recorder, keep: int = KEEP_ROWS) -> None:
        self.recorder = recorder
        self.rows: deque[Row] = deque(maxlen=keep)
        self.choices: deque[Choice] = deque(maxlen=keep)
        self._seen: dict[str, int] = {}  # event id -> rows made for it (to find its Sent)
        self.version = 0  # bumped on every entry: also the order of choices and rows

    def latest_choice(self, cid: str | None) -> Choice | None:
        return next((c for c in reversed(self.choices) if cid is None or c.cid == cid), None)

    def entry(self, entry: dict[str, Any], now: float | None = None) -> None:
        """One decision entry of the debug feed."""
        event_id, event = entry.get("event_id"), entry.get("event")
        if not isinstance(event_id, str) or not isinstance(event, str):
            return
        at = time.time() if now is None else now
        cid = entry.get("cid") if isinstance(entry.get("cid"), str) else None
        status = str(entry.get("status"))
        copies = [c for c in entry.get("copies") or () if isinstance(c, dict)]
        self.version += 1
        if status in ("released", "expired"):
            self._released(event_id, cid, status, copies)
            return
        index = self._seen.get(event_id, 0)
        self._seen[event_id] = index + 1
        sent_all = self.recorder.sent(event_id)
        sent = sent_all[index] if index < len(sent_all) else None
        if event == CONSENT_EVENT:
            self._choose(at, cid, sent or self.recorder.next_choice())
            return
        latest = self.latest_choice(cid)
        row = Row(event_id, event, status, self.version, at, cid, sent,
                  latest.n if latest else None,
                  entry.get("error") if isinstance(entry.get("error"), str) else None)
        for copy in copies:
            row.cells[str(copy.get("destination"))] = _cell(copy)
        self.rows.append(row)

    def _choose(self, at: float, cid: str | None, sent: Sent | None) -> None:
        given = sent.event.get("consent") if sent is not None else None
        before = self.latest_choice(cid)
        consent = dict(before.consent) if before is not None and before.cid == cid else {}
        if isinstance(given, dict):
            for purpose, state in given.items():
                if state in ("granted", "denied") or isinstance(state, bool):
                    consent[str(purpose)] = state if isinstance(state, str) else (
                        "granted" if state else "denied")
        n = self.choices[-1].n + 1 if self.choices else 1
        self.choices.append(Choice(n, self.version, at, cid, consent))

    def _released(
        self, event_id: str, cid: str | None, status: str, copies: list[dict[str, Any]]
    ) -> None:
        row = next((r for r in reversed(self.rows) if r.event_id == event_id
                    and any(c.outcome == "held" for c in r.cells.values())), None)
        if row is None:
            return
        choice = self.latest_choice(cid)
        if status == "expired":
            for cell in row.cells.values():
                if cell.outcome == "held":
                    cell.outcome, cell.detail = "expired", "no choice within pending_window"
            return
        for copy in copies:
            cell = _cell(copy)
            cell.choice = choice.n if choice is not None and cell.outcome != "held" else None
            row.cells[str(copy.get("destination"))] = cell

    def delivered(self, event_id: str, destination: str) -> Row | None:
        """The row whose copy for ``destination`` the relay delivered."""
        return next((r for r in reversed(self.rows) if r.event_id == event_id
                     and (c := r.cells.get(destination)) is not None
                     and c.outcome == "delivered"), None)

    def rows_of(self, event_id: str) -> list[Row]:
        return [r for r in self.rows if r.event_id == event_id]


def _cell(copy: dict[str, Any]) -> Cell:
    purpose = copy.get("purpose")
    return Cell(str(copy.get("outcome")), str(copy.get("detail") or ""),
                purpose if isinstance(purpose, str) else None)
