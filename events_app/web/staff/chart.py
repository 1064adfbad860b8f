"""Small inline SVG charts drawn on the server, so they need no JavaScript and no library.

`buckets()` counts moments per day (or per week, when a day per bar would not fit) in a time
zone; `bar_chart()` draws them with labelled axes, dates and whole-number gridlines, and the same
figures as a table beside it. Every bar carries `data-start` and `data-count` and a <title>, so
screen readers, tests and curious people can read the exact numbers behind the picture.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from ... import timefmt

MAX_BARS = 60
# Inside each chart (the layout's own chart rules are less specific): text in the page's ink at a
# size that stays readable when the chart shrinks to a phone's width; axes and gridlines grey.
STYLE = (
    "svg.chart text{font-size:13px;fill:#1b1f24;font-family:inherit}"
    "svg.chart .axis-title{font-weight:600}"
    "svg.chart .axis{stroke:#4a5361;stroke-width:1.5}"
    "svg.chart .grid{stroke:#d5dbe3;stroke-width:1}"
)


def buckets(
    moments: list[datetime], tz: str, first: date | None = None, last: date | None = None, max_bars: int = MAX_BARS
) -> list[dict]:
    """Counts of `moments` per day in zone `tz`, from `first` (default: the earliest moment's day)
    to `last` (default: the latest); several days per bucket when the span exceeds `max_bars`.
    Each bucket: {start, end (inclusive dates), count}."""
    zone = ZoneInfo(tz)
    days = [timefmt.in_zone(m, zone).date() for m in moments]
    if first is None:
        first = min(days) if days else None
    if last is None:
        last = max(days) if days else first
    if first is None or last is None:
        return []
    if last < first:
        first, last = last, first
    span = (last - first).days + 1
    width = max(1, math.ceil(span / max_bars))
    if width > 1:
        width = 7 * math.ceil(width / 7)  # whole weeks read better than "every 3 days"
    count = math.ceil(span / width)
    out: list[dict[str, Any]] = [
        {
            "start": first + timedelta(days=i * width),
            "end": min(first + timedelta(days=(i + 1) * width - 1), last),
            "count": 0,
        }
        for i in range(count)
    ]
    for day in days:
        if first <= day <= last:
            out[(day - first).days // width]["count"] += 1
    return out


def cumulative(items: list[dict], before: int = 0) -> list[dict]:
    """The same buckets holding running totals (starting from `before`)."""
    total, out = before, []
    for b in items:
        total += b["count"]
        out.append({**b, "count": total})
    return out


def _label(b: dict) -> str:
    if b["start"] == b["end"]:
        return b["start"].isoformat()
    return f"{b['start'].isoformat()} to {b['end'].isoformat()}"


def _day(d: date, year: bool = True) -> str:
    """'Tue 1 Dec 2026' (or '1 Dec' on the axis)."""
    return f"{d:%a} {d.day} {d:%b %Y}" if year else f"{d.day} {d:%b}"


def _spoken(b: dict) -> str:
    if b["start"] == b["end"]:
        return _day(b["start"])
    return f"{_day(b['start'])} to {_day(b['end'])}"


def _ticks(peak: int) -> list[int]:
    """Whole-number gridlines from 0 to at least `peak`: 0, step, 2 step... (at most 5)."""
    step = 1
    for candidate in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        step = candidate
        if peak / candidate <= 4:
            break
    else:
        step = math.ceil(peak / 4)
    top = step * math.ceil(max(peak, 1) / step)
    return list(range(0, top + 1, step))


def bar_chart(
    items: list[dict],
    *,
    title: str,
    unit: str = "registrations",
    width: int = 440,
    height: int = 220,
    chart_id: str = "chart",
    y_label: str | None = None,
    zone: str | None = None,
) -> Markup:
    """An accessible SVG bar chart of `buckets()`, readable at 390 px: a y axis with whole-number
    gridlines and its label (`y_label`, default the unit per day or week), dates under the x axis
    with the zone they are counted in, `role="img"` with a title and a description, and the same
    figures as a table (in a <details>) for anyone who cannot see the picture. An empty list
    draws a note instead."""
    if not items:
        return Markup(f'<p class="hint">No {escape(unit)} yet.</p>')
    weekly = any(b["start"] != b["end"] for b in items)
    period = "week" if weekly else "day"
    y_text = y_label or f"{unit.capitalize()} per {period}"
    x_text = ("Week starting" if weekly else "Day") + (f" ({zone})" if zone else "")
    left, right, bottom, top = 48, 10, 52, 28
    plot_w, plot_h = width - left - right, height - bottom - top
    peak = max(b["count"] for b in items)
    ticks = _ticks(peak)
    scale_top = ticks[-1] or 1
    step = plot_w / len(items)
    bar_w = min(max(1.0, step * 0.8), 40.0)  # a lone bar stays a bar, not a block
    total = sum(b["count"] for b in items)
    cid = escape(chart_id)
    base_y = top + plot_h
    parts = [
        f'<figure class="chart-figure"><svg class="chart" id="{cid}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-labelledby="{cid}-t {cid}-d" data-total="{total}">',
        f'<title id="{cid}-t">{escape(title)}</title>',
        f"<style>{STYLE}</style>",
        f'<desc id="{cid}-d">{escape(y_text)}, {len(items)} bar{"s" if len(items) != 1 else ""} from '
        f"{escape(_spoken(items[0]))} to {escape(_spoken(items[-1]))}; highest {peak}, "
        f"{total} in all. The table below the chart lists every figure.</desc>",
        f'<text class="axis-title" x="4" y="14">{escape(y_text)}</text>',
    ]
    for t in ticks:
        y = base_y - plot_h * t / scale_top
        parts.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{t}</text>')
    for i, b in enumerate(items):
        h = plot_h * b["count"] / scale_top
        x = left + i * step + (step - bar_w) / 2
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{base_y - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
            f'data-start="{b["start"].isoformat()}" data-end="{b["end"].isoformat()}" data-count="{b["count"]}">'
            f"<title>{escape(_spoken(b))}: {b['count']} {escape(unit)}</title></rect>"
        )
    parts.append(f'<line class="axis" x1="{left}" y1="{base_y}" x2="{width - right}" y2="{base_y}"/>')
    parts.append(f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{base_y}"/>')
    # Dates under the axis: the first, the last and up to two between, never overlapping.
    shown = sorted({0, len(items) - 1, *(round(k * (len(items) - 1) / 3) for k in (1, 2))})
    if len(items) < 4:
        shown = list(range(len(items)))
    for i in shown:
        x = left + i * step + step / 2
        anchor = "start" if i == 0 and len(items) > 1 else "end" if i == len(items) - 1 and len(items) > 1 else "middle"
        if anchor == "start":
            x = left
        elif anchor == "end":
            x = width - right
        parts.append(
            f'<text class="x-tick" x="{x:.1f}" y="{base_y + 18}" text-anchor="{anchor}" '
            f'data-day="{items[i]["start"].isoformat()}">{escape(_day(items[i]["start"], year=False))}</text>'
        )
    parts.append(
        f'<text class="axis-title" x="{left + plot_w / 2:.1f}" y="{height - 8}" text-anchor="middle">'
        f"{escape(x_text)}</text>"
    )
    parts.append("</svg>")
    rows = "".join(
        f'<tr><th scope="row">{escape(_spoken(b))}</th><td class="num">{b["count"]}</td></tr>' for b in items
    )
    parts.append(
        f'<details class="chart-table"><summary>{escape(title)}: the figures as a table</summary>'
        f'<div class="table-wrap" tabindex="0" role="region" aria-label="{escape(title)}: figures">'
        f'<table id="{cid}-table"><thead><tr><th scope="col">{escape(x_text)}</th>'
        f'<th scope="col" class="num">{escape(y_text)}</th></tr></thead><tbody>{rows}</tbody></table></div>'
        "</details></figure>"
    )
    return Markup("".join(parts))
