"""``open_spool(url)``: the spool named by ``relay.spool`` in the rules.

``sqlite:///var/spool.db`` is the relative path ``var/spool.db``;
``sqlite:////srv/relay/spool.db`` is the absolute path ``/srv/relay/spool.db``. The rules'
relative paths resolve under the var directory (``relay.rules.varpath``): ``place_url``
rewrites a URL so, and ``open_spool`` takes the path it is given.
"""

from __future__ import annotations

from relay.spool.base import Spool
from relay.spool.sqlite import SqliteSpool
from relay.sqlite import SQLITE_PREFIX, place_url, sqlite_path

__all__ = ["SQLITE_PREFIX", "open_spool", "place_url", "sqlite_path"]

def open_spool(url: str, max_bytes: int | None = None) -> Spool:
    """The spool for ``url``, not yet started (``await spool.start()``); ``max_bytes``
    (``relay.spool_max_bytes``): new copies are refused while it holds that much."""
    scheme = url.partition(":")[0].lower()
    if scheme == "sqlite":
        return SqliteSpool(sqlite_path(url), max_bytes=max_bytes)
    if scheme in ("redis", "rediss"):
        raise ValueError("redis spool not available yet; use sqlite:///var/spool.db")
    # Only the scheme is shown: the rest of a URL may carry a password.
    raise ValueError(f"unknown spool URL scheme '{scheme}' (expected sqlite:/// or redis://)")
