"""The admin listener's reconciliation page in headless Chromium, on a real relay: one chart
per destination with its table, the numbers the relay's ledger has, and the screenshot the
README shows (``docs/img/reconcile.png``, written by this test with RELAY_SCREENSHOTS=1).

The relay's ledger starts with six earlier days of traffic, written before it starts
through the ledger's own hop listener as a relay would have written them (so the charts
have days to compare), and gets today's events from real requests.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, expect

from ..e2e.rulesdir import webhook
from ..e2e.vendor import StandInVendor
from ..e2e.wire import (
    client,
    new_event_id,
    page_view,
    post_backend,
    post_browser,
    purchase,
    wait_until,
)
from ..ledger.hops import Feed, open_ledger
from .conftest import TIMEOUT_MS, MakeStack

# The README's screenshot; the test writes it there only with RELAY_SCREENSHOTS=1 (so a test
# run leaves the tree as it was), else beside the test's other files.
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "reconcile.png"
DAY = 86400.0
WAIT = 20.0
SERIES = ("received", "delivered", "suppressed", "dead-lettered")


def _day(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).date().isoformat()


def _history(var: Path, now: float) -> dict[tuple[str, str], tuple[int, int, int, int]]:
    """Six earlier days: page views (ads refused for one in four) and backend purchases (the
    crm refuses the first of each day). What each destination's table must show, per day:
    received, delivered, suppressed, dead-lettered."""
    want: dict[tuple[str, str], tuple[int, int, int, int]] = {}

    async def write() -> None:
        ledger = await open_ledger("sqlite:///" + str(var / "ledger.db"))
        feed = Feed(ledger)
        for back in range(6, 0, -1):
            noon = (now // DAY - back) * DAY + 12 * 3600
            day = _day(noon)
            views, orders = 10 + 3 * back, 2 + back % 3
            for k in range(views):
                eid, t = f"hist-pv-{back}-{k}", noon + k
                feed.received(eid, t, "browser", "page_view")
                for dest in ("analytics", "ads", "archive"):
                    if dest == "ads" and k % 4 == 0:
                        feed.suppressed(eid, t, "page_view", dest, "ads", "explicit")
                    else:
                        feed.spooled(eid, t, dest)
                        feed.delivered(eid, t + 1, dest)
            for k in range(orders):
                eid, t = f"hist-o-{back}-{k}", noon + 3600 + k
                feed.received(eid, t, "backend", "purchase")
                for dest in ("analytics", "ads", "archive", "crm"):
                    feed.spooled(eid, t, dest)
                    if dest == "crm" and k == 0:
                        feed.dead(eid, t + 1, dest)
                    else:
                        feed.delivered(eid, t + 1, dest)
            refused = (views + 3) // 4
            all_ = views + orders
            want[("analytics", day)] = (all_, all_, 0, 0)
            want[("ads", day)] = (all_, all_ - refused, refused, 0)
            want[("archive", day)] = (all_, all_, 0, 0)
            want[("crm", day)] = (orders, orders - 1, 0, 1)
        await ledger.close()

    # Playwright's sync API runs an event loop on this thread: the writing runs on another.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: asyncio.run(write())).result()
    return want


def test_the_reconcile_page_charts_and_tables_the_ledgers_numbers(
    stack: MakeStack, chromium: Browser, tmp_path: Path
) -> None:
    now = time.time()
    history = _history(tmp_path / "relay" / "var", now)  # the stack's relay works there
    refusing = StandInVendor(name="crm")
    refusing.respond(400)
    try:
        s = stack(destinations={"crm": webhook(refusing, events=["purchase"])})
        _today(s, refusing)
        _check_page(s, chromium, history, tmp_path / "reconcile.png")
    finally:
        refusing.close()


def _today(s: Any, refusing: StandInVendor) -> None:
    """Today's events, through the relay: a backend order (delivered everywhere but the crm,
    which refuses it), its browser copy after it (a duplicate), a page view from the US, one
    from the EU that refuses both purposes."""
    order = purchase(new_event_id("ord"))
    with client() as c:
        assert post_backend(c, s.relay, order).status_code == 202
        browser_copy = {k: v for k, v in order.items() if k != "context"}
        assert post_browser(c, s.relay, browser_copy).json()["duplicates"] == 1
        assert post_browser(c, s.relay, page_view()).status_code == 202
        denied = page_view(consent={"analytics": "denied", "ads": "denied"})
        assert post_browser(c, s.relay, denied, headers={"CF-IPCountry": "DE"}).status_code == 202

        def settled() -> bool:
            body = c.get(s.relay.admin_url("/reconcile.json"), params={"by": ""}).json()
            [total] = body["rows"]
            return bool(total["discrepancy"] == 0 and total["dead_lettered"] == 7)

        wait_until(settled, WAIT, "today's copies delivered or dead-lettered")
    assert refusing.attempts() == 1


def _check_page(s: Any, chromium: Browser,
                history: Mapping[tuple[str, str], tuple[int, ...]], scratch: Path) -> None:
    with client() as c:
        rows = c.get(s.relay.admin_url("/reconcile.json"),
                     params={"by": "day,destination"}).json()["rows"]
    expected: dict[str, list[list[str]]] = {}
    for r in rows:
        if r["destination"] == "(none)":
            continue
        numbers = (r["browser"] + r["backend"], r["delivered"], r["suppressed"],
                   r["dead_lettered"])
        if (r["destination"], r["day"]) in history:  # the earlier days: as written
            assert numbers == history[(r["destination"], r["day"])], r
        expected.setdefault(r["destination"], []).append([r["day"], *map(str, numbers)])
    # Today's, from the requests above (one day, or two across midnight UTC).
    today = {d: [sum(int(line[i]) for line in lines if (d, line[0]) not in history)
                 for i in range(1, 5)] for d, lines in expected.items()}
    assert today == {"ads": [3, 2, 1, 0], "analytics": [3, 2, 1, 0], "archive": [3, 2, 1, 0],
                     "crm": [1, 0, 0, 1]}

    ctx = s.context(chromium, viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(s.relay.admin_url("/reconcile") + "?by=destination")
    expect(page.get_by_role("heading", name="Relay: reconciliation")).to_be_visible()
    sections = page.locator("section")
    expect(sections).to_have_count(4)
    assert [sections.nth(i).locator("h3").inner_text() for i in range(4)] == [
        "ads", "analytics", "archive", "crm"]
    for i, dest in enumerate(("ads", "analytics", "archive", "crm")):
        section = sections.nth(i)
        chart = section.get_by_role("img")
        expect(chart).to_be_visible()
        box = chart.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 200
        assert chart.locator("title").first.text_content() == (
            f"{dest}: copies received, delivered, suppressed and dead-lettered per day")
        legend = chart.locator("g.legend text").all_text_contents()
        assert legend == list(SERIES)
        # The table under the chart: a line per day of the period (days with nothing
        # show 0), the numbers of the ledger, and its total.
        cells = section.locator("table tbody tr").evaluate_all(
            "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
        by_day = {line[0]: line for line in cells[:-1]}
        for line in expected[dest]:
            assert by_day[line[0]] == line, (dest, line)
        assert all(line[1:] == ["0"] * 4 for day, line in by_day.items()
                   if day not in {e[0] for e in expected[dest]})
        totals = [str(sum(int(line[i]) for line in expected[dest])) for i in range(1, 5)]
        assert cells[-1] == ["total", *totals]
        # Every bar carries its number, the same as the table's.
        bars = chart.locator("rect.bar title").all_text_contents()
        assert len(bars) == 4 * len(by_day)
        for day, line in by_day.items():
            for name, value in zip(SERIES, line[1:], strict=True):
                assert f"{day}: {name} {value}" in bars
        # The tallest bar is drawn tallest.
        heights = chart.locator("rect.bar").evaluate_all(
            "bars => bars.map(b => b.getBBox().height)")
        values = [int(b.rsplit(" ", 1)[1]) for b in bars]
        assert heights.index(max(heights)) == values.index(max(values))
    counts = page.get_by_role("table").last
    expect(counts.locator("tbody tr").last).to_contain_text("total")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOT if os.environ.get("RELAY_SCREENSHOTS") == "1" else scratch
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert SCREENSHOT.stat().st_size > 20_000
    ctx.close()
