"""What the shared state store holds, and the interface both stores implement.

Dedup marks are two-phase, so that a mark and the spool write it stands for are one unit
(a retry of an event whose commit never happened is accepted, never a duplicate):

- ``mark`` sets a *tentative* mark, owned by one request's ``token`` and living only a few
  seconds (``relay.engine.marks.TENTATIVE_SECONDS``; the request keeps it alive with ``keep``
  while it routes and commits);
- ``confirm`` turns it into a mark for the whole ``dedup_window`` once the spool committed
  the copy; ``unmark`` drops it when the commit failed.

A mark left by a process that died before confirming expires within seconds by itself, and
nobody is answered "duplicate" because of it: another request that finds it (``busy``) waits
for it to be confirmed (then it is a duplicate) or to vanish (then it marks the key itself).

What a request takes from the state, the engine reads before its commit (``peek``,
``waiting``) and takes only after it (``take``, ``settle``), so a request that dies first
leaves it for its retry. What it adds (``hold``, ``pend``, ``remember_consent``) comes
before; holding again under the same aliases replaces the copy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

# {"event": name, "event_id": id, "fields": {path: value}}, and "cid" (the browser's
# correlation id) when it had one
Held = dict[str, Any]
WaitKey = tuple[str, str]  # (destination, purpose): a label pair of relay_consent_pending
# What ``State.mark`` found for a key: "new" (now tentatively marked for this token), "ours"
# (this token marked it already), "busy" (another token's tentative mark, not yet confirmed)
# or "seen" (a confirmed mark).
Mark = Literal["new", "ours", "busy", "seen"]


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
    async def mark(self, keys: Sequence[str], token: str, ttl: float) -> list[Mark]:
        """Mark each key that has no live mark tentatively, for ``token``, for ``ttl``
        seconds; what each key had (``Mark``). A tentative mark is never confirmed by this."""

    async def keep(self, keys: Sequence[str], token: str, ttl: float) -> None:
        """Extend to ``ttl`` seconds from now the tentative marks ``token`` still holds."""

    async def confirm(self, keys: Sequence[str], ttl: float) -> None:
        """Mark each key as confirmed for ``ttl`` seconds (its copy is committed), whatever
        mark it had."""

    async def unmark(self, keys: Sequence[str], token: str) -> None:
        """Drop the tentative marks ``token`` still holds (its spool commit failed); a
        confirmed mark, or another token's, stays."""

    async def contains(self, key: str) -> bool:
        """True when ``key`` has a confirmed mark."""

    async def hold(self, aliases: Sequence[str], held: Held, ttl: float) -> None:
        """Keep a held copy under its aliases for ``ttl`` seconds; holding again under the
        same first alias replaces the copy (a client's retry holds it once)."""

    async def peek(self, aliases: Sequence[str]) -> Held | None:
        """The held copy any alias names, left where it is."""

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

    async def waiting(self, cid: str) -> list[Pending]:
        """The events waiting for this browser's consent (those past ``until`` too), left
        where they are."""

    async def settle(self, cid: str, released: Mapping[str, Pending | None]) -> None:
        """This browser's waiting events whose event id ``released`` names were released
        (their copies committed): each goes, replaced (in one step, its deadline kept) by
        what of it still waits when ``released`` maps it to that. An event no longer
        waiting (another request settled it) is left alone, and nothing replaces it."""

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
