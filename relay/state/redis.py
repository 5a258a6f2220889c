"""State in Redis (``state: redis://...``), shared by every worker and replica. Held and
waiting copies are sealed (``relay.state.seal``): Redis never holds them in the clear.

Keys (under the prefix, ``relay:`` by default):

- ``d:{key}``: dedup marks: ``t:{token}`` while tentative (a request's, for seconds, set
  only where no mark is), ``1`` once confirmed (for the dedup window);
- ``h:{id}``, ``ha:{alias}``, ``hz``: held browser copies, their aliases, their deadlines;
- ``c:{cid}``: a browser's remembered consent;
- ``p:{cid}``: a list of the browser's waiting events, each sealed with its header (a random
  id, event id and name, destination -> purpose, deadline); ``pz``: cid -> its earliest
  deadline, for the sweep;
- ``pn:{destination}|{purpose}``: a sorted set of the ids waiting for that pair (scored by
  deadline), changed in the same transaction as the list, so ``ZCARD`` is the number of
  copies waiting across every replica (``relay_consent_pending``); ``pk``: those pairs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from redis.exceptions import WatchError

from relay.observe.log import LOG
from relay.state.base import Held, Mark, Pending, WaitKey
from relay.state.seal import Sealer, SealError

# A browser's waiting list outlives its last deadline by this much, so the sweep finds it
# even when it runs late; after that Redis drops it by itself (no relay running).
PENDING_SLACK = 60.0
# PEXPIRE that never shortens: a later event may have a shorter window than an earlier one.
_EXTEND = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return ttl
"""
# Per key: 0 new (marked now for ARGV[1], for ARGV[2] ms), 1 ours, 2 busy, 3 seen.
_MARK = """
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if not v then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    out[i] = 0
  elseif v == ARGV[1] then
    out[i] = 1
  elseif string.sub(v, 1, 2) == 't:' then
    out[i] = 2
  else
    out[i] = 3
  end
end
return out
"""
# The tentative marks ARGV[1] still holds: extended to ARGV[2] ms (keep) or deleted (unmark).
_KEEP = """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('PEXPIRE', key, ARGV[2]) end
end
"""
_UNMARK = """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
"""
_MARKS: tuple[Mark, ...] = ("new", "ours", "busy", "seen")


class RedisState:
    """Dedup marks as keys set by a script only where none is; held copies as a value,
    aliases and a deadline zset."""

    def __init__(self, url: str, sealer: Sealer, prefix: str = "relay:") -> None:
        import redis.asyncio as aioredis

        self.r = aioredis.from_url(url)
        self.p = prefix
        self.sealer = sealer  # held and waiting copies are sealed: never at rest in the clear
        self._extend = self.r.register_script(_EXTEND)
        self._mark = self.r.register_script(_MARK)
        self._keep = self.r.register_script(_KEEP)
        self._unmark = self.r.register_script(_UNMARK)

    def _marks(self, keys: Sequence[str]) -> list[str]:
        return [self.p + "d:" + key for key in keys]

    async def mark(self, keys: Sequence[str], token: str, ttl: float) -> list[Mark]:
        if not keys:
            return []
        found = await self._mark(keys=self._marks(keys), args=["t:" + token, _ms(ttl)])
        return [_MARKS[int(n)] for n in found]

    async def keep(self, keys: Sequence[str], token: str, ttl: float) -> None:
        if keys:
            await self._keep(keys=self._marks(keys), args=["t:" + token, _ms(ttl)])

    async def confirm(self, keys: Sequence[str], ttl: float) -> None:
        if not keys:
            return
        pipe = self.r.pipeline(transaction=False)
        for key in self._marks(keys):
            pipe.set(key, b"1", px=_ms(ttl))
        await pipe.execute()

    async def unmark(self, keys: Sequence[str], token: str) -> None:
        if keys:
            await self._unmark(keys=self._marks(keys), args=["t:" + token])

    async def contains(self, key: str) -> bool:
        value = await self.r.get(self.p + "d:" + key)
        return value is not None and not _bytes(value).startswith(b"t:")

    async def hold(self, aliases: Sequence[str], held: Held, ttl: float) -> None:
        hid = aliases[0]
        body = self.sealer.seal(orjson.dumps({"held": held, "aliases": list(aliases)}))
        pipe = self.r.pipeline(transaction=True)
        # The value outlives its deadline by a minute so the sweeper can still count it.
        pipe.set(self.p + "h:" + hid, body, px=int((ttl + 60) * 1000))
        for alias in aliases:
            pipe.set(self.p + "ha:" + alias, hid, px=int((ttl + 60) * 1000))
        pipe.zadd(self.p + "hz", {hid: time.time() + ttl})
        await pipe.execute()

    async def _pop(self, hid: str) -> Held | None:
        if not await self.r.zrem(self.p + "hz", hid):
            return None  # someone else took or expired it
        body = await self.r.getdel(self.p + "h:" + hid)
        if body is None:
            return None
        data = orjson.loads(self.sealer.open(_bytes(body)))
        await self.r.delete(*(self.p + "ha:" + a for a in data["aliases"]))
        held: Held = data["held"]
        return held

    async def peek(self, aliases: Sequence[str]) -> Held | None:
        for alias in aliases:
            hid = await self.r.get(self.p + "ha:" + alias)
            if hid is None:
                continue
            body = await self.r.get(self.p + "h:" + _text(hid))
            if body is not None:
                held: Held = orjson.loads(self.sealer.open(_bytes(body)))["held"]
                return held
        return None

    async def take(self, aliases: Sequence[str]) -> Held | None:
        for alias in aliases:
            hid = await self.r.get(self.p + "ha:" + alias)
            if hid is not None:
                held = await self._pop(_text(hid))
                if held is not None:
                    return held
        return None

    async def expired(self) -> list[Held]:
        due = await self.r.zrangebyscore(self.p + "hz", 0, time.time())
        out = []
        for hid in due:
            held = await self._pop(_text(hid))
            if held is not None:
                out.append(held)
        return out

    async def remember_consent(self, cid: str, consent: dict[str, str], ttl: float) -> None:
        await self.r.set(self.p + "c:" + cid, orjson.dumps(consent), px=int(ttl * 1000))

    async def consent_for(self, cid: str) -> dict[str, str] | None:
        body = await self.r.get(self.p + "c:" + cid)
        if body is None:
            return None
        consent: dict[str, str] = orjson.loads(body)
        return consent

    def _wait_key(self, pair: str) -> str:
        return self.p + "pn:" + pair

    def _sealed(self, item: Pending, deadline: float) -> tuple[str, bytes]:
        """A new id for a waiting event, and the event sealed with its header."""
        pid = os.urandom(8).hex()
        head = {
            "id": pid,
            "event_id": item.event_id,
            "event": item.event,
            "waits": dict(item.waits),
            "until": item.until,
            "deadline": deadline,
        }
        return pid, self.sealer.seal(orjson.dumps(head) + b"\n" + item.body)

    def _count_waiting(self, pipe: Any, pid: str, item: Pending, deadline: float) -> None:
        for dest, purpose in item.waits.items():
            pair = f"{dest}|{purpose}"
            pipe.zadd(self._wait_key(pair), {pid: deadline})
            pipe.sadd(self.p + "pk", pair)

    async def pend(self, item: Pending, ttl: float) -> bool:
        deadline = time.time() + ttl
        pid, body = self._sealed(item, deadline)
        key = self.p + "p:" + item.cid
        pipe = self.r.pipeline(transaction=True)
        pipe.rpush(key, body)
        await self._extend(keys=[key], args=[int((ttl + PENDING_SLACK) * 1000)], client=pipe)
        # scored by the earliest deadline, so the sweep finds a browser's first copy on time
        pipe.zadd(self.p + "pz", {item.cid: deadline}, lt=True)
        self._count_waiting(pipe, pid, item, deadline)
        await pipe.execute()
        return True

    async def waiting(self, cid: str) -> list[Pending]:
        out = []
        for blob in await self.r.lrange(self.p + "p:" + cid, 0, -1):
            opened = self._open(cid, blob)
            if opened is not None:
                out.append(opened[1])
        return out

    async def settle(self, cid: str, released: Mapping[str, Pending | None]) -> None:
        if released:
            await self._take(cid, lambda head: head["event_id"] not in released,
                             only_taken=True, rest=released)

    def _open(self, cid: str, blob: Any) -> tuple[dict[str, Any], Pending] | None:
        try:
            head_bytes, body = self.sealer.open(_bytes(blob)).split(b"\n", 1)
            head = orjson.loads(head_bytes)
            waits = {str(d): str(p) for d, p in head["waits"].items()}
            item = Pending(cid, head["event_id"], head["event"], waits, body, float(head["until"]))
        except (SealError, ValueError, KeyError, TypeError, AttributeError):
            LOG.warning(
                "state: a copy waiting for consent could not be opened (sealed under a secret "
                "no longer listed, or written by an older release); dropped"
            )
            return None
        return head, item

    async def _take(
        self, cid: str, keep: Callable[[dict[str, Any]], bool], *, only_taken: bool = False,
        rest: Mapping[str, Pending | None] | None = None,
    ) -> list[Pending]:
        """Take this browser's waiting events that ``keep`` does not keep, in one
        transaction with their ids' removal from the gauge's sets (retried when another
        process changed the list meanwhile); the kept ones stay, unchanged. With
        ``only_taken`` a copy that cannot be opened stays too, and a list with nothing
        to take is left as it is. ``rest`` maps the event id of a taken event to what of
        it waits on (its deadline unchanged), put in its place in the same transaction."""
        key = self.p + "p:" + cid
        async with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    blobs = await pipe.lrange(key, 0, -1)
                    ttl_ms = await pipe.pttl(key)
                    taken: list[Pending] = []
                    kept: list[tuple[Any, float | None]] = []
                    gone: list[tuple[str, str]] = []  # (pair, id)
                    again: list[tuple[str, Pending, float]] = []  # (id, what waits on, deadline)
                    for blob in blobs:
                        opened = self._open(cid, blob)
                        if opened is None:
                            if only_taken:
                                kept.append((blob, None))
                            continue
                        head, item = opened
                        if keep(head):
                            kept.append((blob, float(head["deadline"])))
                            continue
                        taken.append(item)
                        gone.extend((f"{d}|{p}", head["id"]) for d, p in item.waits.items())
                        left = (rest or {}).get(item.event_id)
                        if left is not None and all(i is not left for _, i, _ in again):
                            deadline = float(head["deadline"])
                            pid, sealed = self._sealed(left, deadline)
                            kept.append((sealed, deadline))
                            again.append((pid, left, deadline))
                    if only_taken and not taken:
                        return []  # the pipeline's reset on leaving unwatches the key
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.delete(key)
                    if kept:
                        pipe.rpush(key, *(blob for blob, _ in kept))
                        if ttl_ms > 0:
                            pipe.pexpire(key, ttl_ms)
                        deadlines = [d for _, d in kept if d is not None]
                        if deadlines:
                            pipe.zadd(self.p + "pz", {cid: min(deadlines)})
                    else:
                        pipe.zrem(self.p + "pz", cid)
                    for pair, pid in gone:
                        pipe.zrem(self._wait_key(pair), pid)
                    for pid, left, deadline in again:
                        self._count_waiting(pipe, pid, left, deadline)
                    await pipe.execute()
                    return taken
                except WatchError:
                    continue

    async def release(self, cid: str) -> list[Pending]:
        return await self._take(cid, lambda head: False)

    async def expired_pending(self) -> list[Pending]:
        now = time.time()
        out: list[Pending] = []
        for raw in await self.r.zrangebyscore(self.p + "pz", 0, now):
            out.extend(await self._take(_text(raw), lambda head: float(head["deadline"]) > now))
        # Ids whose list Redis dropped by itself (no relay swept it in time) or that could
        # not be opened: long past their deadline, so no longer counted as waiting.
        pairs = await self.r.smembers(self.p + "pk")
        if pairs:
            pipe = self.r.pipeline(transaction=False)
            for pair in pairs:
                pipe.zremrangebyscore(self._wait_key(_text(pair)), 0, now - PENDING_SLACK)
            await pipe.execute()
        return out

    async def forget_events(self, event_ids: Sequence[str]) -> tuple[int, int]:
        """Held copies by their first alias (``eid:<event id>``); waiting events by opening
        every browser's list (their event ids are sealed), taking only the matching ones."""
        ids = set(event_ids)
        if not ids:
            return 0, 0
        held = 0
        for eid in sorted(ids):
            if await self._pop("eid:" + eid) is not None:
                held += 1
        pending = 0
        for raw in await self.r.zrange(self.p + "pz", 0, -1):
            taken = await self._take(_text(raw), lambda head: head["event_id"] not in ids,
                                     only_taken=True)
            pending += len(taken)
        return held, pending

    async def pending_counts(self) -> dict[WaitKey, int]:
        pairs = [_text(p) for p in await self.r.smembers(self.p + "pk")]
        if not pairs:
            return {}
        pipe = self.r.pipeline(transaction=False)
        for pair in pairs:
            pipe.zcard(self._wait_key(pair))
        counts = await pipe.execute()
        out: dict[WaitKey, int] = {}
        for pair, n in zip(pairs, counts, strict=True):
            dest, _, purpose = pair.partition("|")
            if n:
                out[(dest, purpose)] = int(n)
        return out

    async def close(self) -> None:
        await self.r.aclose()


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
