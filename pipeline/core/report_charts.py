"""Vector drawings for the PDF: colour legend, scale bar with north arrow, histogram.

Every colour comes from `ramp_colours` — the heatmap's own colour table and palette index
(`pipeline.core.ramps.colours`) — so a colour on the legend means the value it means on the map.
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
from reportlab.graphics.shapes import Drawing, Line, Polygon, Rect, String
from reportlab.lib import colors

from pipeline.core import ramps
from pipeline.core.values import Histogram, Scale

FONT = "Helvetica"
FONT_SIZE = 8


def ramp_colours(scale: Scale, values: np.ndarray) -> list[colors.Color]:
    """The heatmap colour of each value (clipped to the scale), from the heatmap's colour table."""
    rgb = (ramps.colours(scale, values)[:, :3] / 255.0).tolist()  # floats, not numpy's
    return [colors.Color(r, g, b) for r, g, b in rgb]


def _fmt(value: float, span: float = 1.0) -> str:
    """Two decimals for index-sized ranges, one for tens (°C), none beyond."""
    digits = 2 if span < 10 else 1 if span < 100 else 0
    return f"{value:.{digits}f}"


def legend(scale: Scale, *, width: float, unit: str = "", steps: int = 128) -> Drawing:
    """A horizontal colour bar from vmin to vmax with the `legend_stops` values printed under it."""
    bar_h, pad = 10.0, 12.0
    drawing = Drawing(width, bar_h + 24)
    x0, x1 = pad, width - pad
    y = 14.0
    edges = np.linspace(x0, x1, steps + 1)
    centres = scale.vmin + (np.arange(steps) + 0.5) / steps * (scale.vmax - scale.vmin)
    for (a, b), colour in zip(zip(edges[:-1], edges[1:]), ramp_colours(scale, centres), strict=True):
        drawing.add(Rect(a, y, b - a + 0.3, bar_h, fillColor=colour, strokeColor=None))
    drawing.add(Rect(x0, y, x1 - x0, bar_h, fillColor=None, strokeColor=colors.black, strokeWidth=0.5))
    for value, _rgb in ramps.legend_stops(scale, n=6):
        x = x0 + (value - scale.vmin) / (scale.vmax - scale.vmin) * (x1 - x0)
        drawing.add(Line(x, y, x, y - 3, strokeWidth=0.5))
        drawing.add(String(x, 2, _fmt(value, scale.vmax - scale.vmin), fontName=FONT, fontSize=FONT_SIZE, textAnchor="middle"))
    caption = f"{unit}   white on the map: no data" if unit else "white on the map: no data"
    drawing.add(String(x1, y + bar_h + 2, caption, fontName=FONT, fontSize=FONT_SIZE, textAnchor="end"))
    return drawing


def round_length(target_m: float) -> float:
    """The largest 1, 2 or 5 × 10^k metres not above `target_m`."""
    if target_m <= 0:
        raise ValueError("scale bar length must be positive")
    power = 10 ** math.floor(math.log10(target_m))
    return max(m * power for m in (1, 2, 5) if m * power <= target_m)


def _length_label(metres: float) -> str:
    if metres >= 1000:
        return f"{metres / 1000:g} km"
    return f"{metres:g} m" if metres >= 1 else f"{metres * 100:g} cm"


def scale_bar(*, width: float, map_width_pt: float, ground_width_m: float | None) -> Drawing:
    """Scale bar (a round length, about a quarter of the map) and a grid-north arrow.

    `ground_width_m` None (a geographic CRS) leaves out the bar and says so."""
    drawing = Drawing(width, 30)
    if ground_width_m and ground_width_m > 0 and map_width_pt > 0:
        metres = round_length(ground_width_m / 4)
        length = metres / ground_width_m * map_width_pt
        x0, y0 = 4.0, 14.0
        half = length / 2
        drawing.add(Rect(x0, y0, half, 4, fillColor=colors.black, strokeColor=colors.black, strokeWidth=0.5))
        drawing.add(Rect(x0 + half, y0, half, 4, fillColor=colors.white, strokeColor=colors.black, strokeWidth=0.5))
        drawing.add(String(x0, 2, "0", fontName=FONT, fontSize=FONT_SIZE, textAnchor="middle"))
        drawing.add(String(x0 + length, 2, _length_label(metres), fontName=FONT, fontSize=FONT_SIZE,
                           textAnchor="middle"))
    else:
        drawing.add(String(4, 10, "no scale bar: the grid's CRS is not in metres", fontName=FONT,
                           fontSize=FONT_SIZE))
    ax = min(width - 40, map_width_pt - 30) if map_width_pt > 120 else width - 40
    drawing.add(Polygon([ax, 26, ax - 5, 10, ax, 14, ax + 5, 10], fillColor=colors.black, strokeColor=colors.black))
    drawing.add(String(ax, 0, "N", fontName=FONT + "-Bold", fontSize=FONT_SIZE + 1, textAnchor="middle"))
    drawing.add(String(ax + 10, 14, "grid north", fontName=FONT, fontSize=FONT_SIZE))
    return drawing


def histogram(hist: Histogram, *, scale: Scale | None, width: float, height: float,
              unit: str = "") -> Drawing:
    """Bars of pixel counts per bin, each coloured as the heatmap colours its bin centre."""
    drawing = Drawing(width, height)
    left, bottom, top = 40.0, 26.0, 8.0
    plot_w, plot_h = width - left - 10, height - bottom - top
    lo, hi = hist.edges[0], hist.edges[-1]
    peak = max(max(hist.counts), 1)
    centres = np.array([(a + b) / 2 for a, b in zip(hist.edges[:-1], hist.edges[1:])])
    fills = ramp_colours(scale, centres) if scale else [colors.grey] * len(centres)
    for a, b, count, fill in zip(hist.edges[:-1], hist.edges[1:], hist.counts, fills, strict=True):
        x = left + (a - lo) / (hi - lo) * plot_w
        w = (b - a) / (hi - lo) * plot_w
        drawing.add(Rect(x, bottom, w, count / peak * plot_h, fillColor=fill, strokeColor=colors.white,
                         strokeWidth=0.2))
    drawing.add(Line(left, bottom, left + plot_w, bottom, strokeWidth=0.5))
    drawing.add(Line(left, bottom, left, bottom + plot_h, strokeWidth=0.5))
    for value in np.linspace(lo, hi, 6):
        x = left + (value - lo) / (hi - lo) * plot_w
        drawing.add(Line(x, bottom, x, bottom - 3, strokeWidth=0.5))
        drawing.add(String(x, bottom - 12, _fmt(float(value), hi - lo), fontName=FONT, fontSize=FONT_SIZE,
                           textAnchor="middle"))
    drawing.add(String(left - 4, bottom + plot_h - 6, f"{peak:,}", fontName=FONT, fontSize=FONT_SIZE,
                       textAnchor="end"))
    drawing.add(String(left - 4, bottom - 3, "0", fontName=FONT, fontSize=FONT_SIZE, textAnchor="end"))
    drawing.add(String(left + plot_w / 2, 2, f"value{f' ({unit})' if unit else ''} — pixels per bin",
                       fontName=FONT, fontSize=FONT_SIZE, textAnchor="middle"))
    return drawing


def series_chart(series: dict[str, list[tuple[datetime, float]]], *, width: float,
                 panel_h: float = 70.0, columns: int = 3, vmin: float = -0.2,
                 vmax: float = 1.0) -> Drawing:
    """Small multiples: one panel per field ("" = whole grid) with its mean per flight over time,
    on a shared y axis [vmin, vmax] (the index's scale) so panels compare at a glance."""
    names = sorted(series, key=lambda z: (z != "", z))
    rows = max(1, math.ceil(len(names) / columns))
    panel_w = width / columns
    drawing = Drawing(width, rows * panel_h)
    times = [t.timestamp() for points in series.values() for t, _ in points]
    t0, t1 = (min(times), max(times)) if times else (0.0, 1.0)
    span = (t1 - t0) or 1.0
    for i, name in enumerate(names):
        col, row = i % columns, i // columns
        x0 = col * panel_w + 24
        y0 = (rows - row - 1) * panel_h + 14
        w, h = panel_w - 32, panel_h - 28
        drawing.add(Rect(x0, y0, w, h, fillColor=None, strokeColor=colors.grey, strokeWidth=0.4))
        drawing.add(String(x0, y0 + h + 3, name or "whole grid", fontName=FONT, fontSize=7))
        for value in (vmin, vmax):
            drawing.add(String(x0 - 2, y0 + (value - vmin) / (vmax - vmin) * h - 2, f"{value:g}",
                               fontName=FONT, fontSize=6, textAnchor="end"))
        points = [(x0 + ((t.timestamp() - t0) / span if len(times) > 1 else 0.5) * w,
                   y0 + (min(max(v, vmin), vmax) - vmin) / (vmax - vmin) * h)
                  for t, v in sorted(series[name])]
        for (xa, ya), (xb, yb) in zip(points, points[1:]):
            drawing.add(Line(xa, ya, xb, yb, strokeColor=colors.HexColor("#1a7f37"), strokeWidth=1))
        for x, y in points:
            drawing.add(Rect(x - 1.5, y - 1.5, 3, 3, fillColor=colors.HexColor("#1a7f37"),
                             strokeColor=None))
        if points:
            first, last = sorted(series[name])[0][0], sorted(series[name])[-1][0]
            drawing.add(String(x0, y0 - 9, f"{first:%d %b}", fontName=FONT, fontSize=6))
            drawing.add(String(x0 + w, y0 - 9, f"{last:%d %b}", fontName=FONT, fontSize=6,
                               textAnchor="end"))
    return drawing
