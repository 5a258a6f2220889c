"""The demo reads its relay's debug feed, as the debug view does: each event's decisions go to
``Decisions``, each delivery attempt's report (destination, event ids, status) to ``Inbox``,
which names the stand-in request it was for."""

from __future__ import annotations

from typing import Any

from relay.demo.decisions import Decisions
from relay.demo.inbox import Inbox
from relay.observe.debug import DebugFeed


def take(entry: dict[str, Any], decisions: Decisions, inbox: Inbox) -> None:
    """One feed entry: a delivery attempt, or an event's decisions."""
    destination = entry.get("delivery")
    if isinstance(destination, str):
        ids = [e for e in entry.get("event_ids") or () if isinstance(e, str)]
        status = entry.get("status")
        inbox.attempted(destination, ids, status if isinstance(status, int) else None)
    elif "copies" in entry:
        decisions.entry(entry)


async def follow(feed: DebugFeed, decisions: Decisions, inbox: Inbox) -> None:
    """Read every entry of ``feed`` until cancelled."""
    queue = feed.subscribe(None)
    try:
        while True:
            take(await queue.get(), decisions, inbox)
    finally:
        feed.unsubscribe(queue)
