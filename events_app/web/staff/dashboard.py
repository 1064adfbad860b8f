"""The workspace's first page: upcoming events with their numbers and a registrations chart
each, attendance of past events, and the latest bulletin issue's delivery."""

from __future__ import annotations

import importlib
from datetime import datetime
from zoneinfo import ZoneInfo

from litestar import Request, get
from litestar.response import Template

from ... import clock, timefmt
from ...domain import events, reports
from ...timefmt import format_range
from . import chart
from .session import StaffController, page

PAST_SHOWN = 8


async def registrations_chart(event: dict, moment: datetime) -> dict:
    """Buckets of active (registered or waitlisted) registrations by the day they were made, in
    the event's zone, from the day the event was created to today or its start."""
    moments = await reports.active_registration_times(event["id"])
    zone = event["timezone"]
    first = timefmt.in_zone(min([event["created_at"], *moments]), ZoneInfo(zone)).date()
    last = timefmt.in_zone(max([min(moment, event["starts_at"]), *moments]), ZoneInfo(zone)).date()
    items = chart.buckets(moments, zone, first, last)
    return {
        "items": items,
        "svg": chart.bar_chart(
            items,
            title=f"New registrations per day for {event['title']}",
            chart_id=f"reg-chart-{event['id']}",
            y_label="New registrations",
            zone=zone,
        ),
    }


async def latest_issue() -> dict | None:
    """The newest bulletin issue with its delivery, or None (no issues, or no bulletin module)."""
    try:
        issues = importlib.import_module("events_app.domain.issues")
    except ImportError:
        return None
    found = await issues.listing()
    if not found:
        return None
    issue = found[0]
    return {"issue": issue, "delivery": await issues.delivery(issue["id"])}


class Dashboard(StaffController):
    path = "/staff"

    @get("/")
    async def show(self, request: Request) -> Template:
        moment = clock.now()
        every = await events.listing(include_drafts=True)
        upcoming = [e for e in every if e["ends_at"] >= moment and e["status"] != "cancelled"]
        past = [e for e in every if e["ends_at"] < moment and e["status"] == "published"][:PAST_SHOWN]
        counts = await reports.counts_by_event([e["id"] for e in upcoming + past])
        cards = []
        for e in upcoming:
            cards.append(
                {
                    "event": e,
                    "counts": counts[e["id"]],
                    "chart": await registrations_chart(e, moment),
                    "when": format_range(e["starts_at"], e["ends_at"], e["timezone"]),
                }
            )
        attendance = []
        for e in past:
            c = counts[e["id"]]
            rate = round(100 * c["attended"] / c["registered"]) if c["registered"] else None
            attendance.append(
                {
                    "event": e,
                    "counts": c,
                    "rate": rate,
                    "when": format_range(e["starts_at"], e["ends_at"], e["timezone"]),
                }
            )
        return page(request, "staff/dashboard.html", cards=cards, attendance=attendance, latest=await latest_issue())
