"""``RedisSpool``: the spool on Redis Streams, shared by every replica (``keys`` has the
layout). A claimed copy is pending to this process's consumer until it is delivered; when
this process dies, another claims it (``XAUTOCLAIM``) once it has been idle for
``claim_after`` seconds (``relay.spool_claim_after``)."""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
from redis.exceptions import RedisError, ResponseError

from relay.errors import SpoolUnavailable
from relay.rules.model import DEFAULT_SPOOL_CLAIM_AFTER, SpoolWait
from relay.spool.base import (
    Claimed,
    DeadLetter,
    Forgotten,
    Quarantined,
    Row,
    SpoolStats,
    iso_utc,
)
from relay.spool.depths import Delta, Depths
from relay.spool.group import GroupCommit
from relay.spool.redis import keys as k
from relay.spool.sqlite.schema import trim

SOCKET_TIMEOUT = 5.0  # seconds a Redis command may take before the spool says it failed
SCAN = 1000  # entries read per command when a whole stream is read (forget, replay)
RELEASED_IDLE_MS = 10**12  # what ``release_leases`` sets: idle long enough for anyone


def split_url(url: str) -> tuple[str, str]:
    """(the URL for redis-py, the key prefix): ``?prefix=`` is the spool's, not redis-py's."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = dict(query).get("prefix") or k.DEFAULT_PREFIX
    rest = urlencode([(key, value) for key, value in query if key != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix


def consumer_name() -> str:
    """This process's consumer: unique, and telling where it runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _failed(exc: BaseException) -> SpoolUnavailable:
    return SpoolUnavailable(f"redis spool: {type(exc).__name__}: {exc}")


class RedisSpool:
    """The ``relay.spool.base.Spool`` on one Redis (``redis://``, ``rediss://``,
    ``unix://``). ``clock`` gives unix seconds for what the relay decides (creation and due
    times; tests pass a fake one); idle times for ``XAUTOCLAIM`` are Redis's own."""

    def __init__(
        self,
        url: str,
        *,
        claim_after: float = DEFAULT_SPOOL_CLAIM_AFTER,
        wait: SpoolWait | None = None,
        prefix: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        import redis.asyncio as aioredis

        client_url, url_prefix = split_url(url)
        self.prefix = prefix if prefix is not None else url_prefix
        self.consumer = consumer_name()
        self.claim_after = claim_after
        self.wait = wait
        self._clock = clock
        self.r = aioredis.from_url(client_url, socket_timeout=SOCKET_TIMEOUT,
                                   socket_connect_timeout=SOCKET_TIMEOUT)
        self._index = self.r.register_script(k.INDEX)
        self._move_due = self.r.register_script(k.MOVE_DUE)
        self._retry = self.r.register_script(k.RETRY)
        self._dead = self.r.register_script(k.DEAD)
        self._replay = self.r.register_script(k.REPLAY)
        self._leave = self.r.register_script(k.LEAVE)
        self._purge_all = self.r.register_script(k.PURGE_ALL)
        self._depths = Depths()
        self._group = GroupCommit(self._insert)
        self._writable = False
        self._closed = False
        self._groups: set[str] = set()  # destinations whose consumer group exists
        self._numbers: dict[str, int] = {}  # destination -> its number in claimed ids
        self._claimed: dict[int, tuple[str, bytes, Claimed]] = {}  # id -> (dest, stream id, row)
        self.commits = 0  # MULTI/EXEC groups committed

    # -- keys -------------------------------------------------------------------------

    def _outbox(self, dest: str) -> str:
        return f"{self.prefix}o:{dest}"

    def _later(self, dest: str) -> str:
        return f"{self.prefix}l:{dest}"

    def _letters(self, dest: str) -> str:
        return f"{self.prefix}x:{dest}"

    # -- lifetime ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and count; raises ``SpoolUnavailable`` when Redis does not answer."""
        try:
            await self.r.ping()
            await self._recount()
        except (RedisError, OSError) as exc:
            raise _failed(exc) from exc
        self._writable = True

    async def close(self) -> None:
        """Leave the consumer groups where this process holds nothing, and disconnect; later
        calls raise ``SpoolUnavailable``."""
        if self._closed:
            return
        self._closed = True
        self._writable = False
        try:
            for dest in sorted(self._groups):
                await self._leave(keys=[self._outbox(dest)], args=[k.GROUP, self.consumer])
        except (RedisError, OSError):
            pass  # another process claims what is left, after claim_after
        await self.r.aclose()

    def writable(self) -> bool:
        return self._writable

    def _check_open(self) -> None:
        if self._closed:
            raise SpoolUnavailable("redis spool: closed")

    # -- counts -----------------------------------------------------------------------

    def depths(self) -> tuple[dict[str, int], dict[str, int]]:
        return self._depths.read()

    async def _destinations(self) -> list[str]:
        return sorted(_text(d) for d in await self.r.smembers(self.prefix + "dests"))

    async def _recount(self) -> None:
        dests = await self._destinations()
        pipe = self.r.pipeline(transaction=False)
        for dest in dests:
            pipe.xlen(self._outbox(dest))
            pipe.zcard(self._later(dest))
            pipe.xlen(self._letters(dest))
            pipe.xrange(self._outbox(dest), count=1)
            pipe.zrange(self._later(dest), 0, 0)
        answers = await pipe.execute()
        spool: dict[str, int] = {}
        dlq: dict[str, int] = {}
        oldest: dict[str, float] = {}
        for i, dest in enumerate(dests):
            waiting, later, dead, first, due_first = answers[i * 5: i * 5 + 5]
            if int(waiting) + int(later):  # as counted rows: destinations with none absent
                spool[dest] = int(waiting) + int(later)
            if int(dead):
                dlq[dest] = int(dead)
            times = [float(k.unpack(fields[k.FIELD])[0]["c"]) for _, fields in first]
            times += [float(k.unpack(blob)[0]["c"]) for blob in due_first]
            if times:
                oldest[dest] = min(times)
        self._depths.replace(spool, dlq, oldest)

    async def stats(self) -> SpoolStats:
        """Counted in Redis, so every replica's copies are in it: outbox plus copies waiting
        for a later attempt, and dead letters. The oldest copy is the outbox's first and the
        next retry's (a close estimate: retries are ordered by when they are due)."""
        self._check_open()
        try:
            await self._recount()
        except (RedisError, OSError) as exc:
            raise _failed(exc) from exc
        return SpoolStats(self._depths.oldest(), None)

    # -- the outbox -------------------------------------------------------------------

    async def put(self, rows: Sequence[Row], quarantined: Sequence[Quarantined] = ()) -> None:
        """Commit ``rows`` and ``quarantined`` in one MULTI/EXEC with every other put of this
        event-loop turn, then (``relay.spool_wait``) ``WAIT`` for Redis replicas."""
        self._check_open()
        await self._group.put(rows, quarantined)

    async def _insert(self, rows: Sequence[Row], quarantined: Sequence[Quarantined]) -> None:
        now = self._clock()
        try:
            entries = [(self._outbox(r.destination),
                        k.pack({"e": r.event_id, "c": now, "a": 0}, r.payload)) for r in rows]
            held = [k.pack({"s": q.source, "v": q.event, "r": q.error, "t": now}, q.payload)
                    for q in quarantined]
        except (TypeError, ValueError) as exc:
            raise SpoolUnavailable(f"redis spool: a row cannot be written: {exc}") from exc
        added = Counter(r.destination for r in rows)
        pipe = self.r.pipeline(transaction=False)
        pipe.execute_command("MULTI")
        for key, blob in entries:
            pipe.execute_command("XADD", key, "*", "m", blob)
        for blob in held:
            pipe.execute_command("XADD", self.prefix + "q", "*", "m", blob)
        if added:
            pipe.execute_command("SADD", self.prefix + "dests", *sorted(added))
        pipe.execute_command("EXEC")
        if self.wait is not None:
            pipe.execute_command("WAIT", self.wait.replicas, int(self.wait.timeout * 1000))
        try:
            answers = await pipe.execute()
        except (RedisError, OSError) as exc:
            self._writable = False
            raise _failed(exc) from exc
        done = answers[-2] if self.wait is not None else answers[-1]
        broken = [a for a in done or () if isinstance(a, Exception)]
        if done is None or broken:
            self._writable = False
            raise SpoolUnavailable(f"redis spool: the write failed: {broken[:1] or 'aborted'}")
        if self.wait is not None and int(answers[-1]) < self.wait.replicas:
            # Written on the primary, but not known to be on enough replicas: not accepted.
            # The client sends it again, so a vendor may get it twice (never not at all).
            self._writable = False
            raise SpoolUnavailable(
                f"redis spool: {answers[-1]} of {self.wait.replicas} Redis replica(s) had the "
                f"write within {self.wait.timeout}s (relay.spool_wait)")
        self.commits += 1
        self._writable = True
        self._depths.apply([Delta(spool=added)])

    async def _ensure_group(self, dest: str) -> None:
        if dest in self._groups:
            return
        try:
            await self.r.xgroup_create(self._outbox(dest), k.GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        await self.r.sadd(self.prefix + "dests", dest)
        self._groups.add(dest)

    async def _number(self, dest: str) -> int:
        number = self._numbers.get(dest)
        if number is None:
            number = int(await self._index(keys=[self.prefix + "di"], args=[dest]))
            if number >= 1 << k.DEST_BITS:
                raise SpoolUnavailable(f"redis spool: more than {1 << k.DEST_BITS} destinations")
            self._numbers[dest] = number
        return number

    async def claim(self, destination: str, limit: int, lease: float) -> list[Claimed]:
        """Copies idle for ``claim_after`` (another process died holding them, or this one
        gave up on them), the retries now due, and new copies, up to ``limit``. ``lease``
        is the SQLite spool's; here a claim lasts ``claim_after``."""
        self._check_open()
        try:
            return await self._claim(destination, limit)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._groups.discard(destination)  # the stream was deleted under us
            return await self._claim(destination, limit)

    async def _claim(self, dest: str, limit: int) -> list[Claimed]:
        await self._ensure_group(dest)
        number = await self._number(dest)
        outbox = self._outbox(dest)
        await self._move_due(keys=[self._later(dest), outbox], args=[self._clock(), limit])
        _, entries, *_ = await self.r.xautoclaim(
            outbox, k.GROUP, self.consumer, int(self.claim_after * 1000), "0-0", count=limit)
        entries = [(sid, fields) for sid, fields in entries if fields]
        if len(entries) < limit:
            fresh: Any = await self.r.xreadgroup(
                k.GROUP, self.consumer, {outbox: ">"}, count=limit - len(entries))
            for _, got in fresh or ():
                entries.extend((sid, fields) for sid, fields in got if fields)
        out: list[Claimed] = []
        for sid, fields in entries:
            header, payload = k.unpack(fields[k.FIELD])
            row = Claimed(k.claimed_id(sid, number), dest, str(header["e"]), payload,
                          float(header["c"]), int(header["a"]))
            self._claimed[row.id] = (dest, sid, row)
            out.append(row)
        return sorted(out, key=lambda c: c.id)

    def _held(self, ids: Iterable[int]) -> dict[str, list[tuple[bytes, Claimed]]]:
        """This process's claimed copies among ``ids``, by destination (forgotten here: each
        id is acted on once)."""
        out: dict[str, list[tuple[bytes, Claimed]]] = defaultdict(list)
        for i in ids:
            held = self._claimed.pop(i, None)
            if held is not None:
                dest, sid, row = held
                out[dest].append((sid, row))
        return out

    async def ack(self, ids: Sequence[int]) -> None:
        self._check_open()
        held = self._held(ids)
        if not held:
            return
        pipe = self.r.pipeline(transaction=True)
        for dest, items in held.items():
            sids = [sid for sid, _ in items]
            pipe.xack(self._outbox(dest), k.GROUP, *sids)
            pipe.xdel(self._outbox(dest), *sids)
        answers = await pipe.execute()
        gone = Counter({dest: -int(answers[i * 2 + 1]) for i, dest in enumerate(held)})
        self._depths.apply([Delta(spool=gone)])

    async def retry(self, ids: Sequence[int], next_at: float, error: str) -> None:
        """Out of the outbox and into ``l:``, due at ``next_at``, one attempt more."""
        self._check_open()
        reason = trim(error)
        for dest, items in self._held(ids).items():
            args: list[Any] = [k.GROUP, next_at]
            for sid, row in items:
                args += [sid, k.pack({"e": row.event_id, "c": row.created_at,
                                      "a": row.attempts + 1, "err": reason, "was": _text(sid)},
                                     row.payload)]
            await self._retry(keys=[self._outbox(dest), self._later(dest)], args=args)

    async def dead(
        self, rows: Sequence[Claimed], status: int | None, response: str, attempts: int
    ) -> None:
        self._check_open()
        answer = trim(response)
        now = self._clock()
        delta = Delta()
        for dest, items in self._held(r.id for r in rows).items():
            args: list[Any] = [k.GROUP]
            for sid, row in items:
                args += [sid, k.pack({"e": row.event_id, "c": row.created_at, "f": now,
                                      "a": attempts, "s": status, "r": answer}, row.payload)]
            moved = int(await self._dead(
                keys=[self._outbox(dest), self._letters(dest), self.prefix + "xn"], args=args))
            delta.spool[dest] -= moved
            delta.dlq[dest] += moved
        self._depths.apply([delta])

    async def release_leases(self) -> int:
        """Make what this process holds claimable at once, by any process (it is otherwise
        claimed after ``claim_after``)."""
        self._check_open()
        released = 0
        for dest in await self._destinations():
            outbox = self._outbox(dest)
            try:
                held = await self.r.xpending_range(outbox, k.GROUP, "-", "+", 10_000,
                                                   consumername=self.consumer)
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    continue
                raise
            sids: list[Any] = [h["message_id"] for h in held]
            if sids:
                await self.r.xclaim(outbox, k.GROUP, self.consumer, 0, sids,
                                    idle=RELEASED_IDLE_MS, justid=True)
                released += len(sids)
        self._claimed.clear()
        return released

    async def next_due(self, destination: str) -> float | None:
        """Now when the outbox has copies no process holds (new ones, or idle past
        ``claim_after``), else when the next retry is due (None: nothing waiting)."""
        self._check_open()
        await self._ensure_group(destination)
        outbox = self._outbox(destination)
        pipe = self.r.pipeline(transaction=False)
        pipe.xlen(outbox)
        pipe.xpending(outbox, k.GROUP)
        pipe.xpending_range(outbox, k.GROUP, "-", "+", 1, idle=int(self.claim_after * 1000))
        pipe.zrange(self._later(destination), 0, 0, withscores=True)
        length, pending, idle, later = await pipe.execute()
        if int(length) > int(pending["pending"]) or idle:
            return self._clock()
        return float(later[0][1]) if later else None

    # -- dead letters and quarantine --------------------------------------------------

    async def _scan(self, key: str, limit: int | None = None) -> list[tuple[bytes, bytes]]:
        """A stream's entries (up to ``limit``), oldest first: (id, the ``m`` field)."""
        out: list[tuple[bytes, bytes]] = []
        start = "-"
        while limit is None or len(out) < limit:
            count = SCAN if limit is None else min(SCAN, limit - len(out))
            got: Any = await self.r.xrange(key, start, "+", count=count)
            out.extend((sid, fields[k.FIELD]) for sid, fields in got if k.FIELD in fields)
            if len(got) < count:
                break
            start = "(" + _text(got[-1][0])
        return out

    def _letter(self, dest: str, sid: bytes, blob: bytes) -> DeadLetter:
        header, payload = k.unpack(blob)
        status = header.get("s")
        return DeadLetter(k.stream_number(sid)[1], dest, str(header["e"]), payload,
                          float(header["c"]), float(header["f"]), int(header["a"]),
                          None if status is None else int(status), str(header.get("r", "")))

    async def _which(self, destination: str | None) -> list[str]:
        return [destination] if destination is not None else await self._destinations()

    async def dlq_list(self, destination: str | None = None, limit: int = 100) -> list[DeadLetter]:
        self._check_open()
        letters = [self._letter(dest, sid, blob)
                   for dest in await self._which(destination)
                   for sid, blob in await self._scan(self._letters(dest), limit)]
        return sorted(letters, key=lambda d: d.id)[:limit]

    async def dlq_count(self, destination: str | None = None) -> tuple[int, int]:
        self._check_open()
        count, last = 0, 0
        for dest in await self._which(destination):
            count += int(await self.r.xlen(self._letters(dest)))
            newest: Any = await self.r.xrevrange(self._letters(dest), count=1)
            if newest:
                last = max(last, k.stream_number(newest[0][0])[1])
        return count, last

    async def dlq_replay(self, destination: str | None = None) -> int:
        """Dead letters back to the outbox, due now, with no attempts and a fresh
        ``created_at`` (so ``max_age`` counts from the replay)."""
        self._check_open()
        now = self._clock()
        total = 0
        for dest in await self._which(destination):
            args: list[Any] = []
            for sid, blob in await self._scan(self._letters(dest)):
                header, payload = k.unpack(blob)
                args += [sid, k.pack({"e": header["e"], "c": now, "a": 0}, payload)]
            if not args:
                continue
            moved = int(await self._replay(keys=[self._letters(dest), self._outbox(dest)],
                                           args=args))
            self._depths.apply([Delta(spool=Counter({dest: moved}),
                                      dlq=Counter({dest: -moved}))])
            total += moved
        return total

    async def dlq_purge(self, destination: str | None = None, through: int | None = None) -> int:
        """Delete dead letters; with ``through``, only those up to that id (what the user
        confirmed, not what failed since)."""
        self._check_open()
        total = 0
        for dest in await self._which(destination):
            key = self._letters(dest)
            if through is None:
                gone = int(await self._purge_all(keys=[key]))
            else:
                gone = int(await self.r.xtrim(key, minid=f"0-{through + 1}", approximate=False))
            self._depths.apply([Delta(dlq=Counter({dest: -gone}))])
            total += gone
        return total

    async def quarantine_list(self, limit: int = 100) -> list[dict[str, Any]]:
        self._check_open()
        out: list[dict[str, Any]] = []
        for sid, blob in await self._scan(self.prefix + "q", limit):
            header, payload = k.unpack(blob)
            ms, seq = k.stream_number(sid)
            out.append({
                "id": ms * 1000 + min(seq, 999),  # time-ordered, and a safe JSON number
                "source": header["s"],
                "event": header["v"],
                "error": header["r"],
                "payload": payload.decode(errors="replace"),
                "received_at": float(header["t"]),
                "received_at_iso": iso_utc(float(header["t"])),
            })
        return out

    # -- forgetting a person ----------------------------------------------------------

    async def forget(self, event_ids: Sequence[str]) -> Forgotten:
        """Delete every copy of ``event_ids``: in the outbox (held by a process or not),
        waiting for a retry, dead-lettered, quarantined. The deletions are one MULTI/EXEC;
        a copy a worker is sending right now goes too (its ``ack`` then finds nothing)."""
        self._check_open()
        wanted = set(event_ids)
        if not wanted:
            return Forgotten()

        def named(blob: bytes) -> bool:
            return str(k.unpack(blob)[0].get("e")) in wanted

        pipe = self.r.pipeline(transaction=True)
        counted: list[tuple[str, str]] = []  # (what, destination) per command
        for dest in await self._destinations():
            outbox = [sid for sid, blob in await self._scan(self._outbox(dest)) if named(blob)]
            if outbox:
                pipe.xack(self._outbox(dest), k.GROUP, *outbox)
                pipe.xdel(self._outbox(dest), *outbox)
                counted += [("ack", dest), ("spool", dest)]
            members: Any = await self.r.zrange(self._later(dest), 0, -1)
            later = [m for m in members if named(m)]
            if later:
                pipe.zrem(self._later(dest), *later)
                counted.append(("spool", dest))
            dead = [sid for sid, blob in await self._scan(self._letters(dest)) if named(blob)]
            if dead:
                pipe.xdel(self._letters(dest), *dead)
                counted.append(("dlq", dest))
        held = [sid for sid, blob in await self._scan(self.prefix + "q")
                if _quarantined_event(k.unpack(blob)[1]) in wanted]
        if held:
            pipe.xdel(self.prefix + "q", *held)
            counted.append(("quarantined", ""))
        if not counted:
            return Forgotten()
        answers = await pipe.execute()
        delta = Delta()
        quarantined = 0
        for (what, dest), n in zip(counted, answers, strict=True):
            if what == "spool":
                delta.spool[dest] -= int(n)
            elif what == "dlq":
                delta.dlq[dest] -= int(n)
            elif what == "quarantined":
                quarantined = int(n)
        self._depths.apply([delta])
        return Forgotten(-sum(delta.spool.values()), -sum(delta.dlq.values()), quarantined)


def _quarantined_event(payload: bytes) -> str | None:
    """The event id a quarantined (masked) copy keeps, if it is JSON with one."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    value = body.get("event_id") if isinstance(body, dict) else None
    return value if isinstance(value, str) else None

