"""Copies that wait for a browser's consent choice (the engine's consent flow).

A browser event whose purpose is undecided in an opt-in region does not lose its copies at
once: each destination's copy (its pipeline already run) waits per correlation id for the
purpose's ``pending_window``. The browser's explicit choice, from the built-in
``consent_update`` event or any event carrying ``consent``, is remembered for a day; it
releases the copies now granted, suppresses those denied, and leaves the undecided waiting.

``ConsentWaits`` is the part of ``relay.engine.Engine`` that does this; it uses the engine's
rules, state and metrics, and the three engine steps declared at its top.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson

from relay.engine.consent import decide
from relay.engine.results import Batch, Copy, Result
from relay.observe.log import digest, hop
from relay.observe.mask import Masker
from relay.observe.metrics import Metrics
from relay.rules.model import Destination, Rules
from relay.state import State
from relay.types import Event

CONSENT_EVENT = "consent_update"  # built in: records a browser's choice, releases waiting copies
CONSENT_MEMORY_SECONDS = 24 * 3600.0


class ConsentWaits:
    rules: Rules
    state: State
    metrics: Metrics
    masker: Masker

    def _named(self, name: str) -> str:
        """An event name for a hop line: a contract's as it is; any other is the client's
        text, masked (``relay.observe.mask``) as the debug view shows it."""
        return name if name in self.rules.events.contracts else self.masker.text(name)

    # Engine steps this flow reuses (defined in relay.engine.Engine).
    def _prepare(self, own: Event, dest: Destination, granted: frozenset[str]) -> Copy:
        raise NotImplementedError

    async def _spool_copies(
        self, eid: str, name: str, copies: Sequence[Copy], result: Result, batch: Batch
    ) -> None:
        raise NotImplementedError

    def _suppressed(self, eid: str, name: str, dest: str, purpose: str, reason: str) -> None:
        self.metrics.consent_suppressed.labels(dest, purpose).inc()
        hop(
            "suppressed",
            event_id=eid,
            event=self._named(name),
            destination=dest,
            purpose=purpose,
            reason=reason,
        )

    async def _pend(
        self, ev: Event, cid: str, pending: dict[str, str], granted: frozenset[str], result: Result
    ) -> None:
        """Keep the copies of destinations whose purpose is undecided until this browser
        chooses. What waits is what each destination would receive (its pipeline already
        ran, as if its purpose were granted), never the raw event."""
        rules = self.rules
        eid, name = ev["event_id"], ev["event"]
        blob = orjson.dumps(ev)
        copies: dict[str, dict[str, Any]] = {}
        for dest_name, purpose in pending.items():
            copy = self._prepare(
                orjson.loads(blob), rules.destinations[dest_name], granted | {purpose}
            )
            copies[dest_name] = {"purpose": purpose, "sent": copy.sent}
        window = max(rules.purposes[p].pending_window for p in pending.values())
        ctx = ev.get("context") or {}
        item = {
            "event_id": eid,
            "event": name,
            "copies": copies,
            "until": time.time() + window,
            "context": {"country": ctx.get("country"), "gpc": ctx.get("gpc", False)},
        }
        if await self.state.pend(cid, item, window):
            hop(
                "held",
                event_id=eid,
                event=self._named(name),
                reason="pending consent",
                destinations=sorted(pending),
            )
            return
        for dest_name, purpose in pending.items():  # the pending store is full: fail closed
            self._suppressed(eid, name, dest_name, purpose, "pending store full")

    async def _expire_pending(self) -> None:
        for item in await self.state.expired_pending():
            for dest, entry in item.get("copies", {}).items():
                self._suppressed(
                    str(item.get("event_id")),
                    str(item.get("event")),
                    dest,
                    str(entry.get("purpose")),
                    "pending consent expired",
                )

    async def _consent_memory(self, ev: Event, cid: str) -> bool:
        """Merge this browser's remembered explicit consent into the event; remember what
        the event adds. True when the event changed what was remembered."""
        remembered = await self.state.consent_for(cid) or {}
        given = ev.get("consent") or {}
        if given:
            ev["consent"] = {**remembered, **given}
        elif remembered:
            ev["consent"] = dict(remembered)
        # Only the rules' purposes are remembered: other keys decide nothing, and a browser
        # must not be able to grow what is kept for it.
        purposes = self.rules.purposes
        learned = {k: v for k, v in given.items() if k in purposes and remembered.get(k) != v}
        if learned:
            merged = {**remembered, **learned}
            await self.state.remember_consent(cid, merged, CONSENT_MEMORY_SECONDS)
            return True
        return False

    async def _consent_update(
        self, index: int, ev: Event, cid: str, batch: Batch, notes: list[str]
    ) -> Result:
        """The built-in ``consent_update`` event: never routed, it releases waiting copies."""
        result = Result(index, "accepted", ev["event_id"], CONSENT_EVENT, notes=notes)
        hop(
            "received",
            event_id=ev["event_id"],
            source=ev["source"],
            event=CONSENT_EVENT,
            consent=ev.get("consent"),
            cid=digest(cid),
        )
        await self._release(ev, cid, batch, notes, result)
        return result

    async def _release(
        self, ev: Event, cid: str, batch: Batch, notes: list[str], result: Result | None = None
    ) -> None:
        """Send the copies that waited for consent to the destinations now granted; those
        explicitly denied are suppressed, those still undecided keep waiting (a consent
        tool may answer one purpose at a time) until their window ends."""
        now = time.time()
        for item in await self.state.release(cid):
            eid, name = item["event_id"], item["event"]
            probe = {"consent": ev.get("consent", {}), "context": item.get("context", {})}
            out = result or Result(-1, "accepted", eid, name)
            ready: list[Copy] = []
            waiting: dict[str, Any] = {}
            for dest_name, entry in item["copies"].items():
                purpose = entry["purpose"]
                if dest_name not in self.rules.destinations or purpose not in self.rules.purposes:
                    continue  # removed by a reload while waiting
                state, reason = decide(self.rules.purposes[purpose], probe)
                if state == "granted":
                    sent = entry["sent"]
                    ready.append(
                        Copy(dest_name, "delivered", "released by consent", sent)
                        if sent is not None
                        else Copy(dest_name, "dropped", "dropped by the pipeline")
                    )
                elif reason.startswith("default"):
                    waiting[dest_name] = entry
                else:
                    self._suppressed(eid, name, dest_name, purpose, reason)
                    out.copies.append(Copy(dest_name, "suppressed", f"{purpose}: {reason}"))
            until = float(item.get("until", now))
            if waiting and until > now:
                await self.state.pend(cid, {**item, "copies": waiting}, until - now)
                out.copies.extend(
                    Copy(d, "held", f"{e['purpose']}: pending consent") for d, e in waiting.items()
                )
            else:
                for dest_name, entry in waiting.items():
                    self._suppressed(
                        eid, name, dest_name, entry["purpose"], "pending consent expired"
                    )
            await self._spool_copies(eid, name, ready, out, batch)
            released = sum(1 for c in ready if c.sent is not None)
            notes.append(f"consent released {released} waiting copy(ies) of {name}")
            hop(
                "released", event_id=eid, event=self._named(name), reason="consent", copies=released
            )
