"""The Redis spool's keys, entries and scripts.

Keys (under the prefix, ``relay:spool:`` by default; ``?prefix=`` in the URL changes it):

- ``o:{destination}``: the outbox, a stream; consumer group ``relay``, one consumer per
  relay process. An entry is pending (claimed) until it is delivered (``XACK`` + ``XDEL``),
  moved to ``l:`` for a later attempt, or dead-lettered;
- ``l:{destination}``: copies waiting for a later attempt, a sorted set scored by when they
  are due; ``claim`` moves the due ones back into the outbox (a script, so one process
  moves each);
- ``x:{destination}``: dead letters, a stream whose ids are ``0-N`` with ``N`` from the
  counter ``xn`` (so dead-letter ids grow across destinations, for ``purge --through``);
- ``q``: quarantined events, a stream;
- ``dests``: the destinations that ever had a copy; ``di``: destination -> a small number,
  part of each claimed copy's id.

Every entry is one field, ``m``: a JSON header, a newline, then the payload as spooled.
"""

from __future__ import annotations

from typing import Any

import orjson

GROUP = "relay"
FIELD = b"m"
DEFAULT_PREFIX = "relay:spool:"

SEQ_BITS = 22  # entries one stream takes in one millisecond, at most (ids stay unique)
DEST_BITS = 16  # destinations, at most


def pack(header: dict[str, Any], payload: bytes) -> bytes:
    return orjson.dumps(header) + b"\n" + payload


def unpack(blob: bytes) -> tuple[dict[str, Any], bytes]:
    head, _, payload = blob.partition(b"\n")
    header: dict[str, Any] = orjson.loads(head)
    return header, payload


def stream_number(sid: bytes | str) -> tuple[int, int]:
    ms, _, seq = (sid.decode() if isinstance(sid, bytes) else sid).partition("-")
    return int(ms), int(seq or 0)


def claimed_id(sid: bytes | str, dest_index: int) -> int:
    """A claimed copy's id: its stream id (time, sequence) and its destination's number,
    the same in every process (so a copy claimed again keeps its id)."""
    ms, seq = stream_number(sid)
    return (((ms << SEQ_BITS) | (seq & ((1 << SEQ_BITS) - 1))) << DEST_BITS) | dest_index


# Numbers a destination once, for every process alike.
INDEX = """
local i = redis.call('HGET', KEYS[1], ARGV[1])
if i then return tonumber(i) end
i = redis.call('HLEN', KEYS[1]) + 1
redis.call('HSET', KEYS[1], ARGV[1], i)
return i
"""

# KEYS: later zset, outbox. ARGV: now, limit. The due copies go back to the outbox.
MOVE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, m in ipairs(due) do
  redis.call('ZREM', KEYS[1], m)
  redis.call('XADD', KEYS[2], '*', 'm', m)
end
return #due
"""

# KEYS: outbox, later zset. ARGV: group, due time, then (stream id, new entry) pairs. Only
# copies still in the outbox move (``forget`` or another process may have taken one).
RETRY = """
local moved = 0
for i = 3, #ARGV, 2 do
  if redis.call('XDEL', KEYS[1], ARGV[i]) == 1 then
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
    redis.call('ZADD', KEYS[2], ARGV[2], ARGV[i + 1])
    moved = moved + 1
  end
end
return moved
"""

# KEYS: outbox, dead letters, their counter. ARGV: group, then (stream id, dead letter) pairs.
DEAD = """
local moved = 0
for i = 2, #ARGV, 2 do
  if redis.call('XDEL', KEYS[1], ARGV[i]) == 1 then
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
    local n = redis.call('INCR', KEYS[3])
    redis.call('XADD', KEYS[2], '0-' .. n, 'm', ARGV[i + 1])
    moved = moved + 1
  end
end
return moved
"""

# KEYS: dead letters, outbox. ARGV: (dead-letter id, outbox entry) pairs.
REPLAY = """
local moved = 0
for i = 1, #ARGV, 2 do
  if redis.call('XDEL', KEYS[1], ARGV[i]) == 1 then
    redis.call('XADD', KEYS[2], '*', 'm', ARGV[i + 1])
    moved = moved + 1
  end
end
return moved
"""

# KEYS: outbox. ARGV: group, consumer. A consumer that holds nothing is removed (one that
# holds copies stays, so others can claim them after relay.spool_claim_after).
LEAVE = """
local held = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #held == 0 then redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) end
return #held
"""

# KEYS: dead letters. The count and the deletion in one step.
PURGE_ALL = """
local n = redis.call('XLEN', KEYS[1])
redis.call('DEL', KEYS[1])
return n
"""
