"""The dashboard: upcoming events with their numbers, a registrations chart drawn from the real
rows, attendance of past events; and the chart module on its own."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import httpx

from events_app import db
from events_app.domain import events, registrant_admin, registrations
from events_app.web.staff import chart
from factories import published_event

ZONE = ZoneInfo("America/Toronto")


def bars(html: str, event_id: int) -> dict[str, int]:
    svg = re.search(rf'<svg class="chart" id="reg-chart-{event_id}".*?</svg>', html, re.S).group(0)
    return {start: int(n) for start, n in re.findall(r'data-start="([\d-]+)" data-end="[\d-]+" data-count="(\d+)"', svg)}


async def test_chart_counts_the_registrations_made_each_day(client, csrf):
    event = await published_event(capacity=3, title="Charted webinar")
    await db.fetch("UPDATE event SET created_at = {} WHERE id = {}",
                   datetime.now(timezone.utc) - timedelta(days=6), event["id"])
    today = datetime.now(ZONE).replace(hour=12, minute=0, second=0, microsecond=0)
    # Days ago -> registrations made that day (noon, Toronto time); one of them cancels later.
    plan = {5: 2, 3: 1, 0: 3}
    made = []
    for days_ago, n in plan.items():
        for i in range(n):
            reg = await registrations.register(event, {"name": f"P{days_ago}{i}", "email": f"p{days_ago}-{i}@example.org"})
            made.append(reg)
            await db.fetch("UPDATE registration SET created_at = {} WHERE id = {}",
                           (today - timedelta(days=days_ago)).astimezone(timezone.utc), reg["id"])
    await registrant_admin.cancel_by_staff(made[0]["id"])  # gone: no longer counted
    page = await client.get("/staff")
    assert page.status_code == 200
    drawn = bars(page.text, event["id"])
    expected = {(today - timedelta(days=d)).date().isoformat(): 0 for d in range(7)}
    rows = await db.fetch("SELECT created_at FROM registration WHERE event = {} AND status <> 'cancelled'", event["id"])
    for r in rows:
        expected[r["created_at"].astimezone(ZONE).date().isoformat()] += 1
    assert drawn == expected
    assert drawn[(today - timedelta(days=5)).date().isoformat()] == 1 and drawn[today.date().isoformat()] == 3
    # Heights follow the counts: the tallest bar is today's.
    heights = {s: float(h) for h, s in re.findall(r'height="([\d.]+)" data-start="([\d-]+)"', page.text)}
    assert max(heights, key=heights.get) == today.date().isoformat()
    assert 'data-registered="3"' in page.text and 'data-waitlisted="2"' in page.text and "of 3 seats" in page.text
    assert "3 registrations" in page.text  # each bar has a readable title


async def test_attendance_rate_of_past_events(client, csrf):
    event = await published_event(title="Last year's webinar")
    for n in range(4):
        await registrations.register(event, {"name": f"P{n}", "email": f"p{n}@example.org"})
    await db.fetch("UPDATE registration SET attended_at = created_at WHERE email IN ('p0@example.org', 'p1@example.org', 'p2@example.org')")
    past = datetime.now(timezone.utc) - timedelta(days=30)
    await db.fetch("UPDATE event SET starts_at = {}, ends_at = {} WHERE id = {}", past, past + timedelta(hours=1), event["id"])
    events.forget()
    page = await client.get("/staff")
    row = page.text.split("Last year&#39;s webinar")[1].split("</tr>")[0]
    assert re.findall(r'<td class="num">([^<]+)</td>', row) == ["4", "3", "75%"]


async def test_dashboard_needs_a_session(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as stranger:
        assert (await stranger.get("/staff")).status_code == 303


def test_buckets_group_by_day_in_the_zone_and_by_week_when_long():
    utc = timezone.utc
    # 03:00 UTC on 2 March is still 1 March in Toronto.
    moments = [datetime(2030, 3, 2, 3, 0, tzinfo=utc), datetime(2030, 3, 2, 15, 0, tzinfo=utc)]
    items = chart.buckets(moments, "America/Toronto")
    assert [(b["start"], b["count"]) for b in items] == [(date(2030, 3, 1), 1), (date(2030, 3, 2), 1)]
    long = chart.buckets(moments, "UTC", date(2030, 1, 1), date(2030, 6, 30))
    assert len(long) <= chart.MAX_BARS and all((b["end"] - b["start"]).days <= 13 for b in long)
    assert sum(b["count"] for b in long) == 2
    assert [b["count"] for b in chart.cumulative(items, before=5)] == [6, 7]
    assert "No registrations yet" in chart.bar_chart([], title="x")
