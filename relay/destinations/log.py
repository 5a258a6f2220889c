"""``log``: each event as one JSON line on the ``relay.destination.log`` logger.

It logs what the destination receives, i.e. the event after its pipeline: point a pipeline at
it to see exactly what a vendor would get.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import orjson

from relay.rules.fields import At
from relay.types import DestinationDef, Event

MAX_BATCH = 500
LOGGER = logging.getLogger("relay.destination.log")
Level = Literal["info", "debug"]
LEVELS: dict[str, int] = {"info": logging.INFO, "debug": logging.DEBUG}


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: Level = "info"


def parse_settings(at: At) -> LogSettings | None:
    if not at.present:
        return LogSettings()
    if at.mapping(allowed=("level",)) is None:
        return None
    level = at.get("level").choice(tuple(LEVELS), "info")
    return LogSettings(level="debug" if level == "debug" else "info")


async def write(events: Sequence[Event], settings: LogSettings) -> None:
    level = LEVELS[settings.level]
    if LOGGER.isEnabledFor(level):
        for event in events:
            LOGGER.log(level, orjson.dumps(event).decode())


DESTINATION = DestinationDef(
    parse_settings=parse_settings,
    max_batch=MAX_BATCH,
    write=write,
    vendor="none: the relay's own log (logger relay.destination.log)",
    doc="Log each event (as the destination receives it) on the relay.destination.log logger.",
)
