"""``relay forget``: delete what the relay and its vendors hold about one person.

A person is named by one identifier (``{"id": ...}``, ``{"email": ...}`` or
``{"phone": ...}``) and shown only as its keyed hash (``relay.personal.Subjects``). The
relay part (``local.purge``) finds their events through the ledger's links, under every
cookie secret, and deletes their copies from the spool (outbox, dead letters, quarantine)
and the state store (held and waiting copies), then the links: the ledger keeps what was
delivered where, about nobody in particular. The vendor part (``vendors.ask``) follows each
destination type's ``Deletion`` (``relay.types``). ``run.forget`` does both and returns the
receipt (``receipt``), the one JSON shape both the CLI and ``POST /forget`` print.
"""

from relay.forget.receipt import exit_code, render_text
from relay.forget.run import forget, subject_of

__all__ = ["exit_code", "forget", "render_text", "subject_of"]
