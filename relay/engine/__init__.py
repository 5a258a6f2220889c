"""The engine: from envelopes to per-destination decisions and spool rows, with no HTTP in
it (the ingest handlers and ``relay test`` both call ``Engine.process``)::

    envelope -> contracts -> authority (hold / merge browser copies)
      -> per destination: events, when (match), consent, dedup, pipeline -> a spool Row

``identity`` (the correlation cookie, client addresses) and ``waiting`` (copies waiting for a
browser's consent choice) are the engine's too; ``results`` is what it returns.
"""

from relay.engine.core import Engine

__all__ = ["Engine"]
