"""Registration mail end to end: the domain queues, the worker sends over real SMTP (aiosmtpd on
loopback), and we read what a registrant's mailbox and calendar would receive."""

from __future__ import annotations

import re
from datetime import datetime, time, timezone

from events_app import db
from events_app.domain import events, registrations

from .helpers import (
    TITLE,
    TORONTO,
    expected_when,
    html_of,
    invite_of,
    outbox_rows,
    parts,
    published_webinar,
    register,
    registration_row,
    row_message_id,
    text_of,
    webinar_day,
)

BASE = "http://testserver"
LONG_AGO = datetime(2000, 1, 1, tzinfo=timezone.utc)


async def _links(reg_id: int) -> tuple[str, str]:
    row = await registration_row(reg_id)
    return (
        f"{BASE}/r/{registrations.personal_token(row)}",
        f"{BASE}/j/{registrations.join_token(row)}",
    )


async def test_confirmation_is_an_invite_a_calendar_honours(worker, smtp_server):
    event = await published_webinar()
    reg = await register(event, "Ada Lovelace", "ada@example.com")
    assert reg["status"] == "registered"

    assert await worker.run_once() == 1

    [message] = smtp_server.to("ada@example.com")
    # Structure: mixed > alternative(text, html, calendar) + the .ics attachment.
    assert message.get_content_type() == "multipart/mixed"
    alternative = message.get_payload()[0]
    assert alternative.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in alternative.get_payload()] == [
        "text/plain", "text/html", "text/calendar",
    ]
    attachment = message.get_payload()[1]
    assert attachment.get_content_type() == "application/ics"
    assert attachment.get_filename() == "invite.ics"

    # Headers a mail client shows or threads on.
    [row] = await outbox_rows("registration_confirmed")
    assert message["From"] == "Implementation Centre <events@example.org>"
    assert message["To"].addresses[0].addr_spec == "ada@example.com"
    assert message["To"].addresses[0].display_name == "Ada Lovelace"
    assert message["Subject"] == f"You're registered: {TITLE}"
    assert message["Date"].datetime.tzinfo is not None
    assert message["Message-ID"] == row_message_id(row)
    assert message["Auto-Submitted"] == "auto-generated"

    # The invite: METHOD matches the part's parameter; one stable UID; the registrant attends.
    method, calendar, vevent = invite_of(message)
    assert method == "REQUEST" == str(calendar["METHOD"])
    assert parts(message)["text/calendar"].get_content_charset() == "utf-8"
    assert str(vevent["UID"]) == (await registration_row(reg["id"]))["calendar_uid"]
    assert vevent["SEQUENCE"] == 0
    assert str(vevent["STATUS"]) == "CONFIRMED"
    assert str(vevent["ORGANIZER"]) == "mailto:events@example.org"
    attendees = vevent["ATTENDEE"]
    assert not isinstance(attendees, list)  # exactly one
    assert str(attendees) == "mailto:ada@example.com"
    assert attendees.params["RSVP"] == "FALSE"
    start = vevent.decoded("DTSTART")
    assert vevent["DTSTART"].params["TZID"] == "America/Toronto"
    assert start.tzinfo is not None and start.astimezone(TORONTO).time() == time(12, 0)
    assert start.astimezone(TORONTO).date() == webinar_day()
    assert [tz["TZID"] for tz in calendar.walk("VTIMEZONE")] == ["America/Toronto"]
    assert attachment.get_content().replace(b"\r\n", b"\n").decode() == parts(message)[
        "text/calendar"
    ].get_content().replace("\r\n", "\n")

    # The personal links, in both parts and in the invite; never the raw meeting link.
    manage, join = await _links(reg["id"])
    text, html = text_of(message), html_of(message)
    for body in (text, html):
        assert manage in body and join in body
        assert "meet.example.com" not in body
        assert expected_when(webinar_day()) in body
    assert "Cancel my registration" in text and "changes nothing by itself" in text
    assert str(vevent["LOCATION"]) == join
    assert manage in str(vevent["DESCRIPTION"]) and join in str(vevent["DESCRIPTION"])
    # The only "add it yourself" link is the person's own invite as a file: no second copy.
    assert "calendar.google.com" not in html and f"{BASE}/events/{event['slug']}.ics" not in text
    assert f"{manage}.ics" in text and f"{manage}.ics" in html
    # css-inline moved the stylesheet onto the elements.
    assert re.search(r'<a class="button"[^>]*style="[^"]*background', html)

    [row] = await outbox_rows("registration_confirmed")
    assert row["status"] == "sent" and row["sent_at"] is not None


async def test_waitlisted_confirmation_gives_the_position_and_no_invite(worker, smtp_server):
    event = await published_webinar(capacity=1)
    await register(event, "First Person", "first@example.com")
    await register(event, "Second Person", "second@example.com")
    third = await register(event, "Third Person", "third@example.com")
    assert third["status"] == "waitlisted" and third["waitlist_position"] == 2

    assert await worker.run_once() == 3

    [message] = smtp_server.to("third@example.com")
    assert message["Subject"] == f"You're on the waiting list (number 2): {TITLE}"
    assert "text/calendar" not in parts(message) and "application/ics" not in parts(message)
    assert message.get_content_type() == "multipart/alternative"
    text = text_of(message)
    assert "number 2" in text and "number 2" in html_of(message)
    assert "/j/" not in text  # no join link until there is a seat
    manage, _ = await _links(third["id"])
    assert manage in text and manage in html_of(message)


async def test_cancelling_sends_cancel_and_the_seat_goes_to_the_waitlist(worker, smtp_server):
    event = await published_webinar(capacity=1)
    ada = await register(event, "Ada Lovelace", "ada@example.com")
    bob = await register(event, "Bob Waiting", "bob@example.com")
    await worker.run_once()
    _, _, first = invite_of(smtp_server.to("ada@example.com")[0])

    row = await registration_row(ada["id"])
    await registrations.cancel(registrations.personal_token(row))
    assert await worker.run_once() == 2

    cancel = smtp_server.to("ada@example.com")[1]
    method, calendar, vevent = invite_of(cancel)
    assert method == "CANCEL" == str(calendar["METHOD"])
    assert str(vevent["STATUS"]) == "CANCELLED"
    assert vevent["UID"] == first["UID"]
    assert vevent["SEQUENCE"] > first["SEQUENCE"]
    assert cancel["Subject"] == f"Your registration is cancelled: {TITLE}"
    assert "removes the event from your calendar" in text_of(cancel)

    promoted = smtp_server.to("bob@example.com")[1]
    method, _, vevent = invite_of(promoted)
    assert method == "REQUEST"
    assert str(vevent["UID"]) == (await registration_row(bob["id"]))["calendar_uid"]
    assert vevent["SEQUENCE"] == 1  # promotion raised it from the waitlisted confirmation's 0
    assert "it's yours" in promoted["Subject"]
    _, join = await _links(bob["id"])
    assert join in text_of(promoted)


async def test_leaving_the_waitlist_is_a_plain_message(worker, smtp_server):
    event = await published_webinar(capacity=1)
    await register(event, "Ada Lovelace", "ada@example.com")
    bob = await register(event, "Bob Waiting", "bob@example.com")
    await registrations.cancel(registrations.personal_token(await registration_row(bob["id"])))
    await worker.run_once()

    # Bob's waitlist confirmation was overtaken by his cancellation: only the latter is sent.
    [message] = smtp_server.to("bob@example.com")
    assert message["Subject"] == f"You've left the waiting list: {TITLE}"
    assert "text/calendar" not in parts(message)
    [stale] = [r for r in await outbox_rows("registration_confirmed") if r["recipient"] == "bob@example.com"]
    assert stale["status"] == "failed" and "cancelled before" in stale["last_error"]


async def test_a_new_time_updates_the_same_calendar_entry(worker, smtp_server):
    event = await published_webinar()
    reg = await register(event, "Ada Lovelace", "ada@example.com")
    await worker.run_once()
    day = webinar_day()
    await events.update(
        event["id"],
        {
            "starts_at": datetime.combine(day, time(14, 0)).isoformat(),
            "ends_at": datetime.combine(day, time(15, 30)).isoformat(),
        },
    )
    assert await worker.run_once() == 1

    first, changed = smtp_server.to("ada@example.com")
    method, _, vevent = invite_of(changed)
    _, _, before = invite_of(first)
    assert method == "REQUEST"
    assert vevent["UID"] == before["UID"] == (await registration_row(reg["id"]))["calendar_uid"]
    assert vevent["SEQUENCE"] == 1
    assert vevent.decoded("DTSTART").astimezone(TORONTO).time() == time(14, 0)
    assert changed["Subject"] == f"New time: {TITLE}"
    text = text_of(changed)
    # The old time beside the new one (issue 14), the new one also in the details.
    assert re.search(r"Time\s+was: .*12:00.*\s+now: .*2:00–3:30 PM EST", text), text
    assert f"{day:%A} {day.day} {day:%B %Y}, 2:00–3:30 PM EST" in text


async def test_cancelling_the_event_tells_everyone_and_clears_calendars(worker, smtp_server):
    event = await published_webinar(capacity=1)
    await register(event, "Ada Lovelace", "ada@example.com")
    await register(event, "Bob Waiting", "bob@example.com")
    await worker.run_once()
    await events.cancel(event["id"])
    assert await worker.run_once() == 2

    ada = smtp_server.to("ada@example.com")[-1]
    method, _, vevent = invite_of(ada)
    assert method == "CANCEL" and str(vevent["STATUS"]) == "CANCELLED"
    assert ada["Subject"] == f"Cancelled: {TITLE}"
    bob = smtp_server.to("bob@example.com")[-1]
    assert bob["Subject"] == f"Cancelled: {TITLE}"
    assert "text/calendar" not in parts(bob)
    assert "waiting list" in text_of(bob)


async def test_one_smtp_connection_carries_many_messages(worker, smtp_server):
    event = await published_webinar()
    for i in range(3):
        await register(event, f"Person {i}", f"person{i}@example.com")
    assert await worker.run_once() == 3
    await register(event, "Late Person", "late@example.com")
    assert await worker.run_once() == 1

    assert len(smtp_server.messages()) == 4
    # One connection per lane (EVENTS_SMTP_CONNECTIONS, default 2), each kept for the next batch.
    assert len(worker.lanes) == 2
    assert smtp_server.connections() == 2
    assert sum(lane.connections for lane in worker.lanes) == 2


async def test_with_one_connection_configured_every_message_shares_it(smtp_settings, smtp_server):
    import dataclasses

    from events_app.mail.worker import Worker

    worker = Worker(dataclasses.replace(smtp_settings, smtp_connections=1))
    event = await published_webinar()
    for i in range(3):
        await register(event, f"Person {i}", f"person{i}@example.com")
    assert await worker.run_once() == 3
    await worker.close()
    assert len(smtp_server.messages()) == 3
    assert smtp_server.connections() == 1


async def test_a_dropped_connection_is_reopened_without_losing_the_message(worker, smtp_server):
    event = await published_webinar()
    await register(event, "Ada Lovelace", "ada@example.com")
    await worker.run_once()
    smtp_server.restart()  # the server goes away between two messages, e.g. an idle time-out
    await register(event, "Bob Later", "bob@example.com")

    assert await worker.run_once() == 1

    assert len(smtp_server.to("bob@example.com")) == 1
    assert [r["status"] for r in await outbox_rows()] == ["sent", "sent"]
    assert worker.transport.connections == 2


async def test_registering_again_resends_the_same_invite(worker, smtp_server):
    event = await published_webinar()
    reg = await register(event, "Ada Lovelace", "ada@example.com")
    await worker.run_once()
    # Past the resend interval, the same address again re-sends the confirmation, same entry.
    await db.fetch("UPDATE registration SET confirmation_sent_at = {} WHERE id = {}", LONG_AGO, reg["id"])
    again = await register(event, "Ada Lovelace", "ada@example.com")
    assert again["id"] == reg["id"]
    await worker.run_once()

    first, resent = smtp_server.to("ada@example.com")
    assert "Thank you for registering" in text_of(first)
    assert "again. Nothing has changed" in text_of(resent)
    assert invite_of(resent)[2]["UID"] == invite_of(first)[2]["UID"]
    assert invite_of(resent)[2]["SEQUENCE"] == invite_of(first)[2]["SEQUENCE"] == 0
    assert resent["Message-ID"] != first["Message-ID"]


async def test_bulk_rows_sent_while_another_lane_records_its_share_are_recorded_too(worker, smtp_server, tmp_path):
    # Two connections send a release in batches of five: whenever five bulk messages are out, one
    # lane records them while the other is still talking to the server. Every message handed over
    # must end `sent`; one left `sending` would go out a second time after the claim time-out.
    from bulletin.helpers import new_issue, subscribers

    from events_app.domain import issues, mailings

    addresses = await subscribers(tmp_path, 40)
    issue = await new_issue()
    await issues.release(issue["id"])
    while await mailings.tick() + await worker.run_once(5, refills=3):
        pass

    rows = await db.fetch("SELECT status, count(*) AS n FROM outbox GROUP BY status")
    assert {r["status"]: r["n"] for r in rows} == {"sent": 40}
    assert sorted(a for r in smtp_server.received for a in r.rcpt_tos) == sorted(addresses)
