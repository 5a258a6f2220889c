"""What the shared state store holds, and the interface both stores implement."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# {"event": name, "event_id": id, "fields": {path: value}}, and "cid" (the browser's
# correlation id) when it had one
Held = dict[str, Any]
WaitKey = tuple[str, str]  # (destination, purpose): a label pair of relay_consent_pending


@dataclass(frozen=True, slots=True)
class Pending:
    """A browser event waiting for its browser's consent choice.

    The event is kept once, however many destinations wait for it: ``body`` is its compact
    JSON as it reached routing (contract applied, no pipeline run yet, ``consent`` as the
    event itself carried it), so a choice can route it exactly as if it had come first.
    ``waits`` names each destination that waits and the purpose it waits for; ``until`` is
    the end of the window (unix seconds).
    """

    cid: str
    event_id: str
    event: str
    waits: Mapping[str, str]  # destination -> purpose
    body: bytes
    until: float


class State(Protocol):
    async def seen(self, keys: Sequence[str], ttl: float) -> list[bool]:
        """Mark every key; True for those already marked within their ttl."""

    async def contains(self, key: str) -> bool: ...
    async def forget(self, keys: Sequence[str]) -> None:
        """Unmark keys (a spool commit failed after marking them)."""

    async def hold(self, aliases: Sequence[str], held: Held, ttl: float) -> None: ...
    async def take(self, aliases: Sequence[str]) -> Held | None:
        """Pop the held copy any alias names (removing all its aliases)."""

    async def expired(self) -> list[Held]:
        """Held copies whose ttl ran out since the last call; each is returned once."""

    async def remember_consent(self, cid: str, consent: dict[str, str], ttl: float) -> None:
        """Keep a browser's latest explicit consent (purpose -> state) for ``ttl`` seconds."""

    async def consent_for(self, cid: str) -> dict[str, str] | None: ...
    async def pend(self, item: Pending, ttl: float) -> bool:
        """Keep an event waiting for its browser's consent for ``ttl`` seconds; False when
        the store is full (nothing was kept)."""

    async def release(self, cid: str) -> list[Pending]:
        """Pop every event waiting for this browser's consent (those past ``until`` too)."""

    async def expired_pending(self) -> list[Pending]:
        """Waiting events whose window ran out since the last call; each returned once."""

    async def pending_counts(self) -> dict[WaitKey, int]:
        """How many copies wait now, per (destination, purpose), across every process
        sharing the store; pairs with nothing waiting may be absent."""

    async def forget_events(self, event_ids: Sequence[str]) -> tuple[int, int]:
        """Drop the held copies and the events waiting for consent whose event id is one of
        ``event_ids`` (``relay forget``): (held copies, waiting events) dropped."""

    async def close(self) -> None: ...
