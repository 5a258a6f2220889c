"""What the shared state store holds, and the interface both stores implement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

Held = dict[str, Any]  # {"event": name, "fields": {path: value}}
# {"event_id", "event", "until", "context": {country, gpc},
#  "copies": {destination: {"purpose": name, "sent": the copy after its pipeline}}}
Pending = dict[str, Any]


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
    async def pend(self, cid: str, item: Pending, ttl: float) -> bool:
        """Keep a copy waiting for this browser's consent; False when the store is full."""

    async def release(self, cid: str) -> list[Pending]:
        """Pop every copy waiting for this browser's consent."""

    async def expired_pending(self) -> list[Pending]:
        """Waiting copies whose window ran out since the last call; each returned once."""

    async def close(self) -> None: ...
