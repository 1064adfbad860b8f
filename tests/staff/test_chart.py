"""The dashboard chart reads on its own (issue 14): labelled axes with units, dates under the x
axis, whole-number gridlines, a description for screen readers and the figures as a table."""

from __future__ import annotations

import re
from datetime import date, timedelta

from events_app.web.staff import chart


def items(days: int, start: date = date(2026, 11, 2)) -> list[dict]:
    return [{"start": start + timedelta(days=i), "end": start + timedelta(days=i), "count": i % 4} for i in range(days)]


def test_axes_are_labelled_with_dates_and_units():
    svg = str(chart.bar_chart(items(20), title="New registrations per day for Talk", chart_id="c",
                              y_label="New registrations", zone="America/Toronto"))
    assert 'role="img" aria-labelledby="c-t c-d"' in svg
    assert '<text class="axis-title" x="4" y="14">New registrations</text>' in svg
    assert ">Day (America/Toronto)</text>" in svg
    ticks = re.findall(r'<text class="x-tick"[^>]*>([^<]+)</text>', svg)
    assert ticks[0] == "2 Nov" and ticks[-1] == "21 Nov" and 2 <= len(ticks) <= 4
    assert re.findall(r'text-anchor="end">(\d+)</text>', svg) == ["0", "1", "2", "3"]  # whole numbers only
    desc = re.search(r'<desc id="c-d">(.*?)</desc>', svg).group(1)
    assert "from Mon 2 Nov 2026 to Sat 21 Nov 2026" in desc and "highest 3" in desc


def test_the_figures_are_also_a_table():
    data = items(5)
    html = str(chart.bar_chart(data, title="T", chart_id="c", unit="subscribers"))
    table = html.split('<table id="c-table">')[1]
    rows = re.findall(r'<tr><th scope="row">([^<]+)</th><td class="num">(\d+)</td></tr>', table)
    assert rows == [(f"{d['start']:%a} {d['start'].day} {d['start']:%b %Y}", str(d["count"])) for d in data]
    assert '<th scope="col" class="num">Subscribers per day</th>' in table


def test_weeks_are_named_as_weeks_and_gridlines_stay_few():
    weekly = [{"start": date(2026, 1, 5) + timedelta(weeks=i), "end": date(2026, 1, 11) + timedelta(weeks=i),
               "count": 37 * i} for i in range(10)]
    svg = str(chart.bar_chart(weekly, title="T", chart_id="w", zone="UTC"))
    assert ">Week starting (UTC)</text>" in svg and "Registrations per week" in svg
    assert re.findall(r'text-anchor="end">(\d+)</text>', svg) == ["0", "100", "200", "300", "400"]
