"""State in Redis (``state: redis://...``), shared by every worker and replica. Held and
waiting copies are sealed (``relay.state.seal``): Redis never holds them in the clear."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson

from relay.state.base import Held, Pending
from relay.state.seal import Sealer


class RedisState:
    """Dedup marks as ``SET NX PX`` keys; held copies as a value, aliases and a deadline zset."""

    def __init__(self, url: str, sealer: Sealer, prefix: str = "relay:") -> None:
        import redis.asyncio as aioredis

        self.r = aioredis.from_url(url)
        self.p = prefix
        self.sealer = sealer  # held and waiting copies are sealed: never at rest in the clear

    async def seen(self, keys: Sequence[str], ttl: float) -> list[bool]:
        if not keys:
            return []
        pipe = self.r.pipeline(transaction=False)
        for key in keys:
            pipe.set(self.p + "d:" + key, b"1", nx=True, px=int(ttl * 1000))
        results = await pipe.execute()
        return [not ok for ok in results]

    async def contains(self, key: str) -> bool:
        return bool(await self.r.exists(self.p + "d:" + key))

    async def forget(self, keys: Sequence[str]) -> None:
        if keys:
            await self.r.delete(*(self.p + "d:" + k for k in keys))

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

    async def pend(self, cid: str, item: Pending, ttl: float) -> bool:
        deadline = time.time() + ttl
        body = self.sealer.seal(orjson.dumps({"deadline": deadline, "item": item}))
        pipe = self.r.pipeline(transaction=True)
        pipe.rpush(self.p + "p:" + cid, body)
        pipe.pexpire(self.p + "p:" + cid, int((ttl + 60) * 1000))
        # scored by the earliest deadline, so the sweep finds a browser's first copy on time
        pipe.zadd(self.p + "pz", {cid: deadline}, lt=True)
        await pipe.execute()
        return True

    async def _take_pending(self, cid: str) -> list[tuple[float, Pending]]:
        pipe = self.r.pipeline(transaction=True)
        pipe.lrange(self.p + "p:" + cid, 0, -1)
        pipe.delete(self.p + "p:" + cid)
        pipe.zrem(self.p + "pz", cid)
        bodies, _, _ = await pipe.execute()
        out = []
        for body in bodies:
            data = orjson.loads(self.sealer.open(body))
            out.append((float(data["deadline"]), data["item"]))
        return out

    async def release(self, cid: str) -> list[Pending]:
        now = time.time()
        return [item for deadline, item in await self._take_pending(cid) if deadline > now]

    async def expired_pending(self) -> list[Pending]:
        now = time.time()
        out: list[Pending] = []
        for raw in await self.r.zrangebyscore(self.p + "pz", 0, now):
            cid = _text(raw)
            items = await self._take_pending(cid)
            live = [(d, i) for d, i in items if d > now]
            out.extend(i for d, i in items if d <= now)
            for deadline, item in live:  # put back what is still inside its window
                await self.pend(cid, item, deadline - now)
        return out

    async def close(self) -> None:
        await self.r.aclose()


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
