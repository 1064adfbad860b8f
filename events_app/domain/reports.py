"""Numbers for the staff workspace: registrations per event and status, when active registrations
were made, when subscribers joined and left. Read-only, and off the hot paths, so written with
Piccolo's query builder on `tables.py`: a renamed or removed column fails at import or in the
first test that reads it, not in a page long after. The pages (web/staff/dashboard.py,
web/staff/subscriber_pages.py) turn these into tables and charts.
"""

from __future__ import annotations

from datetime import datetime

from piccolo.query.functions.aggregate import Count

from ..tables import Registration, Subscriber

# The registrations that hold (or wait for) a seat: what the registrations chart draws.
ACTIVE = ("registered", "waitlisted")


async def counts_by_event(event_ids: list[int]) -> dict[int, dict[str, int]]:
    """{event id: {registered, waitlisted, cancelled, attended}} for the given events (zeros for
    an event with no registrations); `attended` counts registered people marked as attended."""
    out = {i: {"registered": 0, "waitlisted": 0, "cancelled": 0, "attended": 0} for i in event_ids}
    if not event_ids:
        return out
    rows = (
        await Registration.select(
            Registration.event,
            Registration.status,
            Count(alias="n"),
            Count(Registration.attended_at, alias="attended"),
        )
        .where(Registration.event.is_in(list(event_ids)))
        .group_by(Registration.event, Registration.status)
    )
    for r in rows:
        counts = out[r["event"]]
        counts[r["status"]] = int(r["n"])
        if r["status"] == "registered":
            counts["attended"] = int(r["attended"])
    return out


async def active_registration_times(event_id: int) -> list[datetime]:
    """When each active (registered or waitlisted) registration of the event was made."""
    rows = await Registration.select(Registration.created_at).where(
        (Registration.event == event_id) & Registration.status.is_in(list(ACTIVE))
    )
    return [r["created_at"] for r in rows]


async def subscriber_joins_and_leaves() -> tuple[list[datetime], list[datetime]]:
    """(when each confirmed subscriber confirmed, when those who left unsubscribed). Erased
    people keep neither date and are in neither list."""
    rows = await Subscriber.select(Subscriber.confirmed_at, Subscriber.unsubscribed_at).where(
        Subscriber.confirmed_at.is_not_null() & (Subscriber.status != "erased")
    )
    joined = [r["confirmed_at"] for r in rows]
    left = [r["unsubscribed_at"] for r in rows if r["unsubscribed_at"] is not None]
    return joined, left
