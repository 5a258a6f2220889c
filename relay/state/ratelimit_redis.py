"""Token buckets in Redis (``relay.state: redis://``), shared by every worker and replica.

One Lua script per ``take``, so a bucket is read and written atomically whichever replica
asks. The script reads Redis's own clock (``TIME``): replicas whose clocks differ still agree.
A bucket is a hash ``{prefix}rl:{keyed hash of the address}`` with its tokens and the time
they were counted; it expires once it would be full again, so idle clients cost nothing.
The semantics are ``relay.state.ratelimit.MemoryBuckets``'s (one test suite runs on both).
"""

from __future__ import annotations

from typing import Any

from relay.state.ratelimit import ClientKeys

# ARGV: tokens a second, burst. Returns the wait in seconds as a string (a Lua number
# would reach the client as an integer).
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(b[1]), tonumber(b[2])
if tokens == nil or at == nil then tokens, at = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 - 0.000001 then tokens = math.max(0, tokens - 1) else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),
           'at', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return string.format('%.6f', wait)
"""


class RedisBuckets:
    """``take`` runs ``_TAKE`` on the state store's Redis connection (its client is shared
    with ``relay.state.redis.RedisState``, which owns and closes it)."""

    def __init__(self, client: Any, per_second: float, burst: int, keys: ClientKeys,
                 prefix: str = "relay:") -> None:
        self.rate = per_second
        self.burst = float(max(burst, 1))
        self.keys = keys
        self.prefix = prefix + "rl:"
        self._take = client.register_script(_TAKE)

    def key(self, client: str) -> str:
        return self.prefix + self.keys.of(client)

    async def take(self, client: str) -> float:
        answer = await self._take(keys=[self.key(client)], args=[self.rate, self.burst])
        return float(answer)
