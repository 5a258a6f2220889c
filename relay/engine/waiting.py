"""Events that wait for a browser's consent choice (the engine's consent flow).

A browser event whose purpose is undecided in an opt-in region does not lose its copies at
once: the event waits, once, per correlation id, for the longest ``pending_window`` of the
purposes its destinations wait for. Nothing of it is spooled or sent meanwhile, and no
pipeline has run on it. The browser's explicit choice, from the built-in ``consent_update``
event or any event carrying ``consent``, is remembered for a day; it routes each waiting
event as if the choice had come before it: the remembered choice merged into the event's
``consent`` (as for the browser's later events), then per waiting destination ``when``, the
purpose and the pipeline with the purposes now granted. Copies whose purpose is now granted
are released, those denied suppressed, those still undecided keep waiting.

``ConsentWaits`` is the part of ``relay.engine.Engine`` that does this; it uses the engine's
rules, state and metrics, and the engine steps declared at its top.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from relay.engine.consent import decide
from relay.engine.match import matches
from relay.engine.results import Batch, Copy, Result
from relay.observe.log import digest, hop
from relay.observe.mask import Masker
from relay.observe.metrics import Metrics
from relay.rules.model import Destination, Matcher, Rules
from relay.state import Pending, State
from relay.types import Event

CONSENT_EVENT = "consent_update"  # built in: records a browser's choice, releases waiting copies
CONSENT_MEMORY_SECONDS = 24 * 3600.0
PENDING = "pending consent"
EXPIRED = "pending consent expired"
FULL = "pending store full"


@dataclass(frozen=True, slots=True)
class Memory:
    """What ``_consent_memory`` found: the event's own ``consent`` (as sent, None when it
    had none), and what was remembered for its browser before and after it."""

    given: Any
    before: dict[str, str] | None
    after: dict[str, str]

    @property
    def changed(self) -> bool:
        return self.after != (self.before or {})


def apply_memory(ev: Event, remembered: Mapping[str, str]) -> None:
    """Merge a browser's remembered choice into an event: the event's own values win.

    >>> ev = {"consent": {"ads": "denied"}}
    >>> apply_memory(ev, {"analytics": "granted", "ads": "granted"}); ev["consent"]
    {'analytics': 'granted', 'ads': 'denied'}
    """
    given = ev.get("consent") or {}
    if given:
        ev["consent"] = {**remembered, **given}
    elif remembered:
        ev["consent"] = dict(remembered)


def reads_consent(when: Sequence[Matcher]) -> bool:
    """True when a ``when`` looks at the event's ``consent``, so a choice may change it."""
    return any(m.path == "consent" or m.path.startswith("consent.") for m in when)


class ConsentWaits:
    rules: Rules
    state: State
    metrics: Metrics
    masker: Masker
    watched: Callable[[], bool]

    def _named(self, name: str) -> str:
        """An event name for a hop line: a contract's as it is; any other is the client's
        text, masked (``relay.observe.mask``) as the debug view shows it."""
        return name if name in self.rules.events.contracts else self.masker.text(name)

    # Engine steps this flow reuses (defined in relay.engine.Engine).
    async def _emit(
        self,
        ev: Event,
        candidates: Sequence[Destination],
        granted: frozenset[str],
        result: Result,
        batch: Batch,
    ) -> None:
        raise NotImplementedError

    def _suppressed(
        self, eid: str, name: str, dest: str, purpose: str, reason: str,
        source: str | None = None,
    ) -> None:
        self.metrics.consent_suppressed.labels(dest, purpose).inc()
        hop(
            "suppressed",
            event_id=eid,
            source=source,
            event=self._named(name),
            destination=dest,
            purpose=purpose,
            reason=reason,
        )

    async def _pend(self, ev: Event, cid: str, given: Any, waits: dict[str, Copy]) -> None:
        """Keep the event once for the destinations in ``waits`` (their ``held`` copies)
        until this browser chooses: as it reached routing, with the ``consent`` it carried
        itself (the choice merges into that at release). When the store is full it fails
        closed: the copies are suppressed."""
        eid, name = ev["event_id"], ev["event"]
        stored = dict(ev)
        if given is None:
            stored.pop("consent", None)
        else:
            stored["consent"] = given
        purposes = {dest: copy.purpose or "" for dest, copy in waits.items()}
        window = max(self.rules.purposes[p].pending_window for p in purposes.values())
        item = Pending(cid, eid, name, purposes, orjson.dumps(stored), time.time() + window)
        if await self.state.pend(item, window):
            for dest, purpose in purposes.items():
                hop("held", event_id=eid, source=ev.get("source"), event=self._named(name),
                    destination=dest,
                    purpose=purpose, reason=PENDING)
            return
        for dest, copy in waits.items():
            self._suppressed(eid, name, dest, purposes[dest], FULL, ev.get("source"))
            copy.outcome, copy.detail = "suppressed", f"{purposes[dest]}: {FULL}"

    async def _expire_pending(self) -> list[Result]:
        """Suppress what waited for a choice that never came; one result per event, for
        the debug view."""
        out = []
        for item in await self.state.expired_pending():
            out.append(self._expired(item))
        return out

    def _expired(self, item: Pending) -> Result:
        result = Result(-1, "expired", item.event_id, item.event, cid=item.cid)
        for dest, purpose in item.waits.items():
            self._suppressed(item.event_id, item.event, dest, purpose, EXPIRED)
            result.copies.append(Copy(dest, "suppressed", f"{purpose}: {EXPIRED}", purpose=purpose))
        hop("expired", event_id=item.event_id, event=self._named(item.event), reason=EXPIRED)
        return result

    async def _consent_memory(self, ev: Event, cid: str) -> Memory:
        """Merge this browser's remembered explicit consent into the event; remember what
        the event adds."""
        remembered = await self.state.consent_for(cid)
        given = ev.get("consent")
        apply_memory(ev, remembered or {})
        # Only the rules' purposes are remembered: other keys decide nothing, and a browser
        # must not be able to grow what is kept for it.
        purposes = self.rules.purposes
        before = remembered or {}
        learned = {
            k: v for k, v in (given or {}).items() if k in purposes and before.get(k) != v
        }
        if not learned:
            return Memory(given, remembered, before)
        merged = {**before, **learned}
        await self.state.remember_consent(cid, merged, CONSENT_MEMORY_SECONDS)
        return Memory(given, remembered, merged)

    async def _consent_update(
        self, index: int, ev: Event, cid: str, memory: Memory, batch: Batch, notes: list[str]
    ) -> Result:
        """The built-in ``consent_update`` event: never routed, it releases waiting copies."""
        result = Result(index, "accepted", ev["event_id"], CONSENT_EVENT, notes=notes, cid=cid)
        hop(
            "received",
            event_id=ev["event_id"],
            source=ev["source"],
            event=CONSENT_EVENT,
            consent=ev.get("consent"),
            cid=digest(cid),
        )
        await self._release(cid, memory.after, batch, notes)
        return result

    async def _release(
        self, cid: str, remembered: Mapping[str, str], batch: Batch, notes: list[str]
    ) -> None:
        """Route the events that waited for this browser's choice as if it had come before
        them: read, not taken (they are settled once the batch is committed, so a batch that
        is not, or a process that dies before its commit, leaves them waiting for the
        retry). Each gets its own result in ``batch.releases`` (the debug view shows it as
        an entry of its own)."""
        now = time.time()
        settled = batch.settled.setdefault(cid, {})
        stored = [i for i in await self.state.waiting(cid) if i.event_id not in settled]
        for item in stored:
            if item.until <= now:  # its window ended before the sweep saw it
                batch.releases.append(self._expired(item))
                settled[item.event_id] = None
                continue
            settled[item.event_id] = await self._route_one(item, remembered, batch, notes)

    async def _route_one(
        self, item: Pending, remembered: Mapping[str, str], batch: Batch, notes: list[str]
    ) -> Pending | None:
        """One waiting event released: its result, its copies; what of it still waits."""
        out = Result(-1, "released", item.event_id, item.event, cid=item.cid)
        if self.watched():  # the debug view diffs the copies against the waiting event
            out.input = item.body
        batch.releases.append(out)
        ready, left = await self._route_released(item, remembered, out, batch)
        released = sum(1 for c in out.copies if c.outcome == "delivered")
        notes.append(f"consent released {released} waiting copy(ies) of {item.event}")
        for dest in ready:
            hop("released", event_id=item.event_id, event=self._named(item.event),
                destination=dest, purpose=item.waits[dest], reason="consent")
        return left

    async def _route_released(
        self, item: Pending, remembered: Mapping[str, str], out: Result, batch: Batch
    ) -> tuple[list[str], Pending | None]:
        """One waiting event, routed with the choice: the names of the destinations it is
        released to (their copies are in ``out`` and ``batch.rows``), and what of it still
        waits (None: nothing)."""
        rules = self.rules
        eid, name = item.event_id, item.event
        ev: Event = orjson.loads(item.body)
        source = ev.get("source")
        out.source = source if isinstance(source, str) else None
        apply_memory(ev, remembered)
        states = {p: decide(purpose, ev) for p, purpose in rules.purposes.items()}
        granted = frozenset(p for p, (state, _) in states.items() if state == "granted")
        ready: list[Destination] = []
        still: dict[str, str] = {}
        for dest_name, purpose in item.waits.items():
            dest = rules.destinations.get(dest_name)
            if dest is None or dest.purpose != purpose:
                continue  # removed or changed by a reload while waiting
            if dest.events is not None and name not in dest.events:
                out.copies.append(Copy(dest_name, "dropped", "not in its events"))
                continue
            state, reason = states[purpose]
            if state == "granted":
                if dest.when and not matches(dest.when, ev):
                    out.copies.append(Copy(dest_name, "dropped", "when: no match"))
                    continue
                ready.append(dest)
            elif reason.startswith("default"):
                still[dest_name] = purpose
            else:
                self._suppressed(eid, name, dest_name, purpose, reason, ev.get("source"))
                out.copies.append(
                    Copy(dest_name, "suppressed", f"{purpose}: {reason}", purpose=purpose)
                )
        for dest_name, purpose in still.items():
            out.copies.append(Copy(dest_name, "held", f"{purpose}: {PENDING}", purpose=purpose))
        await self._emit(ev, ready, granted, out, batch)
        left = Pending(item.cid, eid, name, still, item.body, item.until) if still else None
        return [d.name for d in ready], left
