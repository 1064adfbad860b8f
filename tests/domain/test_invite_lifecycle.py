"""One registration's calendar entry through its whole life, as a mail client and a calendar
receive it: registered, moved twice (once across the end of daylight-saving time), a new meeting
link, then the event cancelled; and a registrant who cancels, is replaced from the waiting list,
and comes back. A real worker sends every step to a real SMTP server (aiosmtpd on loopback) and
every message that arrives is read twice, by icalendar and by vobject, an independent parser
that works out the times from the VTIMEZONE inside the invite."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from email.message import EmailMessage

import icalendar
import vobject

from events_app.domain import events, registrations
from mail.helpers import TITLE, parts, published_webinar, register, registration_row, text_of, webinar_day

UTC = timezone.utc
ZONE = "America/Toronto"
NEW_ROOM = "https://meet.example.com/another-room"


def utc(day, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=UTC)


def read_invite(message: EmailMessage, *, method: str, status: str, uid: str,
                local: tuple[datetime, datetime], in_utc: tuple[datetime, datetime]) -> int:
    """Check the invite in `message` with both parsers; return its SEQUENCE.

    `local` is the wall time in Toronto (naive) the entry must show, `in_utc` the same moments
    in UTC, written out by hand rather than converted by the code under test."""
    part = parts(message)["text/calendar"]
    text = part.get_content()
    assert part.get_param("method") == method, "the part's method must equal METHOD inside"
    attachment = parts(message)["application/ics"].get_content()
    assert attachment.replace(b"\r\n", b"\n").decode() == text.replace("\r\n", "\n")

    # icalendar
    calendar = icalendar.Calendar.from_ical(text)
    [vevent] = calendar.walk("VEVENT")
    assert str(calendar["METHOD"]) == method
    assert str(vevent["UID"]) == uid
    assert str(vevent["STATUS"]) == status
    assert str(vevent["ATTENDEE"]) == f"mailto:{message['To'].addresses[0].addr_spec}"
    assert [str(tz["TZID"]) for tz in calendar.walk("VTIMEZONE")] == [ZONE]
    for name, wall, moment in zip(("DTSTART", "DTEND"), local, in_utc):
        assert vevent[name].params["TZID"] == ZONE
        assert vevent[name].to_ical().decode() == wall.strftime("%Y%m%dT%H%M%S")  # local wall time
        assert vevent.decoded(name).astimezone(UTC) == moment
    sequence = int(vevent["SEQUENCE"])

    # vobject: its own parser, its own time zone built from the VTIMEZONE component
    other = vobject.readOne(text)
    assert other.method.value == method
    assert [tz.tzid.value for tz in other.vtimezone_list] == [ZONE]
    [v] = other.vevent_list
    assert v.uid.value == uid
    assert v.status.value == status
    assert int(v.sequence.value) == sequence
    assert [a.value for a in v.attendee_list] == [str(vevent["ATTENDEE"])]
    assert v.attendee.params["RSVP"] == ["FALSE"]
    assert v.organizer.value == "mailto:events@example.org"
    for line, wall, moment in zip((v.dtstart, v.dtend), local, in_utc):
        # vobject moves TZID aside once it has resolved it against the VTIMEZONE
        assert line.params.get("TZID", line.params.get("X-VOBJ-ORIGINAL-TZID")) == [ZONE]
        assert line.value.replace(tzinfo=None) == wall
        assert line.value.astimezone(UTC) == moment
    return sequence


def new_messages(sink, seen: int) -> list:
    return sink.messages()[seen:]


async def test_one_registration_through_two_moves_a_new_link_and_the_event_cancelled(worker, smtp_server):
    day = webinar_day()  # a Tuesday in late November: Toronto on EST, UTC-5
    event = await published_webinar()
    ada = await register(event, "Ada Lovelace", "ada@example.com")
    row = await registration_row(ada["id"])
    uid = row["calendar_uid"]  # stored and random: never derived from the row id
    assert uid.endswith("@testserver") and str(ada["id"]) != uid.split("@")[0]
    join = f"http://testserver/j/{registrations.join_token(row)}"
    later_day = day + timedelta(days=2)
    october = day - timedelta(weeks=7)  # early October: EDT, UTC-4

    steps = []  # (what happened, subject, method, status, local times, UTC times, body must say)

    async def step(action, subject, method, status, local, in_utc, says):
        before = len(smtp_server.messages())
        if action is not None:
            await action()
        assert await worker.run_once() == 1
        [message] = new_messages(smtp_server, before)  # exactly one message per step, to Ada
        assert message["To"].addresses[0].addr_spec == "ada@example.com"
        assert message["Subject"] == subject
        sequence = read_invite(message, method=method, status=status, uid=uid, local=local, in_utc=in_utc)
        text = text_of(message)
        for words in says:
            assert words in text, (subject, words)
        assert "meet.example.com" not in text  # the meeting link hides behind the personal one
        steps.append(sequence)
        return message

    await step(None, f"You're registered: {TITLE}", "REQUEST", "CONFIRMED",
               (datetime.combine(day, time(12)), datetime.combine(day, time(13))),
               (utc(day, 17), utc(day, 18)),
               [f"{day:%A} {day.day} {day:%B %Y}, 12:00–1:00 PM EST", join])

    await step(lambda: events.update(event["id"], {
                   "starts_at": datetime.combine(later_day, time(14)).isoformat(),
                   "ends_at": datetime.combine(later_day, time(15, 30)).isoformat()}),
               f"New time: {TITLE}", "REQUEST", "CONFIRMED",
               (datetime.combine(later_day, time(14)), datetime.combine(later_day, time(15, 30))),
               (utc(later_day, 19), utc(later_day, 20, 30)),
               # the old time beside the new (issue 14)
               [f"was: {day:%A} {day.day} {day:%B %Y}, 12:00–1:00 PM EST",
                f"now: {later_day:%A} {later_day.day} {later_day:%B %Y}, 2:00–3:30 PM EST", join])

    # Staff type a time with an offset this time; the entry still shows Toronto wall time (EDT).
    await step(lambda: events.update(event["id"], {
                   "starts_at": datetime.combine(october, time(13, 30), tzinfo=UTC).isoformat(),
                   "ends_at": datetime.combine(october, time(15), tzinfo=UTC).isoformat()}),
               f"New time: {TITLE}", "REQUEST", "CONFIRMED",
               (datetime.combine(october, time(9, 30)), datetime.combine(october, time(11))),
               (utc(october, 13, 30), utc(october, 15)),
               [f"was: {later_day:%A} {later_day.day} {later_day:%B %Y}, 2:00–3:30 PM EST",
                f"now: {october:%A} {october.day} {october:%B %Y}, 9:30–11:00 AM EDT"])

    link_changed = await step(lambda: events.update(event["id"], {"join_url": NEW_ROOM}),
                              f"Updated: {TITLE}", "REQUEST", "CONFIRMED",
                              (datetime.combine(october, time(9, 30)), datetime.combine(october, time(11))),
                              (utc(october, 13, 30), utc(october, 15)),
                              ["The meeting link has changed.", join])
    assert "The time has changed." not in text_of(link_changed) and "was:" not in text_of(link_changed)
    assert "another-room" not in text_of(link_changed)

    await step(lambda: events.cancel(event["id"]),
               f"Cancelled: {TITLE}", "CANCEL", "CANCELLED",
               (datetime.combine(october, time(9, 30)), datetime.combine(october, time(11))),
               (utc(october, 13, 30), utc(october, 15)),
               ["has been cancelled", "removes the event from your calendar"])

    assert steps == sorted(set(steps)), f"SEQUENCE must grow strictly: {steps}"
    assert len(steps) == 5 and len(smtp_server.messages()) == 5


async def test_a_registrant_who_cancels_leaves_the_calendar_and_the_waitlist_gets_an_invite_only_when_promoted(
    worker, smtp_server
):
    day = webinar_day()
    local = (datetime.combine(day, time(12)), datetime.combine(day, time(13)))
    in_utc = (utc(day, 17), utc(day, 18))
    event = await published_webinar(capacity=1)
    ada = await register(event, "Ada Lovelace", "ada@example.com")
    bob = await register(event, "Bob Waiting", "bob@example.com")
    assert bob["status"] == "waitlisted"
    await worker.run_once()
    token = registrations.personal_token(await registration_row(ada["id"]))
    ada_first = (await registration_row(ada["id"]))["calendar_uid"]
    bob_uid = (await registration_row(bob["id"]))["calendar_uid"]

    await registrations.cancel(token)  # Ada cancels; Bob gets her seat
    await worker.run_once()
    # Ada comes back (now waitlisted behind Bob), then Bob cancels and Ada gets the seat again.
    again = await register(event, "Ada Lovelace", "ada@example.com")
    assert again["id"] == ada["id"] and again["status"] == "waitlisted"
    await worker.run_once()
    await registrations.cancel(registrations.personal_token(await registration_row(bob["id"])))
    await worker.run_once()
    # Ada's return is a new registration: a new calendar entry, beside the cancelled first one.
    ada_again = (await registration_row(ada["id"]))["calendar_uid"]
    assert ada_again not in (ada_first, bob_uid)
    uids = {"ada@example.com": [ada_first, ada_first, None, ada_again], "bob@example.com": [None, bob_uid, bob_uid]}

    expected = {
        "ada@example.com": [
            (f"You're registered: {TITLE}", "REQUEST", "CONFIRMED"),
            (f"Your registration is cancelled: {TITLE}", "CANCEL", "CANCELLED"),
            (f"You're on the waiting list (number 1): {TITLE}", None, None),
            (f"A seat opened up, and it's yours: {TITLE}", "REQUEST", "CONFIRMED"),
        ],
        "bob@example.com": [
            (f"You're on the waiting list (number 1): {TITLE}", None, None),
            (f"A seat opened up, and it's yours: {TITLE}", "REQUEST", "CONFIRMED"),
            (f"Your registration is cancelled: {TITLE}", "CANCEL", "CANCELLED"),
        ],
    }
    for address, plan in expected.items():
        received = smtp_server.to(address)
        assert [m["Subject"] for m in received] == [subject for subject, _, _ in plan]
        sequences = []
        for message, (_, method, status), uid in zip(received, plan, uids[address]):
            if method is None:  # no seat, no calendar entry
                assert "text/calendar" not in parts(message) and "application/ics" not in parts(message)
                continue
            sequences.append(read_invite(message, method=method, status=status,
                                         uid=uid, local=local, in_utc=in_utc))
        assert sequences == sorted(set(sequences)), f"{address}: SEQUENCE must grow strictly: {sequences}"
    assert len(smtp_server.messages()) == 7
