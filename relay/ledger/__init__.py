"""The delivery ledger: what happened to every event, per destination, for audits.

Per ``(event_id, destination)`` it keeps the source, the event, the consent snapshot (each
purpose's state), the schema version, the names (never the values) of the fields sent, the
attempts, the outcome, and the first and last times; per event every hop in time order (what
``relay trace`` prints); and keyed hashes of the person's ids (``relay forget`` finds a
person's events by them without the ledger knowing who they are).

It is fed by the hop stream (``relay.observe.log.listen``): ``record`` turns hops into rows,
``SqliteLedger`` writes them off the hot path, batched per event-loop turn, on its own
SQLite thread, and prunes what is older than the retention. ``reconcile`` counts a period
of it for ``relay reconcile`` and the admin page ``/reconcile``.
"""

from relay.ledger.sqlite import SqliteLedger

__all__ = ["SqliteLedger"]
