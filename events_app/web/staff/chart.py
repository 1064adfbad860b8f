"""Small inline SVG charts drawn on the server, so they need no JavaScript and no library.

`buckets()` counts moments per day (or per week, when a day per bar would not fit) in a time
zone; `bar_chart()` draws them. Every bar carries `data-start` and `data-count` and a <title>, so
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


def bar_chart(
    items: list[dict],
    *,
    title: str,
    unit: str = "registrations",
    width: int = 600,
    height: int = 150,
    chart_id: str = "chart",
) -> Markup:
    """An accessible SVG bar chart of `buckets()`; an empty list draws a note instead."""
    if not items:
        return Markup(f'<p class="hint">No {escape(unit)} yet.</p>')
    left, bottom, top = 34, 22, 8
    plot_w, plot_h = width - left - 4, height - bottom - top
    peak = max(b["count"] for b in items) or 1
    step = plot_w / len(items)
    bar_w = min(max(1.0, step * 0.8), 48.0)  # a lone bar stays a bar, not a block
    total = sum(b["count"] for b in items)
    parts = [
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-labelledby="{escape(chart_id)}-t {escape(chart_id)}-d" data-total="{total}">',
        f'<title id="{escape(chart_id)}-t">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-d">{len(items)} bars from {escape(_label(items[0]))} to '
        f"{escape(_label(items[-1]))}; highest {peak} {escape(unit)}.</desc>",
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{width - 4}" y2="{top + plot_h}"/>',
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}"/>',
        f'<text x="{left - 4}" y="{top + 10}" text-anchor="end">{peak}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>',
    ]
    for i, b in enumerate(items):
        h = plot_h * b["count"] / peak
        x = left + i * step + (step - bar_w) / 2
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
            f'data-start="{b["start"].isoformat()}" data-end="{b["end"].isoformat()}" data-count="{b["count"]}">'
            f"<title>{escape(_label(b))}: {b['count']} {escape(unit)}</title></rect>"
        )
    parts.append(f'<text x="{left}" y="{height - 6}">{items[0]["start"].isoformat()}</text>')
    if len(items) > 1:
        parts.append(f'<text x="{width - 4}" y="{height - 6}" text-anchor="end">{items[-1]["end"].isoformat()}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
