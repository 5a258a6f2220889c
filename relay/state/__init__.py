"""Shared state: dedup marks, held browser copies, events waiting for consent, consent
memory.

``memory`` (the default) keeps them in this process, bounded; ``redis://`` shares them
between workers and replicas. Held copies keep only the fields the contract will merge
(``enrich_from_browser``), never the whole browser event; an event waiting for consent is
kept once, as compact JSON (sealed in Redis), however many destinations wait for it.
"""

from __future__ import annotations

from relay.state.base import Held, Mark, Pending, State, WaitKey
from relay.state.memory import MemoryState
from relay.state.redis import RedisState
from relay.state.seal import Sealer

__all__ = ["Held", "Mark", "MemoryState", "Pending", "RedisState", "State", "WaitKey", "open_state"]


def open_state(url: str, max_keys: int, ttl: float, sealer: Sealer) -> State:
    if url == "memory":
        return MemoryState(max_keys, ttl)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisState(url, sealer)
    raise ValueError(
        f"relay.state: unknown state store '{url}' (use memory or redis://host:6379/0)"
    )
