"""Core types: the event, the step and destination protocols, and delivery verdicts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import httpx

    from relay.fieldset import FieldSet
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


class PathsFn(Protocol):
    def __call__(self, fields: FieldSet, options: Any) -> FieldSet: ...


@dataclass(frozen=True, slots=True)
class StepDef:
    """A pipeline step: ``parse`` types its options (reporting mistakes), ``apply`` runs it,
    ``paths`` says what it does to the fields an event can carry (removes, adds, renames or
    hashes), as a pure function of a ``relay.fieldset.FieldSet``: the datamap's model of
    ``apply``, which tests/pipeline/test_paths.py holds it to."""

    parse: Callable[[At], Any]
    apply: StepFn
    paths: PathsFn
    doc: str = ""


VerdictKind = Literal["ok", "retry", "permanent"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """How a delivery attempt ended. ``detail`` keeps the vendor's answer (status and body).

    ``failed`` is a partial success (``kind`` ``"ok"``): the vendor took the batch but refused
    these items, by their index in the batch, each with its own reason (Mixpanel's
    ``failed_records``). They alone are dead-lettered; the rest count as delivered.
    """

    kind: VerdictKind
    detail: str = ""
    status: int | None = None
    retry_after: float | None = None  # seconds, from the vendor's Retry-After
    failed: tuple[tuple[int, str], ...] = ()


OK = Verdict("ok")


@dataclass(frozen=True, slots=True)
class FieldMap:
    """One field a vendor destination can send: the event's field ``ours`` (a dotted path
    after the pipeline; ``event`` is the event's name) becomes ``theirs`` in the vendor's
    item (a dotted path; ``[]`` marks a list), ``hashed`` when the vendor gets its SHA-256.
    A ``*`` segment stands for any key, on both sides alike (``properties.*`` sent as
    ``events[].params.*``: each property under its own name). A field the relay takes from
    the destination's settings rather than from the event has ``ours`` ``settings.<key>``.
    The datamap is built from these, and tests check that a vendor item holds nothing else.
    """

    ours: str
    theirs: str
    hashed: bool = False


@dataclass(frozen=True, slots=True)
class AdUse:
    """What a vendor destination sends for advertising (the policy lint, R302 and R304):
    ``fields``, prefixes of the vendor's field names (none: all it receives), under the
    consent of the purpose ``purpose`` (None: the destination's own), which the settings key
    ``setting`` named when the rules chose it."""

    fields: tuple[str, ...] = ()
    purpose: str | None = None
    setting: str | None = None


Prepare = Callable[[Event, Any, StepContext], "Event | None"]


ForgetStatus = Literal["deleted", "requested", "manual", "failed", "not_applicable"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one destination's part of ``relay forget`` ended. ``deleted``: gone now;
    ``requested``: the vendor accepted a deletion it carries out later; ``manual``: someone
    must follow the procedure in ``detail``; ``not_applicable``: the vendor holds nothing
    the relay can name this person by; ``failed``: the request did not go through.
    ``detail`` never holds the person's identifiers or a credential."""

    status: ForgetStatus
    detail: str


@dataclass(frozen=True, slots=True)
class Call:
    """One request of a vendor's deletion and what its answer means: the ``Outcome``, or the
    next ``Call`` (find the person's records, then delete them)."""

    request: httpx.Request
    answer: Callable[[httpx.Response], Outcome | Call]


@dataclass(frozen=True, slots=True)
class Person:
    """Who ``relay forget`` was asked about. ``given`` is what the command was given, one
    of ``{"id": ...}``, ``{"email": ...}``, ``{"phone": ...}``; ``sent`` is the ``user``
    object the destination's pipeline makes of it, so the vendor's id for the person follows
    the destination's own mapping (hashed where the pipeline hashes, absent where it drops)."""

    given: Mapping[str, str]
    sent: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ForgetContext:
    """What a deletion plan may know beyond its arguments: the time, and the files its
    settings name (a service account's key)."""

    now: float
    read_file: Callable[[str], bytes]


Plan = Callable[[Person, Any, Any, ForgetContext], "Outcome | Call"]


@dataclass(frozen=True, slots=True)
class Deletion:
    """How a person is deleted at a vendor: ``parse`` types the destination's optional
    ``deletion:`` settings (None when absent), ``plan(person, settings, deletion, ctx)``
    is pure and gives the first request (a ``Call``) or, with no API to call, an
    ``Outcome`` (``manual`` with the vendor's procedure, ``not_applicable``)."""

    parse: Callable[[At], Any]
    plan: Plan
    doc: str = ""


@dataclass(frozen=True, slots=True)
class DestinationDef:
    """A destination type. HTTP destinations give ``build_request`` + ``classify``; local
    sinks (file, log) give ``write``, which raises ``relay.errors.Retryable`` or ``Permanent``.

    Vendor destinations also give ``prepare``: the event, after the destination's pipeline,
    mapped to one item of the vendor's own format (its names, its hashing, its consent
    fields), or None when the vendor cannot take it (the copy is dropped, with the reason in
    ``ctx.notes``). It runs at ingest, before the copy is spooled, so the spool holds what the
    vendor receives and never a raw identifier the vendor only gets hashed; ``build_request``
    then wraps a batch of items. ``fields(settings)`` lists what ``prepare`` can produce.
    ``max_bytes`` bounds one request's items (their JSON) where the vendor limits the body.
    ``group`` keys an item by what a request shares (GA4: one ``client_id``, ``user_id`` and
    consent per request): the dispatcher sends items of one key per request.
    """

    parse_settings: Callable[[At], Any]
    max_batch: int
    build_request: Callable[[Sequence[Event], Any], httpx.Request] | None = None
    classify: Callable[[httpx.Response], Verdict] | None = None
    write: Callable[[Sequence[Event], Any], Awaitable[None]] | None = None
    prepare: Prepare | None = None
    fields: Callable[[Any], Sequence[FieldMap]] | None = None
    max_bytes: int | None = None
    group: Callable[[Event], str] | None = None
    vendor: str = ""  # who receives the data, for the datamap ("Google Analytics 4", ...)
    # An ad platform's type: what of it serves advertising (None: nothing).
    ads: Callable[[Any], AdUse] | None = None
    # Settings naming local files: the settings with each path passed through the function
    # (``relay.registry.place`` resolves them under the var directory).
    place: Callable[[Any, Callable[[str], str]], Any] | None = None
    deletion: Deletion | None = None  # how ``relay forget`` deletes a person there
    doc: str = ""
