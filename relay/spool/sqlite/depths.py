"""The SQLite spool's depth counters (``relay.spool.depths``), recounted from the tables.
A recount also finds each destination's oldest waiting copy (the lowest id: ids grow with
time), for its age."""

from __future__ import annotations

import sqlite3

from relay.spool.depths import Delta
from relay.spool.depths import Depths as Counts
from relay.spool.sqlite.schema import IDS, ids

__all__ = ["RECOUNT_EVERY", "Delta", "Depths"]

RECOUNT_EVERY = 60.0


class Depths(Counts):
    def recount(self, conn: sqlite3.Connection) -> None:
        # Both scans read only the indexes (outbox_due and dead_destination hold the id).
        counted = conn.execute(
            "SELECT destination, COUNT(*), MIN(id) FROM outbox GROUP BY 1"
        ).fetchall()
        spool = {dest: n for dest, n, _ in counted}
        firsts = ids([first for _, _, first in counted])
        oldest = dict(conn.execute(f"SELECT destination, created_at FROM outbox WHERE {IDS}",
                                   (firsts,)))
        dlq = dict(conn.execute("SELECT destination, COUNT(*) FROM dead GROUP BY 1"))
        self.replace(spool, dlq, oldest)
