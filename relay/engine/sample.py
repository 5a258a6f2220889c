"""A sample of incoming events for ``relay diff`` (``relay.sample``), minimized.

Which events: those whose ``event_id`` hashes below ``rate`` (a stable choice: the same
events on every replica, and a retried event is sampled again only if it was the first time).
What is kept: the event after its contract, through the pipeline of the strictest
destination (the one whose copy keeps the fewest fields), without what the relay itself
sets; with the request's country and GPC as headers, the form ``relay diff`` reads::

    {"source": "browser", "headers": {"CF-IPCountry": "DE", "Sec-GPC": "1"},
     "event": {"event": "page_view", "event_id": "...", "context": {"page": {...}}, ...}}

Lines are appended to ``path`` (created ``0640``) until it holds ``max_bytes``; then the
sample stops, and says so once.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any

import orjson

from relay import pipeline
from relay.engine.envelope import RELAY_CONTEXT_KEYS, RELAY_KEYS
from relay.rules.model import Rules
from relay.types import Event, StepContext

LOG = logging.getLogger("relay.sample")
FILE_MODE = 0o640


def chosen(event_id: str, rate: float) -> bool:
    """Whether ``event_id`` is in a ``rate`` sample (0..1), the same answer every time."""
    if rate >= 1.0:
        return True
    digest = hashlib.blake2b(event_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < rate * 2**64


def strictest(rules: Rules, ev: Event) -> Event | None:
    """``ev`` through the pipeline that keeps the fewest fields of it (None: every
    destination's pipeline drops it, or none has one: then nothing is minimized, and the
    event is not sampled)."""
    best: tuple[int, Event] | None = None
    granted = frozenset(rules.purposes)  # as if every purpose were granted: the most kept
    for dest in rules.destinations.values():
        if dest.pipeline is None:
            continue
        copy = pipeline.run(rules.pipelines[dest.pipeline].steps, orjson.loads(orjson.dumps(ev)),
                            StepContext(dest.name, granted))
        if copy is None:
            continue
        size = _leaves(copy)
        if best is None or size < best[0]:
            best = (size, copy)
    return best[1] if best else None


def _leaves(item: Any) -> int:
    if isinstance(item, dict):
        return sum(_leaves(v) for v in item.values())
    if isinstance(item, list):
        return sum(_leaves(v) for v in item)
    return 1


def line(rules: Rules, ev: Event) -> bytes | None:
    """The sample line for ``ev`` (as routed), or None when it cannot be minimized."""
    copy = strictest(rules, ev)
    if copy is None:
        return None
    ctx = copy.get("context")
    headers: dict[str, str] = {}
    if isinstance(ctx, dict):
        if isinstance(ctx.get("country"), str) and rules.relay.country_header:
            headers[rules.relay.country_header] = ctx["country"]
        if ctx.get("gpc") is True:
            headers["Sec-GPC"] = "1"
        for key in RELAY_CONTEXT_KEYS:
            ctx.pop(key, None)
        if not ctx:
            copy.pop("context")
    for key in RELAY_KEYS:
        copy.pop(key, None)
    record = {"source": ev.get("source"), "headers": headers, "event": copy}
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


class Sampler:
    def __init__(self, path: str, rate: float, max_bytes: int) -> None:
        self.path = path
        self.rate = rate
        self.max_bytes = max_bytes
        self._full = False

    def offer(self, rules: Rules, ev: Event) -> None:
        """Append ``ev`` to the sample when it is chosen (never raises: a sample is not worth
        an event)."""
        eid = ev.get("event_id")
        if self._full or not isinstance(eid, str) or not chosen(eid, self.rate):
            return
        try:
            data = line(rules, ev)
            if data is None:
                return
            parent = os.path.dirname(self.path)
            if parent:
                os.makedirs(parent, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
            try:
                if os.fstat(fd).st_size + len(data) > self.max_bytes:
                    self._full = True
                    LOG.warning("sample %s is full (%d bytes): sampling stopped", self.path,
                                self.max_bytes)
                    return
                os.write(fd, data)
            finally:
                os.close(fd)
        except Exception:
            LOG.exception("sample %s: could not record an event", self.path)
