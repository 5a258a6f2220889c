"""The debug feed: who sees which entry, and the delivery attempts as they come."""

from __future__ import annotations

import asyncio
import doctest
from typing import Any

from relay.observe import debug
from relay.observe.debug import EARLY, DebugFeed
from relay.observe.mask import Masker
from relay.types import Verdict

MASKER = Masker(b"test-debug-feed-masking-key")


def _drain(queue: asyncio.Queue[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(debug).failed == 0


def test_an_attempt_says_when_and_which_events_a_vendor_refused() -> None:
    feed = DebugFeed(MASKER, clock=lambda: 1_795_000_000.25)
    everyone = feed.subscribe(None)
    failed = ((1, "bad email ann@example.com"), (7, "out of range"))
    feed.attempt("mixpanel", ["e1", "e2"], Verdict("ok", "", 200, failed=failed), 200)
    [entry] = _drain(everyone)
    assert entry == {"delivery": "mixpanel", "outcome": "ok", "status": 200, "detail": "",
                     "at": "2026-11-18T11:06:40.250Z", "event_ids": ["e1", "e2"],
                     "refused": {"e2": "bad email [email]"}}


def test_a_viewer_of_one_browser_sees_its_own_events_and_their_attempts_only() -> None:
    feed = DebugFeed(MASKER)
    mine, theirs = feed.subscribe("cid-a"), feed.subscribe("cid-b")
    feed.publish([{"event_id": "a1", "cid": "cid-a"}, {"event_id": "b1", "cid": "cid-b"}])
    feed.attempt("crm", ["a1", "b1"], Verdict("retry", "HTTP 503: busy", 503), 503)
    got = _drain(mine)
    assert [e.get("event_id") for e in got] == ["a1", None]
    assert got[1]["event_ids"] == ["a1"] and got[1]["detail"] == "HTTP 503: busy"
    assert [e.get("event_ids", [e.get("event_id")]) for e in _drain(theirs)] == [["b1"], ["b1"]]


def test_an_attempt_before_its_event_is_shown_right_after_the_event() -> None:
    """A worker can send a copy as soon as the spool committed it, before the request that
    put it there publishes its entry: a viewer of that browser still sees the attempt."""
    feed = DebugFeed(MASKER)
    mine, everyone = feed.subscribe("cid-a"), feed.subscribe(None)
    feed.attempt("archive", ["a1", "z9"], Verdict("ok"), None)
    assert _drain(mine) == []  # not seen (yet)
    feed.publish([{"event_id": "a1", "cid": "cid-a"}])
    event, attempt = _drain(mine)
    assert event["event_id"] == "a1"
    assert (attempt["delivery"], attempt["event_ids"]) == ("archive", ["a1"])
    feed.publish([{"event_id": "a1", "cid": "cid-a"}])  # shown once
    assert [e.get("delivery") for e in _drain(mine)] == [None]
    # A viewer of every browser is shown each attempt at once.
    assert [e.get("delivery") for e in _drain(everyone)] == ["archive", None, None]


def test_early_attempts_are_bounded() -> None:
    feed = DebugFeed(MASKER)
    mine = feed.subscribe("cid-a")
    for i in range(EARLY + 10):
        feed.attempt("archive", [f"x{i}"], Verdict("ok"), None)
    last = f"x{EARLY + 9}"
    feed.publish([{"event_id": "x0", "cid": "cid-a"}, {"event_id": last, "cid": "cid-a"}])
    got = _drain(mine)
    # x0's attempt was pushed out by the newer ones; the newest is still kept.
    assert [e.get("event_ids") for e in got] == [None, None, [last]]
