"""``open_ledger``: the ledger a ``relay.ledger.url`` names, by its scheme.

    >>> type(open_ledger("sqlite:////srv/relay/ledger.db", 3600)).__name__
    'SqliteLedger'
    >>> open_ledger("postgresql://relay:pw@db/relay", 3600).where
    'postgresql://***@db/relay'
"""

from __future__ import annotations

import time
from collections.abc import Callable

from relay.ledger.base import Ledger
from relay.ledger.postgres import PostgresLedger
from relay.ledger.sqlite import SqliteLedger
from relay.rules.model import POSTGRES_PREFIXES
from relay.sqlite import sqlite_path


def open_ledger(
    url: str,
    retention: float,
    *,
    clock: Callable[[], float] = time.time,
    on_error: Callable[[], None] = lambda: None,
    on_write: Callable[[float], None] = lambda seconds: None,
) -> Ledger:
    """A ``PostgresLedger`` for ``postgresql://`` (or ``postgres://``), a ``SqliteLedger``
    for ``sqlite:///`` (placed under ``--var`` already); ValueError for anything else (the
    rules refuse it first: R216)."""
    if url.startswith(POSTGRES_PREFIXES):
        return PostgresLedger(url, retention, clock=clock, on_error=on_error, on_write=on_write)
    return SqliteLedger(sqlite_path(url), retention, clock=clock, on_error=on_error,
                        on_write=on_write)
