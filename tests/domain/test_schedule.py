"""Reminders and follow-ups (domain/schedule.py) with a clock the test moves through an event's
life. Registering, cancelling and promoting happen at the clock's time; `enqueue_due(clock.now)`
queues what is due; real workers send to a real SMTP server (aiosmtpd on loopback); and we count
exactly who received which message."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, time, timedelta, timezone

from events_app import db
from events_app.domain import events, registrations, schedule
from factories import published_event
from mail.helpers import TITLE, outbox_rows, parts, published_webinar, register, registration_row, text_of, html_of, webinar_day
from mail.sending import drain, subjects, tally

UTC = timezone.utc
IN_24 = f"Starts in 24 hours: {TITLE}"
IN_1 = f"Starts in 1 hour: {TITLE}"
REMINDERS = ("Starts in",)
RECORDING = "https://videos.example.org/careers-webinar?part=1&lang=en"


def start_of(event: dict) -> datetime:
    return event["starts_at"]


async def token_of(reg: dict) -> str:
    return registrations.personal_token(await registration_row(reg["id"]))


async def test_reminders_go_to_who_held_a_seat_at_each_moment(clock, worker, smtp_server):
    event = await published_webinar(capacity=3)
    start = start_of(event)

    clock.set(start - timedelta(days=3))
    ada = await register(event, "Ada Lovelace", "ada@example.com")
    bob = await register(event, "Bob Early", "bob@example.com")
    dot = await register(event, "Dot Gone", "dot@example.com")
    assert await schedule.enqueue_due(clock.now) == 0
    await drain(worker)

    clock.set(start - timedelta(days=2))
    await registrations.cancel(await token_of(dot))  # before any reminder: she gets none
    await register(event, "Cat Second", "cat@example.com")  # takes Dot's seat
    zoe = await register(event, "Zoe Waiting", "zoe@example.com")
    assert zoe["status"] == "waitlisted"
    await drain(worker)

    clock.set(start - timedelta(hours=24))
    assert await schedule.enqueue_due(clock.now) == 3  # Ada, Bob, Cat
    clock.set(start - timedelta(hours=23))
    assert await schedule.enqueue_due(clock.now) == 0  # once
    await drain(worker)

    clock.set(start - timedelta(hours=20))
    await events.update(event["id"], {"capacity": 5})  # Zoe is promoted now, after the 24 h moment
    clock.set(start - timedelta(hours=19))
    lou = await register(event, "Lou Late", "lou@example.com")  # registers after the 24 h moment
    assert lou["status"] == "registered"
    clock.set(start - timedelta(hours=18))
    await registrations.cancel(await token_of(bob))  # had the 24 h reminder; gets no 1 h one
    assert await schedule.enqueue_due(clock.now) == 0  # nobody late gets a "24 hours" reminder
    await drain(worker)

    clock.set(start - timedelta(minutes=60))
    assert await schedule.enqueue_due(clock.now) == 4  # Ada, Cat, Zoe, Lou
    clock.set(start - timedelta(minutes=30))
    assert await schedule.enqueue_due(clock.now) == 0
    clock.set(start + timedelta(minutes=5))
    assert await schedule.enqueue_due(clock.now) == 0
    await drain(worker)

    assert tally(smtp_server, REMINDERS) == Counter({
        ("ada@example.com", IN_24): 1, ("ada@example.com", IN_1): 1,
        ("bob@example.com", IN_24): 1,
        ("cat@example.com", IN_24): 1, ("cat@example.com", IN_1): 1,
        ("zoe@example.com", IN_1): 1,
        ("lou@example.com", IN_1): 1,
    })
    assert subjects(smtp_server, "dot@example.com") == [
        f"You're registered: {TITLE}", f"Your registration is cancelled: {TITLE}",
    ]

    # What a reminder looks like: when (in the event's zone), the personal join and manage
    # links, and no calendar part (the entry is already in the calendar).
    reminder = [m for m in smtp_server.to("ada@example.com") if m["Subject"] == IN_1][0]
    assert "text/calendar" not in parts(reminder) and "application/ics" not in parts(reminder)
    row = await registration_row(ada["id"])
    day = webinar_day()
    for body in (text_of(reminder), html_of(reminder)):
        assert f"{day:%A} {day.day} {day:%B %Y}, 12:00–1:00 PM EST" in body
        assert f"http://testserver/j/{registrations.join_token(row)}" in body
        assert f"http://testserver/r/{registrations.personal_token(row)}" in body
        assert "meet.example.com" not in body
    assert "lets you in from 15 minutes before the start" in text_of(reminder)


async def test_a_reschedule_sends_the_reminders_again_for_the_new_time(clock, worker, smtp_server):
    event = await published_webinar()
    start = start_of(event)
    day = webinar_day()
    clock.set(start - timedelta(days=3))
    await register(event, "Ada Lovelace", "ada@example.com")
    await drain(worker)

    clock.set(start - timedelta(hours=24))
    assert await schedule.enqueue_due(clock.now) == 1
    await drain(worker)  # the 24 h reminder for the old time goes out

    clock.set(start - timedelta(hours=1))
    assert await schedule.enqueue_due(clock.now) == 1  # the 1 h reminder is queued...
    # ...and before a worker sends it, staff postpone the event by a day.
    await events.update(event["id"], {
        "starts_at": datetime.combine(day + timedelta(days=1), time(12)).isoformat(),
        "ends_at": datetime.combine(day + timedelta(days=1), time(13)).isoformat(),
    })
    await drain(worker)
    [stale] = [r for r in await outbox_rows("reminder") if r["status"] != "sent"]
    assert stale["status"] == "failed" and "rescheduled" in stale["last_error"]
    assert await schedule.enqueue_due(clock.now) == 0  # the new 24 h moment has not come

    new_start = start + timedelta(days=1)
    clock.set(new_start - timedelta(hours=24))
    assert await schedule.enqueue_due(clock.now) == 1  # 24 h again, for the new time
    await drain(worker)
    clock.set(new_start - timedelta(hours=1))
    assert await schedule.enqueue_due(clock.now) == 1
    clock.set(new_start - timedelta(minutes=1))
    assert await schedule.enqueue_due(clock.now) == 0
    await drain(worker)

    assert subjects(smtp_server, "ada@example.com") == [
        f"You're registered: {TITLE}", IN_24, f"New time: {TITLE}", IN_24, IN_1,
    ]
    first, second = [m for m in smtp_server.to("ada@example.com") if m["Subject"] == IN_24]
    old_when, new_day = f"{day:%A} {day.day} {day:%B %Y}", day + timedelta(days=1)
    new_when = f"{new_day:%A} {new_day.day} {new_day:%B %Y}"
    assert old_when in text_of(first) and new_when in text_of(second)
    assert old_when not in text_of(second)


async def test_a_cancelled_event_gets_no_reminders_even_one_already_queued(clock, worker, smtp_server):
    event = await published_webinar()
    start = start_of(event)
    clock.set(start - timedelta(days=3))
    await register(event, "Ada Lovelace", "ada@example.com")
    await drain(worker)
    clock.set(start - timedelta(hours=24))
    assert await schedule.enqueue_due(clock.now) == 1
    await events.cancel(event["id"])  # before the worker got to the reminder
    await drain(worker)
    for moment in (start - timedelta(hours=23), start - timedelta(minutes=60), start - timedelta(minutes=1)):
        assert await schedule.enqueue_due(moment) == 0
    await drain(worker)

    assert subjects(smtp_server, "ada@example.com") == [f"You're registered: {TITLE}", f"Cancelled: {TITLE}"]
    [reminder] = await outbox_rows("reminder")
    assert reminder["status"] == "failed" and "cancelled" in reminder["last_error"]


async def test_two_schedulers_and_two_workers_at_once_send_each_reminder_once(clock, two_workers, smtp_server):
    event = await published_webinar()
    start = start_of(event)
    clock.set(start - timedelta(days=2))
    people = [f"person{i:02d}@example.com" for i in range(24)]
    for address in people:
        await register(event, address.split("@")[0].title(), address)
    await drain(*two_workers)

    for offset, subject in ((timedelta(hours=24), IN_24), (timedelta(hours=1), IN_1)):
        clock.set(start - offset)
        # Two processes look at the same moment, twice each.
        queued = await asyncio.gather(*(schedule.enqueue_due(clock.now) for _ in range(4)))
        assert sum(queued) == len(people)
        claimed = await drain(*two_workers, limit=4)
        assert sum(claimed) == len(people) and all(claimed), claimed  # both workers sent some

    assert tally(smtp_server, REMINDERS) == Counter(
        {(address, subject): 1 for address in people for subject in (IN_24, IN_1)}
    )
    # Two workers, each with its lanes' connections (EVENTS_SMTP_CONNECTIONS, default 2).
    assert smtp_server.connections() == sum(len(w.lanes) for w in two_workers) == 4
    assert {r["status"] for r in await outbox_rows("reminder")} == {"sent"}


async def test_staff_choose_the_offsets_and_removing_one_drops_what_it_queued(clock, worker, smtp_server):
    event = await published_webinar(reminders=[2880, 1440, 30])
    start = start_of(event)
    clock.set(start - timedelta(days=5))
    await register(event, "Ada Lovelace", "ada@example.com")
    clock.set(start - timedelta(days=2))
    assert await schedule.enqueue_due(clock.now) == 1
    clock.set(start - timedelta(hours=24))
    assert await schedule.enqueue_due(clock.now) == 1
    await events.update(event["id"], {"reminders": [2880, 30]})  # staff drop the 24 h one, unsent
    clock.set(start - timedelta(minutes=30))
    assert await schedule.enqueue_due(clock.now) == 1
    await drain(worker)

    assert subjects(smtp_server, "ada@example.com") == [
        f"You're registered: {TITLE}", f"Starts in 2 days: {TITLE}", f"Starts in 30 minutes: {TITLE}",
    ]


# Follow-ups ------------------------------------------------------------------------------------


async def test_attendees_get_a_thank_you_and_no_shows_a_sorry_we_missed_you_once(client, worker, smtp_server):
    now = datetime.now(UTC)
    event = await published_event(
        slug="live", starts_at=(now + timedelta(minutes=10)).isoformat(),
        ends_at=(now + timedelta(minutes=70)).isoformat(), recording_url=RECORDING,
    )
    people = {}
    for name in ("ada", "bob", "cat"):
        view = await registrations.register(event, {"name": name.title(), "email": f"{name}@example.org"})
        people[name] = await registration_row(view["id"])
    await drain(worker)
    # Ada joins through her personal link while the doors are open (the page's POST): attendance is recorded.
    opened = await client.post(f"/j/{registrations.join_token(people['ada'])}", follow_redirects=False)
    assert opened.status_code == 303
    await registrations.cancel(registrations.personal_token(people["cat"]))  # Cat cancelled
    end = event["ends_at"]

    for moment in (end - timedelta(minutes=1), end + timedelta(minutes=119)):
        assert await schedule.enqueue_due(moment) == 0  # not before follow_up_minutes (120) after the end
    assert await schedule.enqueue_due(end + timedelta(minutes=120)) == 2
    for moment in (end + timedelta(minutes=121), end + timedelta(days=1), end + timedelta(days=13)):
        assert await schedule.enqueue_due(moment) == 0
    await drain(worker)

    thanks, sorry = f"Thank you for joining: {event['title']}", f"Sorry we missed you: {event['title']}"
    assert tally(smtp_server, ("Thank you", "Sorry")) == Counter(
        {("ada@example.org", thanks): 1, ("bob@example.org", sorry): 1}
    )
    for address in ("ada@example.org", "bob@example.org"):
        message = smtp_server.to(address)[-1]
        assert RECORDING in text_of(message)
        assert RECORDING.replace("&", "&amp;") in html_of(message)
        assert "text/calendar" not in parts(message)
    assert "Thank you for joining" in text_of(smtp_server.to("ada@example.org")[-1])
    assert "Sorry we missed you" in text_of(smtp_server.to("bob@example.org")[-1])
    assert subjects(smtp_server, "cat@example.org") == [
        f"You're registered: {event['title']}", f"Your registration is cancelled: {event['title']}",
    ]


async def test_a_follow_up_waits_for_the_recording_link_and_is_dropped_if_it_is_removed(worker, smtp_server):
    event = await published_webinar(follow_up_minutes=30)
    ada = await register(event, "Ada Lovelace", "ada@example.com")
    await register(event, "Bob Absent", "bob@example.com")
    await db.fetch("UPDATE registration SET attended_at = {} WHERE id = {}",
                   event["starts_at"] + timedelta(minutes=3), ada["id"])
    end = event["ends_at"]
    await drain(worker)

    assert await schedule.enqueue_due(end + timedelta(hours=3)) == 0  # no recording link yet
    await events.update(event["id"], {"recording_url": RECORDING})
    assert await schedule.enqueue_due(end + timedelta(minutes=29)) == 0
    assert await schedule.enqueue_due(end + timedelta(minutes=30)) == 2
    await events.update(event["id"], {"recording_url": ""})  # withdrawn before the worker ran
    await drain(worker)
    assert tally(smtp_server, ("Thank you", "Sorry")) == Counter()
    assert {r["last_error"] for r in await outbox_rows() if r["kind"].startswith("follow_up")} == {
        "not sent: the event no longer has a recording or resources link"
    }
    assert await schedule.enqueue_due(end + timedelta(hours=4)) == 0  # each once, even so

    # A cancelled event gets no follow-up, recording or not.
    other = await published_webinar(recording_url=RECORDING)
    await register(other, "Bob Absent", "bob@example.com")
    await events.cancel(other["id"])
    assert await schedule.enqueue_due(other["ends_at"] + timedelta(days=1)) == 0
    await drain(worker)
    assert tally(smtp_server, ("Thank you", "Sorry")) == Counter()


async def test_workers_back_from_an_outage_send_only_the_closest_reminder(clock, worker, smtp_server):
    event = await published_webinar()
    start = start_of(event)
    clock.set(start - timedelta(days=3))
    await register(event, "Ada Lovelace", "ada@example.com")
    await drain(worker)
    # No worker ran between the 24 h moment and 30 minutes before the start.
    clock.set(start - timedelta(minutes=30))
    assert await schedule.enqueue_due(clock.now) == 1
    assert await schedule.enqueue_due(clock.now) == 0
    await drain(worker)
    assert tally(smtp_server, REMINDERS) == Counter({("ada@example.com", IN_1): 1})


async def test_control_without_the_ledger_reminders_repeat(clock, monkeypatch):
    """The same look twice with the ledger switched off queues everyone twice: the once-only
    assertions above are known to bite."""
    event = await published_webinar()
    start = start_of(event)
    clock.set(start - timedelta(days=3))
    await register(event, "Ada Lovelace", "ada@example.com")
    monkeypatch.setattr(
        schedule, "CLAIM_SQL",
        # The same selection, with the ledger insert taken out (the first three values unused).
        "SELECT id AS registration, CAST({} AS TEXT) AS kind, CAST({} AS TEXT) AS key, "
        "CAST({} AS TIMESTAMPTZ) AS at FROM registration WHERE event = {} AND status = 'registered' "
        "AND COALESCE(promoted_at, created_at) <= {}",
    )
    clock.set(start - timedelta(hours=23))
    assert await schedule.enqueue_due(clock.now) == 1
    assert await schedule.enqueue_due(clock.now) == 1
    assert len(await outbox_rows("reminder")) == 2
