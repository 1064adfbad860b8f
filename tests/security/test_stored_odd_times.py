"""Rows stored before today's checks: an event whose times lie at the edges of the calendar.

New times are refused outside 1970-2100, but a database may already hold a year-1 or year-9999
event (an old PATCH, an import, a hand edit). Every page, feed and API answer that shows such
an event still answers, in UTC where its own zone would leave the calendar: never a 500.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from factories import published_event

from events_app import db
from events_app.domain import events, staff
from events_app.web.staff.session import COOKIE

EDGES = [
    (datetime(1, 1, 1, 0, 30, tzinfo=timezone.utc), datetime(1, 1, 1, 1, 30, tzinfo=timezone.utc)),
    (datetime(9999, 12, 31, 22, 0, tzinfo=timezone.utc), datetime(9999, 12, 31, 23, 30, tzinfo=timezone.utc)),
    # Over several days: each end is written out on its own.
    (datetime(1, 1, 1, 0, 30, tzinfo=timezone.utc), datetime(1, 1, 3, 1, 30, tzinfo=timezone.utc)),
]


@pytest.mark.parametrize("zone", ["America/Toronto", "Pacific/Kiritimati"])
@pytest.mark.parametrize("starts_at,ends_at", EDGES)
async def test_an_event_stored_at_the_calendars_edge_is_shown_everywhere(client, auth, zone, starts_at, ends_at):
    event = await published_event(timezone=zone)
    await db.fetch("UPDATE event SET starts_at = {}, ends_at = {}, version = version + 1 WHERE id = {}",
                   starts_at, ends_at, event["id"])
    events.forget()
    member = await staff.create("edge@example.org", "correct horse battery", "Edge")
    session = await staff.start_session(member["id"])
    pages = [
        ("/events", {}), (f"/events/{event['slug']}", {}), (f"/events/{event['slug']}.ics", {}),
        ("/calendar.ics", {}), (f"/api/v1/events/{event['id']}", auth), ("/api/v1/events", {}),
        (f"/api/v1/events/{event['id']}/registrations.csv", auth),
    ]
    staff_pages = ["/staff", "/staff/events", f"/staff/events/{event['id']}",
                   f"/staff/events/{event['id']}/registrants"]
    for path, headers in pages:
        answer = await client.get(path, headers=headers)
        assert answer.status_code < 500, (path, answer.status_code, answer.text[:300])
    for path in staff_pages:
        answer = await client.get(path, headers={"cookie": f"{COOKIE}={session}"})
        assert answer.status_code < 500, (path, answer.status_code, answer.text[:300])
    shown = (await client.get(f"/events/{event['slug']}")).text
    assert str(starts_at.year) in shown, "the page shows the event's (odd) date rather than hiding it"
