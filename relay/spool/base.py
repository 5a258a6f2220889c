"""The spool's interface: a durable outbox of per-destination copies, dead letters and
quarantined events. ``put`` returns only once the rows are committed (group commit)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol


def iso_utc(seconds: float) -> str:
    """Unix seconds as ISO-8601 UTC, to the millisecond: ``2026-11-28T12:00:00.250Z``."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Row:
    """One routed copy: what ``destination`` will receive (the post-pipeline event, JSON)."""

    destination: str
    event_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """The spool's figures for a scrape, counted from its storage just now."""

    oldest: dict[str, float]  # destination -> unix seconds its oldest waiting copy was spooled
    size: int | None  # bytes on disk (None: not a file)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    destination: str
    event_id: str
    payload: bytes
    created_at: float  # unix seconds, when first spooled
    attempts: int  # attempts made before this claim


@dataclass(frozen=True, slots=True)
class Quarantined:
    source: str
    event: str
    error: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    destination: str
    event_id: str
    payload: bytes
    created_at: float
    failed_at: float
    attempts: int
    status: int | None
    response: str  # the vendor's answer, trimmed

    def summary(self) -> dict[str, Any]:
        """What ``relay dlq list`` and ``GET /dlq`` show (never the payload); ``failed_at``
        is Unix seconds, ``failed_at_iso`` the same time in ISO-8601 UTC."""
        return {
            "id": self.id,
            "destination": self.destination,
            "event_id": self.event_id,
            "failed_at": self.failed_at,
            "failed_at_iso": iso_utc(self.failed_at),
            "attempts": self.attempts,
            "status": self.status,
            "response": self.response,
        }


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What ``Spool.forget`` deleted: outbox rows, dead letters, quarantined events."""

    spool: int = 0
    dead_letters: int = 0
    quarantined: int = 0


class Spool(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def put(self, rows: Sequence[Row], quarantined: Sequence[Quarantined] = ()) -> None:
        """Commit all rows or none; raises ``relay.errors.SpoolUnavailable``."""

    async def claim(self, destination: str, limit: int, lease: float) -> list[Claimed]:
        """Due rows for ``destination``, leased for ``lease`` seconds to this process."""

    async def ack(self, ids: Sequence[int]) -> None: ...
    async def retry(self, ids: Sequence[int], next_at: float, error: str) -> None: ...
    async def dead(
        self, rows: Sequence[Claimed], status: int | None, response: str, attempts: int
    ) -> None: ...
    async def release_leases(self) -> int: ...
    def writable(self) -> bool:
        """False after a commit failed, until one succeeds again (for /readyz)."""

    async def next_due(self, destination: str) -> float | None: ...
    def depths(self) -> tuple[dict[str, int], dict[str, int]]:
        """(spool depth, DLQ depth) per destination, from counts kept in memory."""

    async def stats(self) -> SpoolStats:
        """Count again from the storage (what other processes did included; ``depths()``
        shows it too from now on), for a scrape."""

    async def dlq_list(
        self, destination: str | None = None, limit: int = 100
    ) -> list[DeadLetter]: ...
    async def dlq_count(self, destination: str | None = None) -> tuple[int, int]:
        """(how many dead letters, the newest one's id or 0), for ``destination`` or all."""

    async def dlq_replay(self, destination: str | None = None) -> int: ...
    async def dlq_purge(self, destination: str | None = None, through: int | None = None) -> int:
        """Delete dead letters (with ``through``, only those whose id is at most that)."""
    async def quarantine_list(self, limit: int = 100) -> list[dict[str, Any]]: ...
    async def forget(self, event_ids: Sequence[str]) -> Forgotten:
        """Delete every copy of these events (``relay forget``): their outbox rows and dead
        letters, by event id, and the quarantined events whose kept copy names one."""
