"""State in this process (``state: memory``, the default): bounded, gone on restart."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Generic, TypeVar

from relay.state.base import Held, Mark, Pending, WaitKey

# Events waiting for consent, per process (memory state): at most this many, and at most this
# many bytes of their JSON (an event is at most ``limits.body_bytes``, 64 KiB by default).
MAX_PENDING = 100_000
MAX_PENDING_BYTES = 128 * 1024 * 1024
CONSENT_TTL = 24 * 3600.0  # how long memory state keeps a browser's explicit consent

V = TypeVar("V")


class TTLMap(Generic[V]):
    """A bounded map whose entries live ``ttl`` seconds from when they were last set.

    What the dedup ledger and the consent memory need from ``cachetools.TTLCache``, at a
    fraction of its cost per call (TTLCache keeps a linked list of expiry links in Python; it
    showed up in the ingest profile). Every entry has the same ttl, so the order entries were
    set in is the order they expire in. An ``OrderedDict`` keeps that order (setting a key
    again moves it to the back), so expired entries are always at the front, where ``set``
    trims them, together with the oldest entries while there are more than ``max_keys``:
    amortised O(1). Reading does not move an entry: when full, the oldest-set entry (the next
    to expire) goes first. Not a plain dict: finding a dict's first entry scans past every
    deleted slot before it, which makes a dict used as a queue O(n) per call.

    >>> now = [0.0]
    >>> marks: TTLMap[bool] = TTLMap(max_keys=2, ttl=10.0, clock=lambda: now[0])
    >>> marks.add("a", True), marks.add("a", True)  # new, then live
    (False, True)
    >>> now[0] = 10.0  # "a" expires at its deadline, so it is new again
    >>> marks.add("a", True), marks.add("b", True), marks.add("c", True), "a" in marks
    (False, False, False, False)
    """

    __slots__ = ("_entries", "clock", "max_keys", "ttl")

    def __init__(self, max_keys: int, ttl: float, clock: Callable[[], float]) -> None:
        self.max_keys = max_keys
        self.ttl = ttl
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()  # key -> (deadline, v)

    def __len__(self) -> int:
        """Entries held, expired ones not yet trimmed included."""
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        entry = self._entries.get(key)
        return entry is not None and self.clock() < entry[0]

    def get(self, key: str) -> V | None:
        entry = self._entries.get(key)
        if entry is None or self.clock() >= entry[0]:
            return None
        return entry[1]

    def set(self, key: str, value: V) -> None:
        now = self.clock()
        self._entries.pop(key, None)  # to the back: insertion order stays expiry order
        self._entries[key] = (now + self.ttl, value)
        self._trim(now)

    def add(self, key: str, value: V) -> bool:
        """Set ``key`` unless it is live; True when it was (and is left as it was)."""
        now = self.clock()
        entry = self._entries.get(key)
        if entry is not None:
            if now < entry[0]:
                return True
            del self._entries[key]
        self._entries[key] = (now + self.ttl, value)
        self._trim(now)
        return False

    def discard(self, key: str) -> None:
        self._entries.pop(key, None)

    def _trim(self, now: float) -> None:
        entries = self._entries
        while entries:
            first = next(iter(entries))  # O(1): an OrderedDict follows its own links
            if len(entries) <= self.max_keys and now < entries[first][0]:
                return
            del entries[first]


class MemoryState:
    """State in this process. Confirmed marks are kept for the ttl ``confirm()`` is given,
    in one ``TTLMap`` per distinct ttl (the engine uses two: the dedup window, and the
    longer authority window), so each map expires in insertion order; each map holds at
    most ``max_keys``. Tentative marks (a request's, until its commit: seconds) are a plain
    map, trimmed of expired ones when it outgrows ``max_keys``."""

    def __init__(self, max_keys: int, ttl: float, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.max_keys = max_keys
        self._seen: dict[float, TTLMap[bool]] = {ttl: TTLMap(max_keys, ttl, clock)}
        self._tentative: dict[str, tuple[float, str]] = {}  # key -> (deadline, token)
        self._held: dict[str, tuple[float, int]] = {}  # alias -> (deadline, held id)
        self._copies: dict[int, tuple[float, Held, tuple[str, ...]]] = {}
        self._next = 0
        self._consent: TTLMap[dict[str, str]] = TTLMap(max_keys, CONSENT_TTL, clock)
        self._pending: dict[str, list[tuple[float, Pending]]] = {}  # cid -> (deadline, item)
        self._pending_count = 0  # events
        self._pending_bytes = 0  # of their bodies
        self._waiting: dict[WaitKey, int] = {}  # copies, per (destination, purpose)

    def _confirmed(self, key: str) -> bool:
        return any(key in marks for marks in self._seen.values())

    async def mark(self, keys: Sequence[str], token: str, ttl: float) -> list[Mark]:
        now = self.clock()
        tentative = self._tentative
        if len(tentative) > self.max_keys:
            for key, (deadline, _) in list(tentative.items()):
                if deadline <= now:
                    del tentative[key]
        out: list[Mark] = []
        for key in keys:
            if self._confirmed(key):
                out.append("seen")
                continue
            held = tentative.get(key)
            if held is not None and now < held[0]:
                out.append("ours" if held[1] == token else "busy")
                continue
            tentative[key] = (now + ttl, token)
            out.append("new")
        return out

    async def keep(self, keys: Sequence[str], token: str, ttl: float) -> None:
        now = self.clock()
        tentative = self._tentative
        for key in keys:
            held = tentative.get(key)
            if held is not None and held[1] == token and now < held[0]:
                tentative[key] = (now + ttl, token)

    async def confirm(self, keys: Sequence[str], ttl: float) -> None:
        marks = self._seen.get(ttl)
        if marks is None:
            marks = self._seen[ttl] = TTLMap(self.max_keys, ttl, self.clock)
        for key in keys:
            self._tentative.pop(key, None)
            marks.set(key, True)

    async def unmark(self, keys: Sequence[str], token: str) -> None:
        tentative = self._tentative
        for key in keys:
            held = tentative.get(key)
            if held is not None and held[1] == token:
                del tentative[key]

    async def contains(self, key: str) -> bool:
        return self._confirmed(key)

    async def hold(self, aliases: Sequence[str], held: Held, ttl: float) -> None:
        before = self._held.get(aliases[0]) if aliases else None
        if before is not None:  # held again (a client's retry): the new copy replaces it
            _, _, old_aliases = self._copies.pop(before[1], (0.0, {}, ()))
            for alias in old_aliases:
                self._held.pop(alias, None)
        self._next += 1
        deadline = self.clock() + ttl
        self._copies[self._next] = (deadline, held, tuple(aliases))
        for alias in aliases:
            self._held[alias] = (deadline, self._next)

    async def peek(self, aliases: Sequence[str]) -> Held | None:
        for alias in aliases:
            entry = self._held.get(alias)
            copy = self._copies.get(entry[1]) if entry is not None else None
            if copy is not None:
                return copy[1]
        return None

    async def take(self, aliases: Sequence[str]) -> Held | None:
        for alias in aliases:
            entry = self._held.get(alias)
            if entry is None or entry[1] not in self._copies:
                continue
            _, held, all_aliases = self._copies.pop(entry[1])
            for a in all_aliases:
                self._held.pop(a, None)
            return held
        return None

    async def expired(self) -> list[Held]:
        now = self.clock()
        out = []
        for hid, (deadline, held, aliases) in list(self._copies.items()):
            if deadline <= now:
                del self._copies[hid]
                for a in aliases:
                    self._held.pop(a, None)
                out.append(held)
        return out

    async def remember_consent(self, cid: str, consent: dict[str, str], ttl: float) -> None:
        self._consent.set(cid, dict(consent))  # kept for CONSENT_TTL, whatever ttl says

    async def consent_for(self, cid: str) -> dict[str, str] | None:
        return self._consent.get(cid)

    async def pend(self, item: Pending, ttl: float) -> bool:
        size = len(item.body)
        if self._pending_count >= MAX_PENDING or self._pending_bytes + size > MAX_PENDING_BYTES:
            return False
        self._pending.setdefault(item.cid, []).append((self.clock() + ttl, item))
        self._count(item, 1)
        return True

    async def waiting(self, cid: str) -> list[Pending]:
        return [item for _, item in self._pending.get(cid, [])]

    async def settle(self, cid: str, released: Mapping[str, Pending | None]) -> None:
        items = self._pending.get(cid)
        if not items or not released:
            return
        kept: list[tuple[float, Pending]] = []
        put_back: set[str] = set()
        for deadline, item in items:
            if item.event_id not in released:
                kept.append((deadline, item))
                continue
            self._count(item, -1)
            left = released[item.event_id]
            if left is not None and item.event_id not in put_back:
                put_back.add(item.event_id)
                kept.append((deadline, left))
                self._count(left, 1)
        if kept:
            self._pending[cid] = kept
        else:
            del self._pending[cid]

    async def release(self, cid: str) -> list[Pending]:
        items = self._pending.pop(cid, [])
        for _, item in items:
            self._count(item, -1)
        return [item for _, item in items]

    async def expired_pending(self) -> list[Pending]:
        now = self.clock()
        out: list[Pending] = []
        for cid, items in list(self._pending.items()):
            live = [(d, i) for d, i in items if d > now]
            for d, i in items:
                if d <= now:
                    out.append(i)
                    self._count(i, -1)
            if live:
                self._pending[cid] = live
            else:
                del self._pending[cid]
        return out

    async def pending_counts(self) -> dict[WaitKey, int]:
        return dict(self._waiting)

    async def forget_events(self, event_ids: Sequence[str]) -> tuple[int, int]:
        ids = set(event_ids)
        held = 0
        for hid, (_, copy, aliases) in list(self._copies.items()):
            if copy.get("event_id") in ids:
                del self._copies[hid]
                for alias in aliases:
                    self._held.pop(alias, None)
                held += 1
        pending = 0
        for cid, items in list(self._pending.items()):
            kept = [(d, i) for d, i in items if i.event_id not in ids]
            for _, item in items:
                if item.event_id in ids:
                    self._count(item, -1)
                    pending += 1
            if kept:
                self._pending[cid] = kept
            else:
                del self._pending[cid]
        return held, pending

    def _count(self, item: Pending, sign: int) -> None:
        """Add (1) or remove (-1) an item in the totals the bound and the gauge read."""
        self._pending_count += sign
        self._pending_bytes += sign * len(item.body)
        waiting = self._waiting
        for key in item.waits.items():
            n = waiting.get(key, 0) + sign
            if n:
                waiting[key] = n
            else:
                del waiting[key]

    async def close(self) -> None:
        pass
