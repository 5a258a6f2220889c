"""The delivery ledger: what happened to every event, per destination, for audits.

Per ``(event_id, destination)`` it keeps the source, the event, the consent snapshot (each
purpose's state), the schema version, the names (never the values) of the fields sent, the
attempts, the outcome, and the first and last times; per event every hop in time order (what
``relay trace`` prints); and keyed hashes of the person's ids (``relay forget`` finds a
person's events by them without the ledger knowing who they are).

It is fed by the hop stream (``relay.observe.log.listen``): ``record`` turns hops into rows,
a ``Ledger`` (``base``) writes them off the hot path, batched on the event loop, and prunes
what is older than the retention. Two backends: ``SqliteLedger`` (a file under ``--var``,
one per replica) and ``PostgresLedger`` (one database that every replica shares, so
``relay trace`` / ``reconcile`` / ``forget`` anywhere see every replica's hops);
``open_ledger`` picks one by the URL. ``reconcile`` counts a period of it for
``relay reconcile`` and the admin page ``/reconcile``.
"""

from relay.ledger.base import Ledger, LedgerUnreadable
from relay.ledger.factory import open_ledger
from relay.ledger.postgres import PostgresLedger
from relay.ledger.sqlite import SqliteLedger

__all__ = ["Ledger", "LedgerUnreadable", "PostgresLedger", "SqliteLedger", "open_ledger"]
