"""A grouped bar chart as inline SVG (pure): one group of bars per day, one bar per series.

Server-rendered for the admin pages: no script, no external asset. It is accessible as an
image with a title and a description (``role="img"``, ``aria-labelledby``); every bar has a
``<title>`` (the browser shows it on hover) with its day, series and number; the axes are
labelled and the legend is part of the image. The page puts a table of the same numbers
under it.

    >>> svg = bar_chart("c1", "ga4", ["2026-11-28"], [Series("delivered", "#009E73", [3])])
    >>> svg.count('<rect class="bar"'), "2026-11-28: delivered 3" in svg
    (1, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

HEIGHT = 280
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 16, 44, 52
GROUP = 64  # px per day, up to MAX_PLOT
MIN_PLOT, MAX_PLOT = 320, 960
LABEL_EVERY = 44  # px a day label needs
FONT = "font-family:system-ui,sans-serif;font-size:12px"


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    color: str
    values: Sequence[int]


def nice_top(most: int) -> tuple[int, int]:
    """The axis top and tick step for a largest value: a step of 1, 2 or 5 times a power of
    ten, at most five steps.

    >>> nice_top(0), nice_top(7), nice_top(10), nice_top(1234)
    ((1, 1), (8, 2), (10, 2), (1500, 500))
    """
    if most <= 0:
        return 1, 1
    power = 10 ** max(0, int(math.log10(most)) - 1)  # most / power < 100
    for factor in (1, 2, 5, 10, 20):
        step = factor * power
        if math.ceil(most / step) <= 5:
            return math.ceil(most / step) * step, step
    return most, most  # not reached: 20 * power > most / 5


def bar_chart(ident: str, title: str, days: Sequence[str], series: Sequence[Series],
              y_label: str = "copies", x_label: str = "day received (UTC)") -> str:
    """The SVG of one chart. ``ident`` makes its element ids unique on the page."""
    n = max(len(days), 1)
    plot_w = min(MAX_PLOT, max(MIN_PLOT, n * GROUP))
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    width = MARGIN_LEFT + plot_w + MARGIN_RIGHT
    top, step = nice_top(max((v for s in series for v in s.values), default=0))
    group = plot_w / n
    bar = group * 0.8 / max(len(series), 1)

    def y(value: float) -> float:
        return MARGIN_TOP + plot_h - plot_h * value / top

    totals = ", ".join(f"{s.label} {sum(s.values)}" for s in series)
    span = f"{days[0]} to {days[-1]}" if days else "no days"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" width="{width}"'
        f' height="{HEIGHT}" viewBox="0 0 {width} {HEIGHT}"'
        f' aria-labelledby="{ident}-title {ident}-desc" style="{FONT}">',
        f'<title id="{ident}-title">{escape(title)}</title>',
        f'<desc id="{ident}-desc">{escape(y_label)} per day, {span}: totals {escape(totals)}.'
        f' The table under the chart has every number.</desc>',
    ]
    for tick in range(0, top + 1, step):  # grid lines and the y axis' numbers
        ty = y(tick)
        out.append(f'<line x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT + plot_w}" y1="{ty:.1f}"'
                   f' y2="{ty:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{MARGIN_LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end">{tick}'
                   f'</text>')
    every = max(1, math.ceil(LABEL_EVERY / group))
    for i, day in enumerate(days):
        x0 = MARGIN_LEFT + i * group + group * 0.1
        for j, s in enumerate(series):
            value = s.values[i]
            bx, by = x0 + j * bar, y(value)
            out.append(
                f'<rect class="bar" x="{bx:.1f}" y="{by:.1f}" width="{max(bar - 1, 1):.1f}"'
                f' height="{MARGIN_TOP + plot_h - by:.1f}" fill="{s.color}">'
                f'<title>{escape(day)}: {escape(s.label)} {value}</title></rect>')
        if i % every == 0:
            out.append(f'<text x="{MARGIN_LEFT + (i + 0.5) * group:.1f}"'
                       f' y="{MARGIN_TOP + plot_h + 16}" text-anchor="middle">'
                       f'{escape(day[5:])}</text>')
    bottom = MARGIN_TOP + plot_h
    out += [
        f'<line x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT + plot_w}" y1="{bottom}" y2="{bottom}"'
        f' stroke="#444"/>',
        f'<line x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT}" y1="{MARGIN_TOP}" y2="{bottom}"'
        f' stroke="#444"/>',
        f'<text x="{MARGIN_LEFT + plot_w / 2:.1f}" y="{HEIGHT - 10}" text-anchor="middle">'
        f'{escape(x_label)}</text>',
        f'<text transform="translate(14 {MARGIN_TOP + plot_h / 2:.1f}) rotate(-90)"'
        f' text-anchor="middle">{escape(y_label)}</text>',
    ]
    lx = MARGIN_LEFT
    out.append('<g class="legend">')
    for s in series:  # the legend, above the plot
        out.append(f'<rect x="{lx}" y="14" width="12" height="12" fill="{s.color}"/>'
                   f'<text x="{lx + 16}" y="24">{escape(s.label)}</text>')
        lx += 28 + 7 * len(s.label)
    out.append("</g></svg>")
    return "\n".join(out)
