"""``GET /reconcile`` (charts per day and destination, and the counts as tables) and
``GET /reconcile.json`` (what ``relay reconcile --format json`` prints) on the admin
listener. The numbers are ``relay.ledger.reconcile``'s; ``?since=`` and ``?by=`` are the
command's ``--since`` and ``--by``, with its defaults.

The page is rendered here, charts included (``relay.admin.chart``): no script, nothing
fetched from elsewhere. It names nothing but days, event, source and destination names
and counts.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from html import escape
from typing import TYPE_CHECKING

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from relay.admin.chart import Series, bar_chart
from relay.ledger import LedgerUnreadable, open_ledger
from relay.ledger.base import iso
from relay.ledger.reconcile import (
    COLUMNS,
    DEFAULT_BY,
    DEFAULT_SINCE,
    NO_DESTINATION,
    Row,
    Tally,
    kinds_of,
    parse_by,
    parse_since,
    report,
    rows,
    tally,
    total,
)

if TYPE_CHECKING:
    from relay.runtime import Runtime

NO_STORE = {"Cache-Control": "no-store"}
CHART_BY = ("day", "destination")
# The charts' series: (label, color, the row's number). Okabe-Ito colours, which stay
# apart for the common colour-vision deficiencies; the order is the same in every chart.
SERIES: tuple[tuple[str, str, Callable[[Row], int]], ...] = (
    ("received", "#0072B2", lambda r: int(r["browser"]) + int(r["backend"])),
    ("delivered", "#009E73", lambda r: int(r["delivered"])),
    ("suppressed", "#E69F00", lambda r: int(r["suppressed"])),
    ("dead-lettered", "#D55E00", lambda r: int(r["dead_lettered"])),
)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Asked:
    """``?since=``, ``?by=`` and ``?token=`` as given (the defaults when not)."""

    since: str = DEFAULT_SINCE
    by: str = ",".join(DEFAULT_BY)
    token: str | None = None

    @classmethod
    def of(cls, request: Request) -> Asked:
        q = request.query_params
        return cls(q.get("since") or DEFAULT_SINCE, q.get("by", ",".join(DEFAULT_BY)),
                   q.get("token"))


async def _counted(request: Request, now: float) -> tuple[Tally, float, tuple[str, ...]]:
    """The period's tally, its start and the keys asked for; ``_Refused`` (400 for a bad
    ``since`` or ``by``, 404 when the ledger is off)."""
    rt: Runtime = request.app.state.relay
    asked = Asked.of(request)
    try:
        since = parse_since(asked.since, now)
    except ValueError as exc:
        raise _Refused(400, f"since: {exc}") from None
    try:
        by = parse_by(asked.by)
    except ValueError as exc:
        raise _Refused(400, f"by: {exc}") from None
    ledger = rt.ledger
    if ledger is None:
        config = rt.rules.relay.ledger
        if config.url is None:
            raise _Refused(404, "the ledger is off (relay.ledger: off in the rules)")
        ledger = open_ledger(config.url, config.retention)
        if not ledger.present():  # nothing recorded yet
            return Tally(), since, by
    kinds = kinds_of({s.name: s.type for s in rt.rules.sources.values()})
    try:
        return await tally(ledger, since, kinds), since, by
    except LedgerUnreadable as exc:
        raise _Refused(503, f"cannot read the ledger: {exc}") from None


async def reconcile_json(request: Request) -> Response:
    try:
        counted, since, by = await _counted(request, time.time())
    except _Refused as refused:
        return Response(orjson.dumps({"error": str(refused)}), refused.status,
                        media_type="application/json", headers=NO_STORE)
    return Response(orjson.dumps(report(counted, since, by), option=orjson.OPT_INDENT_2),
                    media_type="application/json", headers=NO_STORE)


async def reconcile_page(request: Request) -> Response:
    now = time.time()
    asked = Asked.of(request)
    try:
        counted, since, by = await _counted(request, now)
    except _Refused as refused:
        body = f"{_HEAD}<h1>Relay: reconciliation</h1><p role=alert>{escape(str(refused))}</p>"
        return HTMLResponse(body + _form(asked), refused.status, headers=NO_STORE)
    return HTMLResponse(page(counted, since, by, now, asked), headers=NO_STORE)


def routes() -> list[Route]:
    return [Route("/reconcile", reconcile_page), Route("/reconcile.json", reconcile_json)]


# -- the page (pure) --------------------------------------------------------------------

_HEAD = """<!doctype html><html lang=en><meta charset=utf-8>
<meta name=viewport content="width=device-width,initial-scale=1">
<title>Relay: reconciliation</title>
<style>body{font:14px/1.4 system-ui,sans-serif;margin:1rem 2rem;color:#222;max-width:75rem}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}caption{text-align:left;font-weight:600;
padding:.25rem 0}th,td{border-bottom:1px solid #ddd;padding:.2rem .6rem}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f5f5f5}
tr.total td{font-weight:600;border-top:2px solid #999}figure{margin:0}
form{margin:.5rem 0 1rem}label{margin-right:1rem}input{font:inherit}
section{margin-bottom:1.5rem}svg{max-width:100%;height:auto}
.pair{display:flex;flex-wrap:wrap;gap:0 2rem;align-items:flex-start}
.pair figure{display:table}.pair figcaption{display:table-caption;caption-side:bottom}
figcaption{color:#555;font-size:13px;margin-bottom:.5rem}</style>
"""


def _form(asked: Asked) -> str:
    """The since and by fields, as given; the token goes along when it came in the URL."""
    hidden = (f'<input type=hidden name=token value="{escape(asked.token)}">'
              if asked.token else "")
    return (
        f'<form method=get action=reconcile>{hidden}'
        f'<label>since <input name=since value="{escape(asked.since)}" size=12'
        f' title="7d, 24h, 90m, or an ISO date like 2026-11-28"></label>'
        f'<label>by <input name=by value="{escape(asked.by)}" size=32'
        f' title="day, event, source, destination, comma-separated"></label>'
        f'<button>Show</button></form>')


def _days(counted: Tally, since: float, now: float) -> list[str]:
    """Every day from the period's first (or the first with a receive, when the ledger
    starts later) to today, UTC."""
    first = datetime.fromtimestamp(since, UTC).date()
    seen = sorted({key[0] for key in counted.copies})
    if seen:
        first = max(first, date.fromisoformat(seen[0]))
    today = datetime.fromtimestamp(now, UTC).date()
    if seen:
        today = max(today, date.fromisoformat(seen[-1]))
    return [date.fromordinal(d).isoformat()
            for d in range(first.toordinal(), today.toordinal() + 1)]


def _cell(value: str | int) -> str:
    if isinstance(value, int):
        return f"<td class=n>{value}</td>"
    return f"<td>{escape(value)}</td>"


def _table(caption: str, head: Sequence[str], body: Sequence[Sequence[str | int]],
           last: Sequence[str | int] | None = None, numeric_from: int = 1) -> str:
    cols = "".join(
        f'<th scope=col{" class=n" if i >= numeric_from else ""}>{escape(h)}</th>'
        for i, h in enumerate(head))
    lines = ["<tr>" + "".join(_cell(v) for v in line) + "</tr>" for line in body]
    if last is not None:
        lines.append("<tr class=total>" + "".join(_cell(v) for v in last) + "</tr>")
    return (f"<table><caption>{escape(caption)}</caption><thead><tr>{cols}</tr></thead>"
            f"<tbody>{''.join(lines)}</tbody></table>")


def _chart_section(n: int, destination: str, days: list[str],
                   by_day: dict[str, Row]) -> str:
    zero: Row = {c: 0 for c in COLUMNS}
    series = [Series(label, color, [number(by_day.get(d, zero)) for d in days])
              for label, color, number in SERIES]
    title = f"{destination}: copies received, delivered, suppressed and dead-lettered per day"
    svg = bar_chart(f"chart{n}", title, days, series)
    body: list[list[str | int]] = [[d, *(s.values[i] for s in series)]
                                   for i, d in enumerate(days)]
    last: list[str | int] = ["total", *(sum(s.values) for s in series)]
    table = _table(f"{destination}, per day", ["day", *(s.label for s in series)], body, last)
    return (f"<section><h3>{escape(destination)}</h3><div class=pair><figure>{svg}"
            f"<figcaption>received: the copies {escape(destination)} was to get (from"
            f" browser and backend sources); the table has the same numbers.</figcaption>"
            f"</figure>{table}</div></section>")


def page(counted: Tally, since: float, by: Sequence[str], now: float,
         asked: Asked | None = None) -> str:
    """The whole page: the charts per destination, then the counts of ``by``."""
    asked = asked or Asked()
    days = _days(counted, since, now)
    per: dict[str, dict[str, Row]] = {}
    for r in rows(counted, CHART_BY):
        if r["destination"] != NO_DESTINATION:
            per.setdefault(str(r["destination"]), {})[str(r["day"])] = r
    json_link = "reconcile.json?" + urllib.parse.urlencode(
        {"since": asked.since, "by": asked.by, **({"token": asked.token} if asked.token else {})})
    out = [
        _HEAD, "<h1>Relay: reconciliation</h1>",
        f"<p>Events received since <time datetime=\"{iso(since)}\">{iso(since)}</time> (UTC)"
        f" until now, from the delivery ledger: the numbers of <code>relay reconcile</code>"
        f" (docs/cli.md says how each is counted). <a href=\"{escape(json_link)}\">JSON</a></p>",
        _form(asked),
        "<h2>Per day and destination</h2>",
    ]
    if not per:
        out.append("<p>No copies for any destination in this period.</p>")
    for n, destination in enumerate(sorted(per)):
        out.append(_chart_section(n, destination, days, per[destination]))
    found = rows(counted, by)
    head = [*by, *COLUMNS] if by else ["", *COLUMNS]
    body: list[list[str | int]] = [[*(str(r[k]) for k in by), *(int(r[c]) for c in COLUMNS)]
                                   for r in found]
    everything = total(counted)
    last: list[str | int] = ["total", *([""] * (len(by) - 1)),
                             *(int(everything[c]) for c in COLUMNS)]
    out.append(f"<h2>Counts by {escape(', '.join(by) or 'nothing')}</h2>")
    out.append(_table(f"every column, by {', '.join(by) or 'nothing'}; the total counts"
                      f" each event once", head, body if by else [], last,
                      numeric_from=max(len(by), 1)))
    return "\n".join(out)

