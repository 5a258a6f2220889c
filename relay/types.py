"""Core types: the event, the step and destination protocols, and delivery verdicts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import httpx

    from relay.rules.fields import At

# An event is the JSON envelope of SPEC section 3 as a dict. Steps may mutate the event they
# are given: the engine hands every destination its own copy.
Event = dict[str, Any]


@dataclass(slots=True)
class StepContext:
    """What a pipeline step may know beyond the event; no I/O, clock or randomness."""

    destination: str
    granted: frozenset[str] = frozenset()  # purposes granted for this event
    # transform name -> number of fields it removed, hashed, truncated or redacted
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # human-readable, no personal data

    def count(self, transform: str, n: int = 1, note: str | None = None) -> None:
        if n:
            self.counts[transform] = self.counts.get(transform, 0) + n
            if note:
                self.notes.append(note)


class StepFn(Protocol):
    def __call__(self, event: Event, options: Any, ctx: StepContext) -> Event | None: ...


@dataclass(frozen=True, slots=True)
class StepDef:
    """A pipeline step: ``parse`` types its options (reporting mistakes), ``apply`` runs it."""

    parse: Callable[[At], Any]
    apply: StepFn
    doc: str = ""


VerdictKind = Literal["ok", "retry", "permanent"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """How a delivery attempt ended. ``detail`` keeps the vendor's answer (status and body)."""

    kind: VerdictKind
    detail: str = ""
    status: int | None = None
    retry_after: float | None = None  # seconds, from the vendor's Retry-After


OK = Verdict("ok")


@dataclass(frozen=True, slots=True)
class DestinationDef:
    """A destination type. HTTP destinations give ``build_request`` + ``classify``; local
    sinks (file, log) give ``write``, which raises ``relay.errors.Retryable`` or ``Permanent``.
    """

    parse_settings: Callable[[At], Any]
    max_batch: int
    build_request: Callable[[Sequence[Event], Any], httpx.Request] | None = None
    classify: Callable[[httpx.Response], Verdict] | None = None
    write: Callable[[Sequence[Event], Any], Awaitable[None]] | None = None
    # Settings naming local files: the settings with each path passed through the function
    # (``relay.registry.place`` resolves them under the var directory).
    place: Callable[[Any, Callable[[str], str]], Any] | None = None
    doc: str = ""
