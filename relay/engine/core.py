"""The routing engine: from parsed envelopes to per-destination decisions and spool rows.

It has no HTTP in it: the handlers in ``collect.py`` and ``relay test`` both call
``Engine.process``. For each event::

    normalize -> enrich (source, received_at, browser context) -> contract
      -> authority (hold browser copies / merge them into the backend's)
      -> per destination: events, when, consent, dedup, pipeline -> a spool Row

``Engine.process`` routes a request's events, then commits ``Batch.rows`` with the
``commit`` it is given (ingest passes the spool's ``put``). Its dedup marks are tentative
until that commit returned (``marks.py``), and what it takes from the state (the waiting
events a consent choice releases, the held browser copies an authoritative copy merges)
is only read before it and taken once it returned (``_confirm``, marks first). So a commit
that fails (``_rollback``) or a process that dies before it leaves no mark its client's
retry could be mistaken for, and nothing taken that the retry would not find again. What
it returns is in ``results.py``; events that wait for a browser's consent are handled in
``waiting.py``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson

from relay import pipeline
from relay.destinations import DESTINATIONS
from relay.engine import contracts, envelope
from relay.engine.consent import decide
from relay.engine.identity import new_id
from relay.engine.marks import AFTER_MARK, claim, crash_point, kept_during
from relay.engine.match import matches
from relay.engine.results import Audit, Batch, Copy, Meta, Result
from relay.engine.sample import Sampler
from relay.engine.waiting import (
    CONSENT_EVENT,
    CONSENT_MEMORY_SECONDS,
    PENDING,
    ConsentWaits,
    reads_consent,
)
from relay.errors import Contended, StateUnavailable
from relay.observe.log import LOG, digest, hop
from relay.observe.mask import Masker
from relay.observe.metrics import Metrics
from relay.paths import MISSING
from relay.paths import get as get_path
from relay.paths import set_ as set_path
from relay.personal import Subjects
from relay.rules.model import Contract, Destination, Rules, Source
from relay.spool.base import Quarantined, Row
from relay.state import State
from relay.types import DestinationDef, Event, Prepare, StepContext

OTHER_EVENT = "*"
Commit = Callable[[Batch], Awaitable[None]]  # commits a batch's rows, or raises


class Engine(ConsentWaits):
    """``masker`` masks the copies of quarantined events (``relay.observe.mask``)."""

    def __init__(
        self,
        rules: Rules,
        state: State,
        metrics: Metrics,
        masker: Masker,
        kinds: Mapping[str, DestinationDef] = DESTINATIONS,
        subjects: Subjects | None = None,
        sampler: Sampler | None = None,
        watched: Callable[[], bool] = lambda: False,
    ) -> None:
        self.rules = rules
        # True while someone watches the debug view: results then keep each event's input
        # and vendor destinations' copies before their mapping, for its diff.
        self.watched = watched
        self.subjects = subjects  # the ledger's keyed hashes of a person's ids
        self.sampler = sampler  # relay.sample: events recorded for relay diff
        self.state = state
        self.metrics = metrics
        self.masker = masker
        self._prepares: dict[str, Prepare] = {
            name: prep
            for name, dest in rules.destinations.items()
            if (kind := kinds.get(dest.type)) is not None and (prep := kind.prepare) is not None
        }
        self._browser_name = next(
            (s.name for s in rules.sources.values() if s.type == "browser"), None
        )
        self._auth_ttl = max(
            [c.confirm_window for c in rules.events.contracts.values()] + [rules.relay.dedup_window]
        )

    async def process(
        self, raws: Sequence[Any], meta: Meta, commit: Commit | None = None
    ) -> Batch:
        """Route the events, commit the batch with ``commit``, then confirm its dedup
        marks. Without ``commit`` (``relay test``, ``relay diff``: nothing is spooled) they
        are confirmed at once. Raises what ``commit`` raised (``SpoolUnavailable``), or
        ``Contended`` when another request's copy of one of its events did not settle in
        time; the batch's state changes are undone first, so a retry is safe. A request
        cancelled while it commits (its client gone) leaves its marks tentative, as a
        process that dies does: a retry is accepted (delivered at least once)."""
        batch = Batch()
        watched = self.watched()
        for index, raw in enumerate(raws):
            result = await self._one(index, raw, meta, batch, watched)
            if result.cid is None and meta.source.type == "browser":
                result.cid = meta.correlation_id
            result.source, result.received_ms = meta.source.name, meta.received_ms
            batch.results.append(result)
            if batch.marks.contended:
                await self._rollback(batch)
                raise Contended("another copy of an event in the request is being committed")
        if commit is None:
            await self._confirm(batch)
            return batch
        if batch.marks.keys:
            crash_point(AFTER_MARK)
        await self._commit(batch, commit)
        return batch

    async def _commit(self, batch: Batch, commit: Commit) -> None:
        try:
            await kept_during(self.state, batch.marks, commit(batch))
        except Exception:
            await self._rollback(batch)
            raise
        try:
            await self._confirm(batch)
        except Exception as exc:
            LOG.exception("state: cannot record what a committed request did; answering 503")
            raise StateUnavailable(str(exc)) from exc

    async def _confirm(self, batch: Batch) -> None:
        """The batch is committed: its tentative marks become marks for the dedup window,
        its authoritative copies are marked as received (and the held browser copies they
        merged are dropped), and the waiting events it released are settled. Marks first:
        if the process dies midway, the client's retry finds its copies committed
        (duplicates) and settles the rest."""
        state = self.state
        await state.confirm(batch.marks.keys, self.rules.relay.dedup_window)
        await state.confirm(batch.authorities, self._auth_ttl)
        for aliases in batch.merged:
            await state.take(aliases)
        for cid, released in batch.settled.items():
            await state.settle(cid, released)

    async def _rollback(self, batch: Batch) -> None:
        """A batch that will not be committed: drop its tentative dedup marks, and restore
        the consent choices it made (so the client's retry makes them again). The waiting
        events it released were never taken; the events it made wait, and the browser
        copies it held, stay (a retry waits or holds again: released once, by the marks).
        Best effort: marks that cannot be dropped expire by themselves within seconds."""
        try:
            await self.state.unmark(batch.marks.keys, batch.marks.token)
            for cid, before in reversed(batch.remembered):
                await self.state.remember_consent(cid, before or {}, CONSENT_MEMORY_SECONDS)
        except Exception:
            LOG.warning("state: cannot undo what a request that was not committed did; its "
                        "tentative dedup marks expire by themselves", exc_info=True)

    # -- one event --------------------------------------------------------------------

    def _label(self, name: str) -> str:
        """An event name fit for a metric label: contract names only, so clients cannot
        grow the label set (or put text of their own into it)."""
        return name if name in self.rules.events.contracts else OTHER_EVENT

    def _reject(
        self, index: int, meta: Meta, error: str, reason: str, name: str | None, logged: str,
        eid: str | None = None,
    ) -> Result:
        """A rejected event: ``error`` goes to the client, ``logged`` (the same in the relay's
        and the rules' words only: no event name, key or value the client chose) to the hop
        line, which names the event only when the rules do, and its ``eid`` once the
        envelope has checked it."""
        self.metrics.events_rejected.labels(meta.source.name, reason).inc()
        known = name if name is not None and name in self.rules.events.contracts else None
        hop("rejected", event_id=eid, source=meta.source.name, event=known, reason=reason,
            error=logged)
        return Result(index, "rejected", event=name, error=error)

    async def _one(
        self, index: int, raw: Any, meta: Meta, batch: Batch, watched: bool
    ) -> Result:
        """One event: the envelope, the context the relay fills in, then ``_decide``. While
        the debug view watches, the result keeps the event as it was at that point."""
        rules = self.rules
        source = meta.source
        trusted = source.type != "browser"
        ev = envelope.normalize(
            raw,
            trusted=trusted,
            limits=rules.relay.limits,
            consent_map=rules.relay.consent_map,
            now_ms=meta.received_ms,
        )
        if isinstance(ev, envelope.EnvelopeError):
            name = raw.get("event") if isinstance(raw, dict) else None
            name = name if isinstance(name, str) else None
            result = self._reject(index, meta, str(ev), "envelope", name, ev.logged)
            result.input = _snapshot(raw) if watched else None
            return result
        notes: list[str] = []
        if "event_id" not in ev:
            if trusted:
                error = "event_id: required for backend events"
                result = self._reject(index, meta, error, "envelope", ev["event"], error)
                result.input = _snapshot(ev) if watched else None
                return result
            ev["event_id"] = new_id("evt_")
        self._enrich(ev, meta, notes)
        if source.type == "browser" and not meta.gpc and _says_gpc(raw):
            # navigator.globalPrivacyControl, as the snippet reports it: an opt-out can only
            # narrow what is sent, so the page may turn GPC on (never off).
            ev["context"]["gpc"] = True
        arrived = _snapshot(ev) if watched else None
        result = await self._decide(index, ev, meta, batch, notes)
        result.input = arrived
        return result

    async def _decide(
        self, index: int, ev: Event, meta: Meta, batch: Batch, notes: list[str]
    ) -> Result:
        """Consent memory, the contract, authority, then routing."""
        rules = self.rules
        source = meta.source
        cid = ev.get("correlation_id") if source.type == "browser" else None
        given = ev.get("consent")
        if cid is not None:
            memory = await self._consent_memory(ev, cid)
            given = memory.given
            if memory.changed:
                batch.remembered.append((cid, memory.before))
            if ev["event"] == CONSENT_EVENT:
                return await self._consent_update(index, ev, cid, memory, batch, notes)
            if memory.changed:
                await self._release(cid, memory.after, batch, notes)

        checked = contracts.check(ev, rules.events)
        name, eid = ev["event"], ev["event_id"]
        if checked.kind == "rejected":
            error, logged = checked.error or "contract", checked.logged or "contract"
            result = self._reject(index, meta, error, "contract", name, logged, eid)
            result.event_id = eid  # a valid id (the envelope passed): the debug view shows it
            return result
        ev = checked.event
        self.metrics.events_received.labels(source.name, self._label(name)).inc()
        hop(
            "received",
            event_id=eid,
            source=source.name,
            event=self._named(name),
            schema=ev.get("schema"),
            consent=ev.get("consent"),
            cid=digest(ev["correlation_id"]) if "correlation_id" in ev else None,
            _people=self.subjects.of(ev.get("user")) if self.subjects is not None else None,
        )
        if checked.kind == "quarantine":
            batch.quarantined.append(self._quarantine_copy(source.name, name, checked.error, ev))
            self.metrics.events_quarantined.labels(source.name).inc()
            hop("quarantined", event_id=eid, source=source.name, event=self._named(name))
            return Result(index, "quarantined", eid, name, checked.error, notes=notes)

        if self.sampler is not None:
            self.sampler.offer(rules, ev)
        result = Result(index, "accepted", eid, name, notes=notes, cid=ev.get("correlation_id"))
        contract = checked.contract
        if contract is not None and contract.authority is not None:
            await self._authority(ev, contract, source, result, batch)
            if result.status != "accepted":
                return result

        await self._route(ev, given, result, batch)
        routed = [c for c in result.copies if c.outcome in ("delivered", "duplicate")]
        if routed and all(c.outcome == "duplicate" for c in routed):
            result.status = "duplicate"
        return result

    def _enrich(self, ev: Event, meta: Meta, notes: list[str]) -> None:
        ev["source"] = meta.source.name
        ev["received_at"] = envelope.format_ms(meta.received_ms)
        ctx = ev.get("context")
        if not isinstance(ctx, dict):
            ctx = ev["context"] = {}
        if meta.source.type == "browser":
            for key, value in (
                ("ip", meta.ip),
                ("user_agent", meta.user_agent),
                ("country", meta.country),
            ):
                if value:
                    ctx[key] = value
            ctx["gpc"] = meta.gpc
            if meta.bot:
                ctx["bot"] = True
            if meta.correlation_id:
                ev["correlation_id"] = meta.correlation_id
            return
        # Trusted sources: the backend's context is the user's; only fill the country
        # from the CDN header when the backend did not say.
        if "country" not in ctx and meta.country:
            ctx["country"] = meta.country
        echoed = ev.get("correlation_id")
        if echoed is not None:
            verified = (
                meta.verify_correlation(echoed)
                if (meta.verify_correlation and isinstance(echoed, str))
                else None
            )
            if verified is None:
                del ev["correlation_id"]
                notes.append("correlation_id: invalid or expired signature, ignored")
            else:
                ev["correlation_id"] = verified

    async def _authority(
        self, ev: Event, contract: Contract, source: Source, result: Result, batch: Batch
    ) -> None:
        """Hold a browser copy of an event another source is the authority for (``result``
        becomes ``held``, or ``duplicate`` when the authority's copy came first), or merge a
        held one into the authority's copy (``result.confirms`` names it)."""
        eid, name, notes = ev["event_id"], ev["event"], result.notes
        cid = ev.get("correlation_id")
        aliases = ["eid:" + eid] + ([f"cid:{cid}:{name}"] if cid else [])
        if source.name == contract.authority:
            held = await self.state.peek(aliases)  # taken once this copy is committed
            if held is not None:
                batch.merged.append(aliases)
                merged = []
                for path, value in held.get("fields", {}).items():
                    if get_path(ev, path) is MISSING:
                        set_path(ev, path, value)
                        merged.append(path)
                notes.append(f"confirmed a held browser copy; merged {len(merged)} field(s)")
                hop("released", event_id=eid, source=source.name, event=name, merged=len(merged))
                result.merged = tuple(merged)
                browser_eid = held.get("event_id")
                result.confirms = browser_eid if isinstance(browser_eid, str) else None
            batch.authorities.append("auth:" + eid)  # marked once it is committed
            return
        if source.type != "browser":
            return  # another trusted source: routed as is
        if await self.state.contains("auth:" + eid):
            notes.append("the authoritative copy was already received")
            self.metrics.events_duplicate.labels("*").inc()
            hop("duplicate", event_id=eid, source=source.name, event=name,
                reason="authority already confirmed")
            result.status = "duplicate"
            return
        fields = {
            p: v for p in contract.enrich_from_browser if (v := get_path(ev, p)) is not MISSING
        }
        held_copy: dict[str, Any] = {"event": name, "event_id": eid, "fields": fields}
        if cid:
            held_copy["cid"] = cid  # so its expiry reaches the debug view of its browser
        await self.state.hold(aliases, held_copy, contract.confirm_window)
        self.metrics.events_held.labels(self._label(name)).inc()
        hop("held", event_id=eid, source=source.name, event=name,
            authority=contract.authority)
        notes.append(f"held until {contract.authority} confirms")
        result.status, result.held_for = "held", contract.authority

    async def _route(self, ev: Event, given: Any, result: Result, batch: Batch) -> None:
        """Decide each destination's copy. ``given`` is the event's own ``consent`` (before
        the browser's remembered choice was merged in), kept if the event must wait."""
        rules = self.rules
        eid, name = ev["event_id"], ev["event"]
        states = {p: decide(purpose, ev) for p, purpose in rules.purposes.items()}
        granted = frozenset(p for p, (state, _) in states.items() if state == "granted")
        # A copy whose purpose is undecided in an opt-in region waits for this browser's
        # consent instead of being suppressed (browser events only: they have a cookie).
        cid = ev.get("correlation_id") if ev.get("source") == self._browser_name else None
        candidates: list[Destination] = []
        waits: dict[str, Copy] = {}
        for dest in rules.destinations.values():
            if dest.events is not None and name not in dest.events:
                continue
            state, reason = (
                states.get(dest.purpose, ("denied", "unknown purpose"))
                if dest.purpose is not None
                else ("granted", "")
            )
            waiting = (
                cid is not None
                and dest.purpose is not None
                and state != "granted"
                and reason.startswith("default")
                and rules.purposes[dest.purpose].pending_window > 0
            )
            # A ``when`` that reads ``consent`` is decided when the choice comes.
            decide_when = dest.when and not (waiting and reads_consent(dest.when))
            if decide_when and not matches(dest.when, ev):
                result.copies.append(Copy(dest.name, "dropped", "when: no match"))
                continue
            if dest.purpose is not None and state != "granted":
                if waiting:
                    held = f"{dest.purpose}: {PENDING}"
                    copy = Copy(dest.name, "held", held, purpose=dest.purpose)
                    result.copies.append(copy)
                    waits[dest.name] = copy
                    continue
                self._suppressed(eid, name, dest.name, dest.purpose, reason, ev["source"])
                result.copies.append(
                    Copy(dest.name, "suppressed", f"{dest.purpose}: {reason}", purpose=dest.purpose)
                )
                continue
            candidates.append(dest)
        if waits and cid:
            await self._pend(ev, cid, given, waits)
        await self._emit(ev, candidates, granted, result, batch)

    def _prepare(self, own: Event, dest: Destination, granted: frozenset[str]) -> Copy:
        """One destination's copy: ``own`` (an event this copy alone holds, which the steps
        may change) through the destination's pipeline, then, for a vendor destination, in
        the vendor's format (``DestinationDef.prepare``): what the spool keeps."""
        sent: Event | None = own
        ctx = StepContext(dest.name, granted)
        if dest.pipeline is not None and sent is not None:
            sent = pipeline.run(self.rules.pipelines[dest.pipeline].steps, sent, ctx)
        for transform, n in ctx.counts.items():
            self.metrics.fields_redacted.labels(transform).inc(n)
        if sent is None:
            return Copy(dest.name, "dropped", "dropped by the pipeline")
        prepare = self._prepares.get(dest.name)
        if prepare is not None:
            # The debug view compares the copy before the vendor's mapping with the input.
            minimized = orjson.loads(orjson.dumps(sent)) if self.watched() else None
            notes = len(ctx.notes)
            try:
                sent = prepare(sent, dest.settings, ctx)
            except Exception:  # a mapping bug must not cost the other destinations the event
                LOG.exception("destination %s: cannot map the event to the vendor's format",
                              dest.name)
                sent = None
                ctx.notes.append("the vendor mapping failed (see the relay's log)")
            if sent is None:
                why = "; ".join(ctx.notes[notes:]) or "the vendor cannot take this event"
                return Copy(dest.name, "dropped", why, minimized=minimized)
            return Copy(dest.name, "delivered", "; ".join(ctx.notes), sent, minimized=minimized)
        return Copy(dest.name, "delivered", "; ".join(ctx.notes), sent)

    async def _emit(
        self,
        ev: Event,
        candidates: Sequence[Destination],
        granted: frozenset[str],
        result: Result,
        batch: Batch,
    ) -> None:
        """Run each destination's pipeline on its own copy, then dedup and add the rows.
        The event is not needed after this, so the last destination takes it as its copy."""
        consent = {p: "granted" if p in granted else "denied" for p in self.rules.purposes}
        result.audit = Audit(ev["source"], self._named(ev["event"]), _schema(ev), consent)
        blob = orjson.dumps(ev) if len(candidates) > 1 else b""
        copies = [self._prepare(orjson.loads(blob), dest, granted) for dest in candidates[:-1]]
        if candidates:
            copies.append(self._prepare(ev, candidates[-1], granted))
        await self._spool_copies(
            ev["event_id"], ev["event"], copies, result, batch, ev.get("source")
        )

    async def _spool_copies(
        self, eid: str, name: str, copies: Sequence[Copy], result: Result, batch: Batch,
        source: str | None = None,
    ) -> None:
        for copy in copies:
            if copy.sent is None:
                result.copies.append(copy)
                self.metrics.events_dropped.labels(copy.destination).inc()
                hop("dropped", event_id=eid, source=source, event=self._named(name),
                    destination=copy.destination)
        ready = [c for c in copies if c.sent is not None]
        if not ready:
            return
        keys = [f"{c.destination}:{eid}" for c in ready]
        marks = await claim(self.state, batch.marks, keys)
        for copy, mark in zip(ready, marks, strict=True):
            if mark == "busy":  # not settled in time: the whole request is refused
                continue
            if mark != "new":
                result.copies.append(
                    Copy(copy.destination, "duplicate", "seen within dedup_window")
                )
                self.metrics.events_duplicate.labels(copy.destination).inc()
                hop(
                    "duplicate",
                    event_id=eid,
                    source=source,
                    event=self._named(name),
                    destination=copy.destination,
                )
                continue
            result.copies.append(copy)
            batch.rows.append(Row(copy.destination, eid, orjson.dumps(copy.sent)))

    def _quarantine_copy(
        self, source: str, name: str, error: str | None, ev: Event
    ) -> Quarantined:
        """Quarantined events are kept for review in the debug view's masked form: their
        shape and names, never a raw IP, user agent, identifier or correlation id. The name and
        the error are the client's text, masked as such."""
        text = self.masker.text
        payload = orjson.dumps(self.masker.event(ev))
        return Quarantined(source, text(name), text(error or ""), payload)

    async def expire(self) -> list[Result]:
        """Count what ran out of time: held browser copies never confirmed, and events that
        waited for a consent choice that never came (their copies suppressed). One result
        each, for the debug view."""
        out = []
        for held in await self.state.expired():
            name = str(held.get("event", "?"))
            self.metrics.held_expired.labels(self._label(name)).inc()
            eid = held.get("event_id")
            eid = eid if isinstance(eid, str) else None
            hop("expired", event_id=eid, event=self._named(name),
                reason="unconfirmed by the authoritative source")
            contract = self.rules.events.contracts.get(name)
            authority = contract.authority if contract is not None else None
            cid = held.get("cid")
            result = Result(-1, "expired", eid, name, cid=cid if isinstance(cid, str) else None,
                            held_for=authority)
            result.notes.append(f"not confirmed by {authority or 'its authoritative source'} "
                                "within confirm_window")
            out.append(result)
        return out + await self._expire_pending()


def _snapshot(value: Any) -> bytes | None:
    """The event as it is now, for the debug view (None if it cannot be written as JSON)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return None


def _schema(ev: Event) -> int | None:
    schema = ev.get("schema")
    return schema if isinstance(schema, int) and not isinstance(schema, bool) else None


def _says_gpc(raw: Any) -> bool:
    ctx = raw.get("context") if isinstance(raw, dict) else None
    return isinstance(ctx, dict) and ctx.get("gpc") is True


def now_ms() -> int:
    return int(time.time() * 1000)
