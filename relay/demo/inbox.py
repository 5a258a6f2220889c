"""What the stand-in vendors received: every request, as it came and as each stand-in
answered it, with the events the relay says it carried.

Most vendor formats do not carry the relay's ``event_id`` (GA4 and Plausible have no field
for it), so a request is named by the relay itself: after each delivery attempt the
dispatcher reports the destination, the event ids of the batch in order, and the vendor's
status (the debug feed's delivery entries, ``relay.demo.feed``). Each demo destination sends
one request at a time (``concurrency: 1`` in the demo rules), so the report that follows a
request is that request's: ``attempted`` pairs them, matching the status and the number of
events. Everything is in memory and bounded.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from relay.demo.standins.base import Call, Took

KEEP_REQUESTS = 300  # per vendor


@dataclass(slots=True)
class Delivery:
    n: int  # the request's number, counting every vendor's
    vendor: str  # the stand-in (the last part of its URL)
    destination: str  # the rules' destination delivering to it
    at: float
    call: Call
    took: Took
    event_ids: tuple[str, ...] | None = None  # None until the relay reported the attempt


class Inbox:
    def __init__(self, keep: int = KEEP_REQUESTS) -> None:
        self.keep = keep
        self._by_vendor: dict[str, deque[Delivery]] = {}
        self._unpaired: dict[str, deque[Delivery]] = {}
        self._count = 0
        self.version = 0

    def received(self, vendor: str, destination: str, call: Call, took: Took) -> Delivery:
        self._count += 1
        delivery = Delivery(self._count, vendor, destination, time.time(), call, took)
        self._by_vendor.setdefault(vendor, deque(maxlen=self.keep)).append(delivery)
        self._unpaired.setdefault(destination, deque(maxlen=self.keep)).append(delivery)
        self.version += 1
        return delivery

    def attempted(self, destination: str, event_ids: Sequence[str], status: int | None) -> None:
        """The relay's report of one delivery attempt: the oldest unpaired request of the
        destination with that status and that many events carried these ``event_ids``.
        Older unpaired requests are given up on (an attempt whose report was lost)."""
        waiting = self._unpaired.get(destination)
        if not waiting or status is None:
            return
        for i, delivery in enumerate(waiting):
            if delivery.took.answer.status == status and len(delivery.took.items) == len(
                    event_ids):
                delivery.event_ids = tuple(event_ids)
                for _ in range(i + 1):
                    waiting.popleft()
                self.version += 1
                return

    def deliveries(self, vendor: str) -> list[Delivery]:
        return list(self._by_vendor.get(vendor, ()))
