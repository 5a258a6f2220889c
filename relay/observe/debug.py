"""The live debug view's feed: each event's decisions, with personal data masked.

Subscribers are bounded queues; a slow viewer loses entries rather than slowing ingest.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

from relay.observe.log import digest

if TYPE_CHECKING:
    from relay.engine import Batch

QUEUE_SIZE = 256
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


class DebugFeed:
    def __init__(self) -> None:
        self._subscribers: set[tuple[asyncio.Queue[dict[str, Any]], str | None]] = set()

    @property
    def listening(self) -> bool:
        return bool(self._subscribers)

    def subscribe(self, cid_digest: str | None) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add((queue, cid_digest))
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers = {s for s in self._subscribers if s[0] is not queue}

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
            sent_cids = {c.sent.get("correlation_id") for c in result.copies if c.sent}
            cid = next((digest(c) for c in sent_cids if isinstance(c, str)), None)
            entry = {
                "event_id": result.event_id,
                "event": result.event,
                "status": result.status,
                "error": result.error,
                "notes": result.notes,
                "copies": copies,
                "cid": cid,
            }
            for queue, want in list(self._subscribers):
                if want and want != cid:
                    continue
                if not queue.full():
                    queue.put_nowait(entry)
