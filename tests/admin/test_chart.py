"""The admin pages' SVG bar chart: its axis, its bars, what it says to a screen reader."""

from __future__ import annotations

import doctest
import xml.etree.ElementTree as ET

from relay.admin import chart
from relay.admin.chart import Series, bar_chart, nice_top

NS = "{http://www.w3.org/2000/svg}"


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(chart).failed == 0


def test_the_axis_top_is_a_round_number_above_the_largest() -> None:
    for most in (0, 1, 3, 5, 6, 9, 10, 11, 49, 50, 51, 99, 100, 101, 999, 12345):
        top, step = nice_top(most)
        assert top >= most and top % step == 0 and top // step <= 5
        assert str(step).strip("0") in ("1", "2", "5")
        assert top - most < step or most == 0


def test_bars_titles_legend_and_escaping() -> None:
    svg = bar_chart("x", "a <b> & c", ["2026-11-28", "2026-11-29"],
                    [Series("received", "#0072B2", [5, 0]), Series("dead-lettered", "#D55E00",
                                                                    [1, 2])])
    root = ET.fromstring(svg)
    assert root.get("role") == "img" and root.get("aria-labelledby") == "x-title x-desc"
    assert root.findtext(f"{NS}title") == "a <b> & c"
    desc = root.findtext(f"{NS}desc") or ""
    assert "2026-11-28 to 2026-11-29" in desc and "received 5, dead-lettered 3" in desc
    bars = [r for r in root.iter(f"{NS}rect") if r.get("class") == "bar"]
    assert [b.findtext(f"{NS}title") for b in bars] == [
        "2026-11-28: received 5", "2026-11-28: dead-lettered 1",
        "2026-11-29: received 0", "2026-11-29: dead-lettered 2"]
    heights = [float(b.get("height") or 0) for b in bars]
    assert heights[2] == 0 and heights[0] == max(heights)  # 5 is the top of the axis
    assert heights[0] == 5 * heights[1]
    texts = {t.text for t in root.iter(f"{NS}text")}
    assert {"received", "dead-lettered", "11-28", "11-29", "copies",
            "day received (UTC)"} <= texts
