"""Which events each consent choice let through: the vendors page's table.

Pure: from ``Decisions`` (what the relay decided, per event and destination, and the
choices), one line per choice and per event in arrival order, a cell per vendor:

    sent | sent after choice 1 | suppressed (ads: explicit denial)
    waiting for ads consent | held until the backend confirms | duplicate: not sent again
    dropped: <why> | expired: no choice in time | -  (not one of its events)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from relay.demo.decisions import Cell, Choice, Decisions, Row
from relay.demo.lineup import Vendor

NOT_ITS_EVENT = "-"


def cell_text(cell: Cell | None, row: Row) -> str:
    if cell is None:
        if row.status == "held":
            return "held until the backend confirms"
        if row.status == "duplicate":
            return "duplicate: not sent again"
        if row.status in ("rejected", "quarantined"):
            return f"{row.status}: {row.error}" if row.error else row.status
        return NOT_ITS_EVENT
    after = f" after choice {cell.choice}" if cell.choice is not None else ""
    if cell.outcome == "delivered":
        return "sent" + after
    if cell.outcome == "suppressed":
        return f"suppressed{after} ({cell.detail})" if cell.detail else "suppressed" + after
    if cell.outcome == "held":
        return f"waiting for {cell.purpose} consent" if cell.purpose else "waiting"
    if cell.outcome == "duplicate":
        return "duplicate: not sent again"
    if cell.outcome == "expired":
        return "expired: no choice in time"
    return f"{cell.outcome}: {cell.detail}" if cell.detail else cell.outcome


def _choice(choice: Choice) -> dict[str, Any]:
    return {"kind": "choice", "n": choice.n, "at": choice.at, "visitor": choice.cid,
            "consent": choice.consent}


def _row(row: Row, vendors: Sequence[Vendor]) -> dict[str, Any]:
    cells = {}
    for vendor in vendors:
        cell = row.cells.get(vendor.destination)
        cells[vendor.name] = {"outcome": cell.outcome if cell else None,
                              "text": cell_text(cell, row)}
    return {"kind": "event", "event": row.event, "event_id": row.event_id,
            "source": row.sent.source if row.sent else None, "status": row.status,
            "at": row.at, "visitor": row.cid, "choice": row.choice, "cells": cells}


def table(decisions: Decisions, vendors: Sequence[Vendor]) -> dict[str, Any]:
    """The choices and the events in the order they happened (a choice before the events
    that arrived after it)."""
    lines = [(c.seq, _choice(c)) for c in decisions.choices]
    lines += [(r.seq, _row(r, vendors)) for r in decisions.rows]
    lines.sort(key=lambda line: line[0])
    return {
        "vendors": [{"name": v.name, "purpose": v.purpose} for v in vendors],
        "lines": [line for _, line in lines],
    }
