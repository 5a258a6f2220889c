"""The SQLite spool: the embedded default outbox (WAL, ``synchronous=NORMAL``).

``relay.sqlite.Committer`` owns the connection on one thread and commits whatever is
queued as one transaction (group commit); ``schema`` has the tables; ``depths`` keeps the
per-destination counts in memory; ``spool`` is ``SqliteSpool``, the operations as SQL.

With WAL and ``synchronous=NORMAL`` a commit survives the process being killed; only a power
cut may lose the last commits. Several processes (``relay serve --workers N``) may share the
file: each group starts with ``BEGIN IMMEDIATE`` and ``claim`` leases rows with a single
``UPDATE ... RETURNING``, so no two processes hold the same row.
"""

from relay.spool.sqlite.schema import RESPONSE_BYTES
from relay.spool.sqlite.spool import SqliteSpool

__all__ = ["RESPONSE_BYTES", "SqliteSpool"]
