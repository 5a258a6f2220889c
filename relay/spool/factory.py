"""``open_spool(url)``: the spool named by ``relay.spool`` in the rules.

``sqlite:///var/spool.db`` is the relative path ``var/spool.db``;
``sqlite:////srv/relay/spool.db`` is the absolute path ``/srv/relay/spool.db``. The rules'
relative paths resolve under the var directory (``relay.rules.varpath``): ``place_url``
rewrites a URL so, and ``open_spool`` takes the path it is given.
"""

from __future__ import annotations

from collections.abc import Callable

from relay.spool.base import Spool
from relay.spool.sqlite import SqliteSpool

SQLITE_PREFIX = "sqlite:///"


def sqlite_path(url: str) -> str:
    """The file path in a ``sqlite:///`` URL; ValueError when there is none."""
    if not url.startswith(SQLITE_PREFIX):
        raise ValueError(
            "a sqlite spool URL starts with sqlite:/// (sqlite:///var/spool.db is relative,"
            " sqlite:////abs/spool.db absolute)")
    path = url[len(SQLITE_PREFIX):]
    if not path or path.endswith("/"):
        raise ValueError("the sqlite spool URL names no file (like sqlite:///var/spool.db)")
    return path


def place_url(url: str, resolve: Callable[[str], str]) -> str:
    """``url`` with its file path passed through ``resolve`` (sqlite URLs; others as they are).

    >>> place_url("sqlite:///var/spool.db", lambda p: "/srv/relay/spool.db")
    'sqlite:////srv/relay/spool.db'
    """
    try:
        path = sqlite_path(url)
    except ValueError:  # not a sqlite URL, or a bad one: open_spool says what is wrong
        return url
    return SQLITE_PREFIX + resolve(path)


def open_spool(url: str) -> Spool:
    """The spool for ``url``, not yet started (``await spool.start()``)."""
    scheme = url.partition(":")[0].lower()
    if scheme == "sqlite":
        return SqliteSpool(sqlite_path(url))
    if scheme in ("redis", "rediss"):
        raise ValueError("redis spool not available yet; use sqlite:///var/spool.db")
    # Only the scheme is shown: the rest of a URL may carry a password.
    raise ValueError(f"unknown spool URL scheme '{scheme}' (expected sqlite:/// or redis://)")
