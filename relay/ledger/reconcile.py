"""What ``relay reconcile`` and the admin page's ``/reconcile`` count, from the ledger's hops.

One SQL query (``SQL``, the same on SQLite and PostgreSQL: every hop of every event
received since the cutoff, per event in time order), then a pure fold (``fold``): each
event's hops are followed receive by receive and copy by copy, and counted into a
``Tally`` of cells keyed by (day, event, source, destination); ``rows(tally, by)`` rolls
the cells up into the rows of one ``--by``.
docs/cli.md (``relay reconcile``) defines every number; in short:

- a *receive* is one ``received`` hop (a repeat of an event is another receive); its day
  (UTC), event and source are the keys of everything it led to, and it counts only when it
  is at or after the cutoff;
- a *copy* is what one receive decided for one destination (suppressed, held, duplicate,
  spooled, or dropped), followed to where it is now (released, retried, delivered,
  dead-lettered, ...); a browser copy held for its authoritative source is a copy without a
  destination;
- on a row with a ``destination`` key, ``browser`` and ``backend`` count that destination's
  copies (dropped ones left out) by the kind of their receive's source, and every copy is in
  exactly one of delivered, duplicates, suppressed, held, dead_lettered and discrepancy; a
  receive with no such copy at all is on the ``(none)`` destination's row;
- on a row without one, ``browser``, ``backend`` and ``duplicates`` count receives (a
  duplicate: answered as one), the other columns the copies of all destinations.

    >>> hops = [("e1", 0.0, "received", "browser", "page_view", None),
    ...         ("e1", 0.1, "spooled", None, None, "archive"),
    ...         ("e1", 0.5, "delivered", None, None, "archive")]
    >>> rows(fold(hops, 0.0, {"browser": "browser"}), ["destination"])[0]["delivered"]
    1
"""

from __future__ import annotations

import difflib
import functools
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from operator import itemgetter
from typing import Literal

from relay.ledger.base import Ledger, iso

KEYS = ("day", "event", "source", "destination")
COLUMNS = ("browser", "backend", "delivered", "duplicates", "suppressed", "held",
           "unconfirmed", "dead_lettered", "discrepancy")
DEFAULT_SINCE = "7d"
DEFAULT_BY = ("day",)
NO_DESTINATION = "(none)"  # destination names start with a letter, a digit or _

Kind = Literal["browser", "backend"]
# (event_id, at, hop, source, event, destination): one row of ``SQL``.
Hop = tuple[str, float, str, str | None, str | None, str | None]

SQL = """
SELECT event_id, at, hop, source, event, destination FROM hops
WHERE event_id IN (SELECT event_id FROM hops WHERE hop = 'received' AND at >= ?)
  AND hop IN ('received', 'held', 'released', 'expired', 'duplicate', 'suppressed',
              'dropped', 'spooled', 'delivered', 'retried', 'dead_lettered')
ORDER BY event_id, at, id
"""

_B, _K, _DELIVERED, _DUP, _SUPPRESSED, _HELD, _UNCONFIRMED, _DEAD, _GAP = range(len(COLUMNS))
_COPY_COLUMNS = (_DELIVERED, _SUPPRESSED, _HELD, _UNCONFIRMED, _DEAD, _GAP)
# Where a copy is counted, by the state it is in now.
_STATE = {"held": _HELD, "released": _GAP, "spooled": _GAP, "retried": _GAP,
          "delivered": _DELIVERED, "dead_lettered": _DEAD, "suppressed": _SUPPRESSED,
          "duplicate": _DUP, "expired": _UNCONFIRMED}
_DECISIONS = frozenset({"held", "suppressed", "duplicate", "dropped", "spooled"})
_DELIVERY = frozenset({"delivered", "retried", "dead_lettered"})
# A hop for a destination that the latest receive has decided already continues an older
# copy: the oldest one in the first of these states that has one.
_CONTINUES = {"dropped": ("held", "released"), "duplicate": ("held", "released"),
              "suppressed": ("held",), "spooled": ("released", "held"),
              "released": ("held",)}
_DURATION = re.compile(r"^(\d+)(s|m|h|d|w)$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


# -- arguments (the command's and the page's) ------------------------------------------

def parse_since(text: str, now: float) -> float:
    """The cutoff in Unix seconds: ``7d`` / ``24h`` / ``90m`` / ``30s`` / ``2w`` back from
    ``now``, or an ISO date or time (``2026-11-28``, ``2026-11-28T12:00:00Z``; UTC unless
    it says otherwise). ValueError says what is wrong.

    >>> parse_since("2d", 1_000_000.0), parse_since("1970-01-02", 1_000_000.0)
    (827200.0, 86400.0)
    """
    text = text.strip()
    m = _DURATION.match(text)
    if m:
        seconds = int(m[1]) * _SECONDS[m[2]]
        if seconds == 0:
            raise ValueError(f"'{text}' is no time at all (like 7d, 24h or 90m)")
        return now - seconds
    try:
        when = (datetime.combine(date.fromisoformat(text), datetime.min.time())
                if len(text) == 10 else datetime.fromisoformat(text))
    except ValueError:
        raise ValueError(
            f"'{text}' is neither a duration (like 7d, 24h or 90m) nor an ISO date or time"
            " (like 2026-11-28 or 2026-11-28T12:00:00Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    cutoff = when.timestamp()
    if cutoff > now:
        raise ValueError(f"'{text}' is in the future")
    return cutoff


def parse_by(text: str) -> tuple[str, ...]:
    """``day,event,source,destination`` in any order and any subset (``""``: no keys, one
    row). ValueError names an unknown or repeated key and lists the keys.

    >>> parse_by("destination, day")
    ('destination', 'day')
    """
    if not text.strip():
        return ()
    out: list[str] = []
    for key in (k.strip() for k in text.split(",")):
        if key not in KEYS:
            near = ([k for k in KEYS if key and k.startswith(key)]
                    or difflib.get_close_matches(key, KEYS, n=1))
            hint = f"did you mean '{near[0]}'? " if near else ""
            raise ValueError(f"unknown key '{key}' ({hint}the keys are {', '.join(KEYS)})")
        if key in out:
            raise ValueError(f"'{key}' is given twice")
        out.append(key)
    return tuple(out)


def kinds_of(sources: Mapping[str, str]) -> dict[str, Kind]:
    """Source name -> kind, from the rules' sources (name -> type): ``browser`` for the
    browser source, ``backend`` for webhook and Segment sources."""
    return {name: "browser" if kind == "browser" else "backend" for name, kind in sources.items()}


# -- the fold ---------------------------------------------------------------------------

@dataclass(slots=True, eq=False)
class _Receive:
    day: str
    event: str
    source: str
    kind: Kind | None  # None: a source the rules no longer define
    counted: bool  # at or after the cutoff
    decided: set[str] = field(default_factory=set)  # destinations it decided a copy for
    duplicate_copies: int = 0
    spooled_copies: int = 0
    authority_duplicate: bool = False

    @property
    def duplicate(self) -> bool:
        """Answered as a duplicate, as the 202 body counts it: the authority had confirmed
        the event already, or every copy it routed was a duplicate."""
        return self.authority_duplicate or (self.duplicate_copies > 0
                                            and self.spooled_copies == 0)


@dataclass(slots=True, eq=False)
class _Copy:
    receive: _Receive
    destination: str | None  # None: a browser copy held for its authoritative source
    state: str


@dataclass(slots=True)
class Tally:
    """The counts of a period, cell by cell: ``copies`` per (day, event, source,
    destination) holds every column; ``events`` per (day, event, source) the receives
    (browser, backend, duplicates), for rows without a destination key."""

    copies: dict[tuple[str, str, str, str], list[int]] = field(default_factory=dict)
    events: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)

    def _copy_cell(self, r: _Receive, destination: str) -> list[int]:
        return self.copies.setdefault((r.day, r.event, r.source, destination),
                                      [0] * len(COLUMNS))

    def _event_cell(self, r: _Receive) -> list[int]:
        return self.events.setdefault((r.day, r.event, r.source), [0, 0, 0])


def _day(at: float) -> str:
    return _date(int(at // 86400))


@functools.lru_cache(maxsize=1024)
def _date(days: int) -> str:
    """The UTC date of a day number since the epoch (Unix time has no leap seconds)."""
    return datetime.fromtimestamp(days * 86400, UTC).strftime("%Y-%m-%d")


def fold(hops: Iterable[Hop], since: float, kinds: Mapping[str, Kind]) -> Tally:
    """Count ``hops`` (grouped by event, each event's in time order, as ``SQL`` gives
    them) into a ``Tally``: receives at or after ``since``, and the copies they led to."""
    tally = Tally()
    for _, hops_of_one in itertools.groupby(hops, key=itemgetter(0)):
        receives, copies = _follow(hops_of_one, since, kinds)
        _count(tally, receives, copies)
    return tally


def _follow(
    hops: Iterable[Hop], since: float, kinds: Mapping[str, Kind]
) -> tuple[list[_Receive], list[_Copy]]:
    """One event's receives and copies, each copy in the state its last hop left it."""
    receives: list[_Receive] = []
    copies: list[_Copy] = []
    early: list[tuple[str, str, _Receive]] = []
    for _, at, name, source, event, destination in hops:
        if name == "received":
            src = source or "?"
            receives.append(_Receive(_day(at), event or "?", src, kinds.get(src), at >= since))
        elif not receives:
            continue  # its receive is past the retention
        elif destination is None:
            _event_hop(name, receives[-1], copies)
        elif not _copy_hop(name, destination, receives[-1], copies):
            early.append((name, destination, receives[-1]))
    # A delivery stamped before the hop that spooled its copy: another worker or replica
    # took the copy from the spool and its clock said earlier. It goes where it would have.
    for name, destination, receive in early:
        _copy_hop(name, destination, receive, copies)
    return receives, copies


def _event_hop(name: str, latest: _Receive, copies: list[_Copy]) -> None:
    """A hop without a destination: a browser copy held for its authoritative source,
    confirmed by it (released), expired unconfirmed, or a duplicate of what it confirmed."""
    held = [c for c in copies if c.destination is None and c.state == "held"]
    if name == "held":
        copies.append(_Copy(latest, None, "held"))
    elif name == "released" and held:
        held[-1].state = "confirmed"  # the authority takes the latest copy held
    elif name == "expired" and held:
        held[0].state = "expired"  # the oldest runs out first
    elif name == "duplicate":
        latest.authority_duplicate = True
    # "expired" without a held copy closes a consent wait: its copies' hops say it all


def _oldest(copies: list[_Copy], destination: str, states: Sequence[str]) -> _Copy | None:
    for state in states:
        for c in copies:
            if c.destination == destination and c.state == state:
                return c
    return None


def _copy_hop(name: str, destination: str, latest: _Receive, copies: list[_Copy]) -> bool:
    """Follow one copy's hop; False for a delivery hop with no copy to go to (yet)."""
    if name in _DECISIONS and destination not in latest.decided:
        _decide(latest, destination, name, copies)
    elif name in _CONTINUES or name in _DECISIONS:
        # A consent wait ending: released, then spooled (or dropped, a duplicate);
        # suppressed when it expired or the choice denied the purpose.
        target = _oldest(copies, destination, _CONTINUES.get(name, ()))
        if target is not None:
            target.state = name
        elif name in _DECISIONS:
            _decide(latest, destination, name, copies)
    elif name in _DELIVERY:
        target = (_oldest(copies, destination, ("spooled", "retried", "released"))
                  or _newest(copies, destination, ("dead_lettered", "delivered")))
        if target is None:
            return False
        if target.state != "delivered":  # a redelivery stays one
            target.state = name
    return True


def _newest(copies: list[_Copy], destination: str, states: Sequence[str]) -> _Copy | None:
    for c in reversed(copies):
        if c.destination == destination and c.state in states:
            return c
    return None


def _decide(r: _Receive, destination: str, name: str, copies: list[_Copy]) -> None:
    r.decided.add(destination)
    r.duplicate_copies += name == "duplicate"
    r.spooled_copies += name == "spooled"
    copies.append(_Copy(r, destination, name))


def _count(tally: Tally, receives: list[_Receive], copies: list[_Copy]) -> None:
    with_copy: set[int] = set()
    for c in copies:
        r = c.receive
        if not r.counted:
            continue
        column = _STATE.get(c.state)
        if c.destination is None:  # held for the authority: on the no-destination row
            if column is not None:
                tally._copy_cell(r, NO_DESTINATION)[column] += 1
            continue
        if c.state == "dropped":
            continue
        with_copy.add(id(r))
        cell = tally._copy_cell(r, c.destination)
        if r.kind is not None:
            cell[_B if r.kind == "browser" else _K] += 1
        if column is not None:
            cell[column] += 1
    for r in receives:
        if not r.counted:
            continue
        kind = None if r.kind is None else (0 if r.kind == "browser" else 1)
        ev = tally._event_cell(r)
        if kind is not None:
            ev[kind] += 1
        ev[2] += r.duplicate
        if id(r) not in with_copy:
            cell = tally._copy_cell(r, NO_DESTINATION)
            if kind is not None:
                cell[_B if kind == 0 else _K] += 1
            cell[_DUP] += r.duplicate


# -- rows -------------------------------------------------------------------------------

Row = dict[str, str | int]


def rows(tally: Tally, by: Sequence[str]) -> list[Row]:
    """The rows of ``by`` (keys of ``KEYS``), in key order: days oldest first, names
    sorted, ``(none)`` after every destination. With no keys, one row (zeros when the
    period is empty); otherwise a row for each combination the period has."""
    at = [KEYS.index(k) for k in by]
    out: dict[tuple[str, ...], list[int]] = {}
    if "destination" in by:
        for cell_key, counts in tally.copies.items():
            row = out.setdefault(tuple(cell_key[i] for i in at), [0] * len(COLUMNS))
            for i, n in enumerate(counts):
                row[i] += n
    else:
        for event_key, (browser, backend, duplicates) in tally.events.items():
            row = out.setdefault(tuple(event_key[i] for i in at), [0] * len(COLUMNS))
            row[_B] += browser
            row[_K] += backend
            row[_DUP] += duplicates
        for cell_key, counts in tally.copies.items():
            row = out.setdefault(tuple(cell_key[i] for i in at), [0] * len(COLUMNS))
            for i in _COPY_COLUMNS:
                row[i] += counts[i]
    if not by:
        out.setdefault((), [0] * len(COLUMNS))

    def order(key: tuple[str, ...]) -> tuple[tuple[bool, str], ...]:
        return tuple((v == NO_DESTINATION and k == "destination", v) for k, v in zip(by, key,
                                                                                     strict=True))

    return [{**dict(zip(by, key, strict=True)), **dict(zip(COLUMNS, out[key], strict=True))}
            for key in sorted(out, key=order)]


def total(tally: Tally) -> Row:
    """The whole period's row (no keys): each receive once, however many destinations."""
    return rows(tally, ())[0]


# -- reading and the report -------------------------------------------------------------

async def tally(ledger: Ledger, since: float, kinds: Mapping[str, Kind]) -> Tally:
    """The ``Tally`` of everything received at or after ``since``, folded as the rows
    stream in on a connection of its own (``Ledger.scan``), so a running relay's writes
    never wait for it. ``SQL`` is the same on SQLite and PostgreSQL."""
    return await ledger.scan(SQL, (since,), lambda found: fold(found, since, kinds))


def report(counted: Tally, since: float, by: Sequence[str]) -> dict[str, object]:
    """The JSON of ``relay reconcile --format json`` and ``GET /reconcile.json``."""
    return {"since": iso(since), "by": list(by), "rows": rows(counted, by)}
