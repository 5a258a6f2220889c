"""The live debug view's feed: each event's decisions, with personal data masked.

Subscribers are bounded queues; a slow viewer loses entries rather than slowing ingest.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from relay.observe.log import digest

if TYPE_CHECKING:
    from relay.results import Batch
    from relay.types import Verdict

QUEUE_SIZE = 256
SEEN_IDS = 1000  # event ids a filtered viewer saw, to show their delivery attempts
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_EMAIL = re.compile(r"[^\s@/?&=]+@[^\s@/?&=]+\.[A-Za-z]{2,}")
_LONG_DIGITS = re.compile(r"\+?\d[\d\s().-]{7,}\d")


def _mask_text(text: str) -> str:
    return _LONG_DIGITS.sub("[digits]", _EMAIL.sub("[email]", text))


def mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return _mask_text(value)
    if isinstance(value, dict):
        return {k: mask_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(v) for v in value]
    return value


def mask_event(event: dict[str, Any]) -> dict[str, Any]:
    """A copy safe to show: no raw IP, user agent, user identifier or cookie value."""
    out: dict[str, Any] = mask_value(
        {k: v for k, v in event.items() if k not in ("user", "correlation_id")}
    )
    ctx = out.get("context")
    if isinstance(ctx, dict):
        if isinstance(ctx.get("ip"), str):
            ctx["ip"] = "ip#" + digest(ctx["ip"], 8)
        if isinstance(ctx.get("user_agent"), str):
            ctx["user_agent"] = "ua#" + digest(ctx["user_agent"], 8)
    user = event.get("user")
    if isinstance(user, dict):
        out["user"] = {
            k: (v if isinstance(v, str) and _HEX64.match(v) else "#" + digest(str(v), 8))
            for k, v in user.items()
        }
    if isinstance(event.get("correlation_id"), str):
        out["correlation_id"] = "cid#" + digest(event["correlation_id"])
    return out


@dataclass(eq=False)
class _Viewer:
    queue: asyncio.Queue[dict[str, Any]]
    want: str | None  # a correlation-id digest, or None for everything
    seen: deque[str] = field(default_factory=lambda: deque(maxlen=SEEN_IDS))

    def offer(self, entry: dict[str, Any]) -> None:
        if not self.queue.full():  # a slow viewer loses entries; ingest never waits
            self.queue.put_nowait(entry)


class DebugFeed:
    def __init__(self) -> None:
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
            "detail": mask_value(verdict.detail[:200]),
        }
        for viewer in self._viewers:
            mine = [e for e in event_ids if viewer.want is None or e in viewer.seen]
            if mine:
                viewer.offer({**entry, "event_ids": mine})

    def publish(self, batch: Batch) -> None:
        for result in batch.results:
            copies = [
                {
                    "destination": c.destination,
                    "outcome": c.outcome,
                    "detail": c.detail,
                    "sent": mask_event(c.sent) if c.sent else None,
                }
                for c in result.copies
            ]
            cid = digest(result.cid) if result.cid else None
            entry = {
                "event_id": result.event_id,
                "event": result.event,
                "status": result.status,
                "error": result.error,
                "notes": result.notes,
                "copies": copies,
                "cid": cid,
            }
            for viewer in self._viewers:
                if viewer.want and viewer.want != cid:
                    continue
                if result.event_id:
                    viewer.seen.append(result.event_id)
                viewer.offer(entry)
