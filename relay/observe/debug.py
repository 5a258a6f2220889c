"""The live debug view's feed: each event's decisions, and each delivery attempt.

Subscribers are bounded queues; a slow viewer loses entries rather than slowing ingest.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from relay.observe.mask import Masker

if TYPE_CHECKING:
    from relay.types import Verdict

QUEUE_SIZE = 256
SEEN_IDS = 1000  # event ids a filtered viewer saw, to show their delivery attempts


@dataclass(eq=False)
class _Viewer:
    queue: asyncio.Queue[dict[str, Any]]
    want: str | None  # a correlation-id digest, or None for everything
    seen: deque[str] = field(default_factory=lambda: deque(maxlen=SEEN_IDS))

    def offer(self, entry: dict[str, Any]) -> None:
        if not self.queue.full():  # a slow viewer loses entries; ingest never waits
            self.queue.put_nowait(entry)


class DebugFeed:
    """``masker`` masks the vendors' answers; the runtime replaces it when a rules reload
    changes the cookie secrets."""

    def __init__(self, masker: Masker) -> None:
        self.masker = masker
        self._viewers: list[_Viewer] = []

    @property
    def listening(self) -> bool:
        return bool(self._viewers)

    def subscribe(self, cid_digest: str | None) -> asyncio.Queue[dict[str, Any]]:
        viewer = _Viewer(asyncio.Queue(QUEUE_SIZE), cid_digest)
        self._viewers.append(viewer)
        return viewer.queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._viewers = [v for v in self._viewers if v.queue is not queue]

    def attempt(
        self, destination: str, event_ids: list[str], verdict: Verdict, status: int | None
    ) -> None:
        """One delivery attempt, as the dispatcher saw it: shown to the viewers who saw those
        events arrive (the vendor's answer masked, at most 200 characters)."""
        if not self._viewers:
            return
        entry = {
            "delivery": destination,
            "outcome": verdict.kind,
            "status": status,
            "detail": self.masker.text(verdict.detail[:200]),
        }
        for viewer in self._viewers:
            mine = [e for e in event_ids if viewer.want is None or e in viewer.seen]
            if mine:
                viewer.offer({**entry, "event_ids": mine})

    def publish(self, entries: list[dict[str, Any]]) -> None:
        """Show each entry (one event's decisions, masked; ``relay.engine.results.
        debug_entries``) to every viewer it is for: all of them, or the one whose browser's
        correlation id (its digest, ``cid``) it carries."""
        for entry in entries:
            cid, event_id = entry.get("cid"), entry.get("event_id")
            for viewer in self._viewers:
                if viewer.want and viewer.want != cid:
                    continue
                if event_id:
                    viewer.seen.append(event_id)
                viewer.offer(entry)
