"""The staff workspace's numbers (domain/reports.py), from real registrations and subscribers."""

from __future__ import annotations

from events_app import db
from events_app.domain import registrant_admin, registrations, reports, subscriptions
from factories import published_event


async def test_counts_per_status_and_attendance_of_the_registered_only():
    event = await published_event(capacity=2, title="Counted")
    quiet = await published_event(title="Nobody yet", slug="nobody-yet")
    made = [
        await registrations.register(event, {"name": f"P{n}", "email": f"p{n}@example.org"}) for n in range(4)
    ]  # two registered, two waitlisted
    await registrant_admin.cancel_by_staff(made[3]["id"])
    # Marked as attended: one registered person, and a waitlisted one (who cannot count).
    await db.fetch("UPDATE registration SET attended_at = created_at WHERE email IN ('p0@example.org', 'p2@example.org')")
    counts = await reports.counts_by_event([event["id"], quiet["id"]])
    assert counts == {
        event["id"]: {"registered": 2, "waitlisted": 1, "cancelled": 1, "attended": 1},
        quiet["id"]: {"registered": 0, "waitlisted": 0, "cancelled": 0, "attended": 0},
    }
    assert await reports.counts_by_event([]) == {}
    made_at = {r["created_at"] for r in await db.fetch("SELECT created_at FROM registration WHERE status <> 'cancelled'")}
    assert sorted(await reports.active_registration_times(event["id"])) == sorted(made_at)
    assert await reports.active_registration_times(quiet["id"]) == []


async def test_joins_and_leaves_leave_out_the_unconfirmed_and_the_erased():
    topics = await subscriptions.topic_ids(["bulletin"])
    for email in ("stays@example.org", "leaves@example.org", "erased@example.org", "pending@example.org"):
        await subscriptions.subscribe(email, "", topics)
        if email != "pending@example.org":
            row = (await db.fetch("SELECT * FROM subscriber WHERE email = {}", email))[0]
            await subscriptions.confirm(subscriptions.confirm_token(row))
    rows = {r["email"]: r for r in await db.fetch("SELECT * FROM subscriber")}
    await subscriptions.unsubscribe(subscriptions.manage_token(rows["leaves@example.org"]))
    await subscriptions.erase(subscriptions.manage_token(rows["erased@example.org"]))
    joined, left = await reports.subscriber_joins_and_leaves()
    after = {r["email"]: r for r in await db.fetch("SELECT * FROM subscriber WHERE email IS NOT NULL")}
    assert sorted(joined) == sorted(after[e]["confirmed_at"] for e in ("stays@example.org", "leaves@example.org"))
    assert left == [after["leaves@example.org"]["unsubscribed_at"]]
