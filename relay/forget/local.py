"""The relay's part of ``relay forget``: a person's copies in the spool and the state store,
found through the ledger's links, then the links themselves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from relay.ledger import Ledger
from relay.observe.log import LOG
from relay.personal import Subjects
from relay.spool.base import Spool
from relay.state import State


@dataclass(slots=True)
class RelayPart:
    """What the relay deleted; ``problems`` says what it could not do (then it is not
    complete, and the command exits 1)."""

    spool: int = 0  # outbox rows
    dead_letters: int = 0
    held: int = 0  # held browser copies and events waiting for consent
    ledger: int = 0  # links from the person's hashes to their events
    quarantined: int = 0
    events: int = 0  # the person's events the ledger knew
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.problems

    def report(self) -> dict[str, Any]:
        return {"spool": self.spool, "dead_letters": self.dead_letters, "held": self.held,
                "ledger": self.ledger, "quarantined": self.quarantined, "events": self.events,
                "complete": self.complete, "problems": list(self.problems)}


async def purge(
    given: Mapping[str, str], subjects: Subjects, spool: Spool, state: State | None,
    ledger: Ledger | None,
) -> RelayPart:
    """Delete the person's copies; ``state`` None: there is no state store to reach (memory
    state with no relay running holds nothing). The links go last, and only when every
    copy went: a failed purge can be run again and finds the same events."""
    part = RelayPart()
    hashes = subjects.lookup(given)
    if ledger is None:
        part.problems.append("the ledger is off (relay.ledger: off), so the relay cannot find"
                             " the person's events")
        return part
    await ledger.drain()  # hops of a running relay not yet written
    events = await ledger.events_of(hashes)
    part.events = len(events)
    try:
        gone = await spool.forget(events)
        part.spool, part.dead_letters, part.quarantined = (
            gone.spool, gone.dead_letters, gone.quarantined)
    except Exception as exc:
        LOG.error("forget: the spool could not be purged: %s", exc)
        part.problems.append(f"spool: {type(exc).__name__}: {exc}")
    if state is not None:
        try:
            held, waiting = await state.forget_events(events)
            part.held = held + waiting
        except Exception as exc:
            LOG.error("forget: the state store could not be purged: %s", exc)
            part.problems.append(f"state: {type(exc).__name__}: {exc}")
    if part.complete:
        part.ledger = await ledger.unlink(hashes)
    return part
