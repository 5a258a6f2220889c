"""What a relay's spool holds, read as a test reads it: the SQLite file under its ``--var``,
or the Redis spool its ``RELAY_SPOOL`` names (streams and the retry set, ``relay.spool.redis``)."""

from __future__ import annotations

import sqlite3
from typing import Any

import redis

from relay.spool.redis.keys import FIELD, unpack
from relay.spool.redis.spool import split_url

from .relayproc import RelayProcess


def _redis(relay: RelayProcess) -> tuple[redis.Redis, str] | None:
    url = relay.env.get("RELAY_SPOOL", "")
    if not url.startswith("redis"):
        return None
    client_url, prefix = split_url(url)
    return redis.Redis.from_url(client_url), prefix


def _stream_ids(r: redis.Redis, key: str) -> list[str]:
    entries: Any = r.xrange(key)
    return [str(unpack(fields[FIELD])[0]["e"]) for _, fields in entries]


def outbox(relay: RelayProcess, destination: str) -> list[str]:
    """The event ids of the copies waiting for ``destination``."""
    found = _redis(relay)
    if found is None:
        with sqlite3.connect(f"file:{relay.spool_path}?mode=ro", uri=True) as conn:
            return [e for (e,) in conn.execute(
                "SELECT event_id FROM outbox WHERE destination = ?", (destination,))]
    r, prefix = found
    # One MULTI: a copy moves between the stream and the retry set (each move atomic on the
    # relay's side), and two separate reads could both miss the one moving between them.
    with r.pipeline(transaction=True) as both:
        both.xrange(f"{prefix}o:{destination}")
        both.zrange(f"{prefix}l:{destination}", 0, -1)
        entries, later = both.execute()
    r.close()
    return ([str(unpack(fields[FIELD])[0]["e"]) for _, fields in entries]
            + [str(unpack(m)[0]["e"]) for m in later])


def dead(relay: RelayProcess) -> list[str]:
    """The event ids of every dead letter."""
    found = _redis(relay)
    if found is None:
        with sqlite3.connect(f"file:{relay.spool_path}?mode=ro", uri=True) as conn:
            return [e for (e,) in conn.execute("SELECT event_id FROM dead")]
    r, prefix = found
    keys: Any = r.keys(f"{prefix}x:*")
    ids = [e for key in keys for e in _stream_ids(r, key.decode())]
    r.close()
    return ids
