"""What ``relay reconcile`` counts (``relay.ledger.reconcile``), on a ledger filled through
its own hop listener with hand-made hops: every column, every ``--by``, the cutoff,
repeats, authority and consent holds, retries, dead letters, and the arguments."""

from __future__ import annotations

import doctest
import itertools
from collections.abc import AsyncIterator, Sequence

import pytest

from relay.ledger import Ledger, reconcile
from relay.ledger.reconcile import COLUMNS, KEYS, kinds_of, parse_by, parse_since, rows, tally

from .hops import SOURCES, Feed, at, open_ledger

KINDS = kinds_of(SOURCES)
T = at("2026-11-28T10:00:00")
H = 3600.0
D = 24 * H
DAY1, DAY2 = "2026-11-28", "2026-11-29"
NONE = "(none)"


@pytest.fixture
async def ledger(ledger_url: str) -> AsyncIterator[Ledger]:
    ledger = await open_ledger(ledger_url)
    yield ledger
    await ledger.close()


@pytest.fixture
def feed(ledger: Ledger) -> Feed:
    return Feed(ledger)


async def count(ledger: Ledger, by: Sequence[str], since: float = T - 7 * D
                ) -> list[dict[str, str | int]]:
    await ledger.drain()
    return rows(await tally(ledger, since, KINDS), by)


def row(keys: dict[str, str] | None = None, **counts: int) -> dict[str, str | int]:
    """A row: its keys, then every column (0 unless given)."""
    unknown = set(counts) - set(COLUMNS)
    assert not unknown, unknown
    return {**(keys or {}), **{c: counts.get(c, 0) for c in COLUMNS}}


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(reconcile).failed == 0


async def test_every_column(ledger: Ledger, feed: Feed) -> None:
    # A page view delivered to the archive, refused by ads (an explicit denial).
    feed.received("pv1", T, "browser", "page_view")
    feed.suppressed("pv1", T, "page_view", "ads", "ads", "explicit")
    feed.spooled("pv1", T, "archive")
    feed.delivered("pv1", T + 1, "archive")
    # An order: the browser's copy held until the backend's confirms it; the backend's
    # copy delivered to the archive, to the crm after a retry, dead-lettered by ads.
    feed.received("o1", T + 10, "browser", "purchase")
    feed.held_for_authority("o1", T + 10, "purchase")
    feed.received("o1", T + 20, "backend", "purchase")
    feed.confirmed("o1", T + 20, "purchase")
    for dest in ("archive", "crm", "ads"):
        feed.spooled("o1", T + 20, dest)
    feed.delivered("o1", T + 21, "archive")
    feed.retried("o1", T + 21, "crm")
    feed.dead("o1", T + 21, "ads")
    feed.delivered("o1", T + 23, "crm", attempt=2)
    # The backend sends it again (a duplicate at each destination), and so does the browser
    # (a duplicate of what the authority confirmed).
    feed.received("o1", T + 30, "backend", "purchase")
    for dest in ("archive", "crm", "ads"):
        feed.duplicate("o1", T + 30, "purchase", dest)
    feed.received("o1", T + 31, "browser", "purchase")
    feed.duplicate("o1", T + 31, "purchase")
    # Browser orders never confirmed: one expired, one still held.
    feed.received("o2", T + 40, "browser", "purchase")
    feed.held_for_authority("o2", T + 40, "purchase")
    feed.unconfirmed("o2", T + 40 + 1800, "purchase")
    feed.received("o3", T + 50, "browser", "purchase")
    feed.held_for_authority("o3", T + 50, "purchase")
    # An EU page view waiting for a consent choice; one spooled, not delivered yet; one
    # that the crm's `when` does not take.
    feed.received("pv2", T + 60, "browser", "page_view")
    feed.held_for_consent("pv2", T + 60, "page_view", "archive", "analytics")
    feed.held_for_consent("pv2", T + 60, "page_view", "ads", "ads")
    feed.received("pv3", T + 70, "browser", "page_view")
    feed.spooled("pv3", T + 70, "archive")
    feed.received("pv4", T + 80, "browser", "page_view")
    feed.dropped("pv4", T + 80, "page_view", "crm")

    assert await count(ledger, []) == [row(
        browser=8, backend=2, delivered=3, duplicates=2, suppressed=1, held=3, unconfirmed=1,
        dead_lettered=1, discrepancy=1)]
    assert await count(ledger, ["destination"]) == [
        row({"destination": "ads"}, browser=2, backend=2, duplicates=1, suppressed=1, held=1,
            dead_lettered=1),
        row({"destination": "archive"}, browser=3, backend=2, delivered=2, duplicates=1,
            held=1, discrepancy=1),
        row({"destination": "crm"}, backend=2, delivered=1, duplicates=1),
        row({"destination": NONE}, browser=5, duplicates=1, held=1, unconfirmed=1),
    ]


# The period of ``test_every_by_combination``, counted by hand at the finest grain: per
# (day, event, source, destination), and per (day, event, source) for rows without a
# destination (there browser, backend and duplicates count receives, the rest copies).
#                      browser backend delivered duplicates suppressed held unconf dead gap
FINE_COPIES: dict[tuple[str, str, str, str], tuple[int, ...]] = {
    (DAY1, "page_view", "browser", "archive"): (1, 0, 1, 0, 0, 0, 0, 0, 0),
    (DAY1, "page_view", "browser", "crm"): (1, 0, 0, 0, 1, 0, 0, 0, 0),
    (DAY1, "purchase", "backend", "archive"): (0, 1, 1, 0, 0, 0, 0, 0, 0),
    (DAY1, "purchase", "backend", "crm"): (0, 1, 0, 0, 0, 0, 0, 1, 0),
    (DAY1, "purchase", "browser", NONE): (1, 0, 0, 0, 0, 0, 1, 0, 0),
    (DAY2, "purchase", "apps", "archive"): (0, 1, 1, 0, 0, 0, 0, 0, 0),
    (DAY2, "purchase", "apps", "crm"): (0, 1, 1, 0, 0, 0, 0, 0, 0),
    (DAY2, "page_view", "browser", "archive"): (1, 0, 0, 0, 0, 1, 0, 0, 0),
    (DAY2, "page_view", "browser", "crm"): (1, 0, 0, 0, 0, 1, 0, 0, 0),
    (DAY2, "purchase", "backend", "archive"): (0, 1, 0, 1, 0, 0, 0, 0, 0),
    (DAY2, "purchase", "backend", "crm"): (0, 1, 0, 1, 0, 0, 0, 0, 0),
    (DAY2, "signup", "browser", NONE): (1, 0, 0, 0, 0, 0, 0, 0, 0),
}
FINE_EVENTS: dict[tuple[str, str, str], tuple[int, ...]] = {
    (DAY1, "page_view", "browser"): (1, 0, 1, 0, 1, 0, 0, 0, 0),
    (DAY1, "purchase", "backend"): (0, 1, 1, 0, 0, 0, 0, 1, 0),
    (DAY1, "purchase", "browser"): (1, 0, 0, 0, 0, 0, 1, 0, 0),
    (DAY2, "purchase", "apps"): (0, 1, 2, 0, 0, 0, 0, 0, 0),
    (DAY2, "page_view", "browser"): (1, 0, 0, 0, 0, 2, 0, 0, 0),
    (DAY2, "purchase", "backend"): (0, 1, 0, 1, 0, 0, 0, 0, 0),
    (DAY2, "signup", "browser"): (1, 0, 0, 0, 0, 0, 0, 0, 0),
}


def expected(by: Sequence[str]) -> list[dict[str, str | int]]:
    fine: list[tuple[tuple[str, ...], tuple[int, ...]]] = (
        list(FINE_COPIES.items()) if "destination" in by else list(FINE_EVENTS.items()))
    grouped: dict[tuple[str, ...], list[int]] = {}
    for key, counts in fine:
        named = dict(zip(KEYS, key, strict=False))
        total = grouped.setdefault(tuple(named[k] for k in by), [0] * len(COLUMNS))
        for i, n in enumerate(counts):
            total[i] += n
    order = sorted(grouped, key=lambda key: [(v == NONE, v) for v in key])
    return [row(dict(zip(by, key, strict=True)), **dict(zip(COLUMNS, grouped[key], strict=True)))
            for key in order]


async def test_every_by_combination(ledger: Ledger, feed: Feed) -> None:
    t1, t2 = T, T + D
    feed.received("a1", t1, "browser", "page_view")
    feed.spooled("a1", t1, "archive")
    feed.suppressed("a1", t1, "page_view", "crm", "analytics")
    feed.delivered("a1", t1 + 1, "archive")
    feed.received("a2", t1 + 10, "backend", "purchase")
    feed.spooled("a2", t1 + 10, "archive")
    feed.spooled("a2", t1 + 10, "crm")
    feed.delivered("a2", t1 + 11, "archive")
    feed.dead("a2", t1 + 11, "crm")
    feed.received("a5", t1 + 20, "browser", "purchase")
    feed.held_for_authority("a5", t1 + 20, "purchase")
    feed.unconfirmed("a5", t2 + 5, "purchase")  # expires the next day: its receive's day
    feed.received("a3", t2, "apps", "purchase")
    feed.spooled("a3", t2, "archive")
    feed.spooled("a3", t2, "crm")
    feed.delivered("a3", t2 + 1, "archive")
    feed.retried("a3", t2 + 1, "crm")
    feed.delivered("a3", t2 + 3, "crm", attempt=2)
    feed.received("a4", t2 + 10, "browser", "page_view")
    feed.held_for_consent("a4", t2 + 10, "page_view", "archive", "analytics")
    feed.held_for_consent("a4", t2 + 10, "page_view", "crm", "analytics")
    feed.received("a2", t2 + 20, "backend", "purchase")  # a repeat, the next day
    feed.duplicate("a2", t2 + 20, "purchase", "archive")
    feed.duplicate("a2", t2 + 20, "purchase", "crm")
    feed.received("a6", t2 + 30, "browser", "signup")
    await ledger.drain()
    counted = await tally(ledger, T - D, KINDS)
    combinations = [list(p) for n in range(len(KEYS) + 1)
                    for p in itertools.permutations(KEYS, n)]
    assert len(combinations) == 65
    for by in combinations:
        assert rows(counted, by) == expected(by), by


async def test_the_cutoff_is_on_the_receive(ledger: Ledger, feed: Feed) -> None:
    # Received before the cutoff: not counted, nor its delivery after it.
    feed.received("e1", T - 2 * D, "browser", "page_view")
    feed.spooled("e1", T - 2 * D, "archive")
    feed.delivered("e1", T + H, "archive")
    # Its repeat after the cutoff counts, as a duplicate; an event at the cutoff counts.
    feed.received("e1", T + 2 * H, "browser", "page_view")
    feed.duplicate("e1", T + 2 * H, "page_view", "archive")
    feed.received("e2", T, "backend", "page_view")
    feed.spooled("e2", T, "archive")
    feed.delivered("e2", T + 1, "archive")
    assert await count(ledger, [], since=T) == [row(browser=1, backend=1, delivered=1,
                                                    duplicates=1)]
    assert await count(ledger, [], since=T - 3 * D) == [row(browser=2, backend=1, delivered=2,
                                                            duplicates=1)]
    assert await count(ledger, [], since=T + D) == [row()]  # an empty period: zeros
    assert await count(ledger, ["day"], since=T + D) == []


async def test_repeats_count_again_and_as_duplicates(ledger: Ledger, feed: Feed) -> None:
    feed.received("r1", T, "browser", "page_view")
    for dest in ("archive", "crm"):
        feed.spooled("r1", T, dest)
        feed.delivered("r1", T + 1, dest)
    feed.received("r1", T + 10, "browser", "page_view")  # a repeat: a duplicate
    feed.duplicate("r1", T + 10, "page_view", "archive")
    feed.duplicate("r1", T + 10, "page_view", "crm")
    # After a reload added a destination: new there, so this receive is not a duplicate.
    feed.received("r1", T + 20, "browser", "page_view")
    feed.duplicate("r1", T + 20, "page_view", "archive")
    feed.duplicate("r1", T + 20, "page_view", "crm")
    feed.spooled("r1", T + 20, "new")
    assert await count(ledger, []) == [row(browser=3, delivered=2, duplicates=1,
                                           discrepancy=1)]
    assert await count(ledger, ["destination"]) == [
        row({"destination": "archive"}, browser=3, delivered=1, duplicates=2),
        row({"destination": "crm"}, browser=3, delivered=1, duplicates=2),
        row({"destination": "new"}, browser=1, discrepancy=1),
    ]


async def test_copies_held_for_the_authority(ledger: Ledger, feed: Feed) -> None:
    # Confirmed, then the browser sends it again: a duplicate.
    feed.received("o1", T, "browser", "purchase")
    feed.held_for_authority("o1", T, "purchase")
    feed.received("o1", T + 10, "backend", "purchase")
    feed.confirmed("o1", T + 10, "purchase")
    feed.spooled("o1", T + 10, "archive")
    feed.delivered("o1", T + 11, "archive")
    feed.received("o1", T + 20, "browser", "purchase")
    feed.duplicate("o1", T + 20, "purchase")
    # Never confirmed; still held.
    feed.received("o2", T + 30, "browser", "purchase")
    feed.held_for_authority("o2", T + 30, "purchase")
    feed.unconfirmed("o2", T + 30 + 1800, "purchase")
    feed.received("o3", T + 40, "browser", "purchase")
    feed.held_for_authority("o3", T + 40, "purchase")
    # Held twice before the backend's copy: it confirms one, the other expires.
    feed.received("o4", T + 50, "browser", "purchase")
    feed.held_for_authority("o4", T + 50, "purchase")
    feed.received("o4", T + 51, "browser", "purchase")
    feed.held_for_authority("o4", T + 51, "purchase")
    feed.received("o4", T + 60, "backend", "purchase")
    feed.confirmed("o4", T + 60, "purchase")
    feed.spooled("o4", T + 60, "archive")
    feed.delivered("o4", T + 61, "archive")
    feed.unconfirmed("o4", T + 50 + 1800, "purchase")
    # The backend's copy came after the window: unconfirmed, and delivered as it came.
    feed.received("o5", T + 70, "browser", "purchase")
    feed.held_for_authority("o5", T + 70, "purchase")
    feed.unconfirmed("o5", T + 70 + 1800, "purchase")
    feed.received("o5", T + 70 + 1900, "backend", "purchase")
    feed.spooled("o5", T + 70 + 1900, "archive")
    feed.delivered("o5", T + 70 + 1901, "archive")
    assert await count(ledger, ["source"]) == [
        row({"source": "backend"}, backend=3, delivered=3),
        row({"source": "browser"}, browser=7, duplicates=1, held=1, unconfirmed=3),
    ]
    assert await count(ledger, ["destination"]) == [
        row({"destination": "archive"}, backend=3, delivered=3),
        row({"destination": NONE}, browser=7, duplicates=1, held=1, unconfirmed=3),
    ]


async def test_copies_waiting_for_consent(ledger: Ledger, feed: Feed) -> None:
    waits = {"archive": "analytics"}
    # The choice grants analytics and denies ads: released to the archive, ads refused.
    feed.received("p1", T, "browser", "page_view")
    feed.held_for_consent("p1", T, "page_view", "archive", "analytics")
    feed.held_for_consent("p1", T, "page_view", "ads", "ads")
    feed.suppressed("p1", T + 60, "page_view", "ads", "ads", "explicit")
    feed.released("p1", T + 60, "page_view", "archive", "analytics")
    feed.spooled("p1", T + 60, "archive")
    feed.delivered("p1", T + 61, "archive")
    # No choice within the window; no choice yet.
    feed.received("p2", T + 10, "browser", "page_view")
    feed.held_for_consent("p2", T + 10, "page_view", "archive", "analytics")
    feed.consent_expired("p2", T + 610, "page_view", waits)
    feed.received("p3", T + 20, "browser", "page_view")
    feed.held_for_consent("p3", T + 20, "page_view", "archive", "analytics")
    # Sent again with the choice: the release spools the first, the repeat is a duplicate
    # (in the hops' own order: the release's, the repeat's, then the spool commit's).
    feed.received("p4", T + 30, "browser", "page_view")
    feed.held_for_consent("p4", T + 30, "page_view", "archive", "analytics")
    feed.received("p4", T + 40, "browser", "page_view")
    feed.released("p4", T + 40, "page_view", "archive", "analytics")
    feed.duplicate("p4", T + 40, "page_view", "archive")
    feed.spooled("p4", T + 40, "archive")
    feed.delivered("p4", T + 41, "archive")
    # Released, then dropped by the destination's pipeline (dropped comes first).
    feed.received("p5", T + 50, "browser", "page_view")
    feed.held_for_consent("p5", T + 50, "page_view", "archive", "analytics")
    feed.dropped("p5", T + 60, "page_view", "archive")
    feed.released("p5", T + 60, "page_view", "archive", "analytics")
    assert await count(ledger, ["destination"]) == [
        row({"destination": "ads"}, browser=1, suppressed=1),
        row({"destination": "archive"}, browser=5, delivered=2, duplicates=1, suppressed=1,
            held=1),
        row({"destination": NONE}, browser=1),
    ]
    assert await count(ledger, []) == [row(browser=6, delivered=2, duplicates=1, suppressed=2,
                                           held=1)]


async def test_deliveries_retries_and_dead_letters(ledger: Ledger, feed: Feed) -> None:
    for n, eid in enumerate(("d1", "d2", "d3", "d4", "d5")):
        feed.received(eid, T + n, "backend", "purchase")
        feed.spooled(eid, T + n, "archive")
    feed.retried("d1", T + 10, "archive", 1)
    feed.retried("d1", T + 11, "archive", 2)
    feed.delivered("d1", T + 12, "archive", 3)
    feed.dead("d2", T + 10, "archive")
    feed.dead("d3", T + 10, "archive")
    feed.replayed(T + 20, "archive")  # `relay dlq replay`: the hop names no event
    feed.delivered("d3", T + 21, "archive")
    feed.retried("d4", T + 10, "archive")  # waiting for its next attempt
    feed.delivered("d5", T + 10, "archive")
    feed.delivered("d5", T + 30, "archive")  # sent twice (at least once): one copy
    assert await count(ledger, ["destination"]) == [
        row({"destination": "archive"}, backend=5, delivered=3, dead_lettered=1,
            discrepancy=1),
    ]


async def test_a_delivery_stamped_before_its_spooled_hop(ledger: Ledger, feed: Feed) -> None:
    """Another worker or replica took the copy from the spool, and its clock was behind
    (or the spooled hop was stamped late): the delivery still goes to its copy."""
    feed.received("w1", T, "browser", "page_view")
    feed.delivered("w1", T + 0.001, "archive")  # before the spooled hop, in time order
    feed.spooled("w1", T + 0.002, "archive")
    feed.received("w2", T, "browser", "page_view")
    feed.spooled("w2", T + 0.002, "archive")
    feed.spooled("w2", T + 0.002, "meta")
    feed.retried("w2", T + 0.001, "meta", 1)  # a retry first, then its delivery
    feed.delivered("w2", T + 0.003, "meta", 2)
    feed.delivered("w2", T + 0.001, "other")  # no copy for it at all: counted nowhere
    assert await count(ledger, ["destination"]) == [
        row({"destination": "archive"}, browser=2, delivered=1, discrepancy=1),
        row({"destination": "meta"}, browser=1, delivered=1),
    ]


async def test_days_are_the_receive_time_in_utc(ledger: Ledger, feed: Feed) -> None:
    late = at("2026-11-28T23:59:59")
    feed.received("n1", late, "browser", "page_view")
    feed.spooled("n1", late, "archive")
    feed.delivered("n1", late + 6, "archive")  # after midnight
    feed.received("n2", late + 2, "browser", "page_view")
    assert await count(ledger, ["day"]) == [
        row({"day": DAY1}, browser=1, delivered=1), row({"day": DAY2}, browser=1)]


async def test_a_source_the_rules_no_longer_define(ledger: Ledger, feed: Feed) -> None:
    feed.received("g1", T, "gone", "page_view")
    feed.spooled("g1", T, "archive")
    feed.delivered("g1", T + 1, "archive")
    assert await count(ledger, ["source", "destination"]) == [
        row({"source": "gone", "destination": "archive"}, delivered=1)]


def test_since_takes_durations_and_iso_dates() -> None:
    now = at("2026-12-01T12:00:00")
    assert parse_since("7d", now) == now - 7 * D
    assert parse_since("24h", now) == now - D
    assert parse_since("90m", now) == now - 90 * 60
    assert parse_since("30s", now) == now - 30
    assert parse_since("2w", now) == now - 14 * D
    assert parse_since("2026-11-28", now) == at("2026-11-28T00:00:00")
    assert parse_since("2026-11-28T06:30:00Z", now) == at("2026-11-28T06:30:00")
    assert parse_since("2026-11-28T06:30:00+02:00", now) == at("2026-11-28T04:30:00")
    for bad, says in (("7x", "neither a duration"), ("0d", "no time"), ("-7d", "neither"),
                      ("", "neither"), ("2026-13-01", "neither"), ("2027-01-01", "future")):
        with pytest.raises(ValueError, match=says):
            parse_since(bad, now)


def test_by_takes_keys_in_any_order() -> None:
    assert parse_by("day") == ("day",)
    assert parse_by("destination,day") == ("destination", "day")
    assert parse_by(" event , source ") == ("event", "source")
    assert parse_by("") == ()
    with pytest.raises(ValueError, match=r"unknown key 'dest' \(did you mean 'destination'\?"
                       r" the keys are day, event, source, destination\)"):
        parse_by("day,dest")
    with pytest.raises(ValueError, match="the keys are day, event, source, destination"):
        parse_by("country")
    with pytest.raises(ValueError, match="'day' is given twice"):
        parse_by("day,event,day")
