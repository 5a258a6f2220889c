"""``open_spool(url)``: the spool named by ``relay.spool`` in the rules.

``sqlite:///var/spool.db`` is the relative path ``var/spool.db``;
``sqlite:////srv/relay/spool.db`` is the absolute path ``/srv/relay/spool.db``. The rules'
relative paths resolve under the var directory (``relay.rules.varpath``): ``place_url``
rewrites a URL so, and ``open_spool`` takes the path it is given.

``redis://host:6379/0`` (``rediss://`` with TLS, ``unix:///path/redis.sock``) is the Redis
Streams spool, shared by replicas; ``?prefix=relay:spool:`` names its keys' prefix.
``spool_for(rules.relay)`` passes the rules' ``spool_claim_after`` and ``spool_wait`` too.
"""

from __future__ import annotations

from relay.rules.model import DEFAULT_SPOOL_CLAIM_AFTER, RelaySettings, SpoolWait
from relay.spool.base import Spool
from relay.spool.redis import RedisSpool
from relay.spool.sqlite import SqliteSpool
from relay.sqlite import SQLITE_PREFIX, place_url, sqlite_path

__all__ = ["SQLITE_PREFIX", "open_spool", "place_url", "spool_for", "sqlite_path"]


def open_spool(
    url: str,
    *,
    claim_after: float = DEFAULT_SPOOL_CLAIM_AFTER,
    wait: SpoolWait | None = None,
    max_bytes: int | None = None,
) -> Spool:
    """The spool for ``url``, not yet started (``await spool.start()``). ``claim_after`` and
    ``wait`` apply to a Redis spool only; ``max_bytes`` (``relay.spool_max_bytes``) to a
    SQLite spool only: new copies are refused while it holds that much."""
    scheme = url.partition(":")[0].lower()
    if scheme == "sqlite":
        return SqliteSpool(sqlite_path(url), max_bytes=max_bytes)
    if scheme in ("redis", "rediss", "unix"):
        return RedisSpool(url, claim_after=claim_after, wait=wait)
    # Only the scheme is shown: the rest of a URL may carry a password.
    raise ValueError(
        f"unknown spool URL scheme '{scheme}' (expected sqlite:///, redis:// or unix://)")


def spool_for(relay: RelaySettings) -> Spool:
    """The spool the ``relay:`` section names, with its settings."""
    return open_spool(relay.spool, claim_after=relay.spool_claim_after, wait=relay.spool_wait,
                      max_bytes=relay.spool_max_bytes)
