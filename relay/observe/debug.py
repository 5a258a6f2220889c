"""The live debug view's feed: each event's decisions, and each delivery attempt.

Subscribers are bounded queues; a slow viewer loses entries rather than slowing ingest.

An attempt can come before its event's entry: a delivery worker may claim a row as soon as
the spool has committed it, before the request that put it there is resumed to publish it.
A viewer of one browser, which is shown only the attempts of events it saw, keeps such
early attempts for a while (``EARLY``) and is shown them right after the event.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from relay.observe.mask import Masker

if TYPE_CHECKING:
    from relay.types import Verdict

QUEUE_SIZE = 256
SEEN_IDS = 1000  # event ids a filtered viewer saw, to show their delivery attempts
EARLY = 64  # attempts a filtered viewer keeps for events it has not seen (yet)


@dataclass(eq=False)
class _Viewer:
    queue: asyncio.Queue[dict[str, Any]]
    want: str | None  # a correlation-id digest, or None for everything
    seen: deque[str] = field(default_factory=lambda: deque(maxlen=SEEN_IDS))
    early: deque[tuple[str, dict[str, Any]]] = field(default_factory=lambda: deque(maxlen=EARLY))

    def offer(self, entry: dict[str, Any]) -> None:
        if not self.queue.full():  # a slow viewer loses entries; ingest never waits
            self.queue.put_nowait(entry)


class DebugFeed:
    """``masker`` masks the vendors' answers; the runtime replaces it when a rules reload
    changes the cookie secrets."""

    def __init__(self, masker: Masker, clock: Callable[[], float] = time.time) -> None:
        self.masker = masker
        self.clock = clock
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
        events arrive (the vendor's answer masked, at most 200 characters; ``refused``, the
        events a partial success refused, each with the vendor's reason, masked)."""
        if not self._viewers:
            return
        entry = {
            "delivery": destination,
            "outcome": verdict.kind,
            "status": status,
            "detail": self.masker.text(verdict.detail[:200]),
            "at": iso_ms(self.clock()),
        }
        refused = {
            event_ids[i]: self.masker.text(why[:200])
            for i, why in verdict.failed
            if 0 <= i < len(event_ids)
        }
        for viewer in self._viewers:
            mine = [e for e in event_ids if viewer.want is None or e in viewer.seen]
            if mine:
                theirs = {e: why for e, why in refused.items() if e in mine}
                viewer.offer({**entry, "event_ids": mine, "refused": theirs})
            if viewer.want is not None:
                for e in event_ids:
                    if e not in mine:
                        one = {e: refused[e]} if e in refused else {}
                        viewer.early.append((e, {**entry, "event_ids": [e], "refused": one}))

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
                if event_id and viewer.early:
                    self._early(viewer, event_id)

    @staticmethod
    def _early(viewer: _Viewer, event_id: str) -> None:
        """Show a viewer the attempts it kept for ``event_id`` before it saw the event."""
        kept = [(e, a) for e, a in viewer.early if e != event_id]
        for e, attempt in viewer.early:
            if e == event_id:
                viewer.offer(attempt)
        if len(kept) != len(viewer.early):
            viewer.early = deque(kept, maxlen=EARLY)


def iso_ms(seconds: float) -> str:
    """Unix seconds -> ``2026-11-28T12:00:00.250Z``.

    >>> iso_ms(1795000000.25)
    '2026-11-18T11:06:40.250Z'
    """
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
