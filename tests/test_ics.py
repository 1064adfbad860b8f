"""events_app/ics.py: invites and feeds as calendar clients read them."""

from __future__ import annotations

from datetime import datetime, time, timezone
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import icalendar

from events_app import ics

UTC = timezone.utc
EVENT = {
    "id": 7,
    "slug": "non-academic-careers",
    "title": "Non-Academic Careers with Impact: Implementation Positions You Never Knew Existed",
    "summary": "Meet people who turned research training into implementation careers.",
    "timezone": "America/Toronto",
    "starts_at": datetime(2022, 11, 29, 17, 0, tzinfo=UTC),
    "ends_at": datetime(2022, 11, 29, 18, 0, tzinfo=UTC),
    "join_url": "https://meet.example.com/secret-room",
    "status": "published",
    "version": 3,
    "updated_at": datetime(2022, 11, 1, 9, 30, tzinfo=UTC),
}
REGISTRATION = {"id": 42, "name": "Ada Lovelace", "email": "ada@example.com", "sequence": 2,
                "calendar_uid": "0f6c2a1e9b8d4c7fa1e2b3c4d5e6f708@events.example.org"}
EVENT["calendar_uid"] = "9a8b7c6d5e4f40312a1b2c3d4e5f6a7b@events.example.org"
FEED = dict(base_url="https://events.example.org", organizer_name="Implementation Centre",
            organizer_email="events@example.org")
LINKS = {
    "manage_url": "https://events.example.org/r/MANAGE",
    "join_url_personal": "https://events.example.org/j/JOIN",
    "event_url": "https://events.example.org/events/non-academic-careers",
}


def make_invite(method="REQUEST", event=EVENT, registration=REGISTRATION) -> bytes:
    return ics.invite(
        event, registration, method=method, organizer_name="Implementation Centre",
        organizer_email="events@example.org", **LINKS,
    )


def only_vevent(data: bytes) -> tuple[icalendar.Calendar, icalendar.Event]:
    calendar = icalendar.Calendar.from_ical(data)
    [vevent] = calendar.walk("VEVENT")
    return calendar, vevent


def test_an_invite_has_what_calendar_clients_need():
    data = make_invite()
    calendar, vevent = only_vevent(data)
    assert str(calendar["METHOD"]) == "REQUEST"
    assert str(calendar["VERSION"]) == "2.0" and "PRODID" in calendar
    assert str(vevent["UID"]) == REGISTRATION["calendar_uid"]  # stored, never built from the row id
    assert vevent["SEQUENCE"] == 2
    assert str(vevent["STATUS"]) == "CONFIRMED"
    assert vevent.decoded("DTSTAMP").tzinfo is not None
    organizer = vevent["ORGANIZER"]
    assert str(organizer) == "mailto:events@example.org" and organizer.params["CN"] == "Implementation Centre"
    attendee = vevent["ATTENDEE"]
    assert not isinstance(attendee, list)
    assert str(attendee) == "mailto:ada@example.com"
    assert attendee.params["CN"] == "Ada Lovelace"
    assert (attendee.params["RSVP"], attendee.params["PARTSTAT"], attendee.params["ROLE"]) == (
        "FALSE", "ACCEPTED", "REQ-PARTICIPANT",
    )
    # The personal join link is the location; the meeting's own link appears nowhere.
    assert str(vevent["LOCATION"]) == LINKS["join_url_personal"]
    assert str(vevent["URL"]) == LINKS["event_url"]
    description = str(vevent["DESCRIPTION"])
    assert LINKS["join_url_personal"] in description and LINKS["manage_url"] in description
    assert b"meet.example.com" not in data


def test_the_time_is_noon_in_toronto_with_its_timezone_definition():
    data = make_invite()
    calendar, vevent = only_vevent(data)
    assert b"DTSTART;TZID=America/Toronto:20221129T120000\r\n" in data
    assert b"DTEND;TZID=America/Toronto:20221129T130000\r\n" in data
    [vtimezone] = calendar.walk("VTIMEZONE")
    assert str(vtimezone["TZID"]) == "America/Toronto"
    start = vevent.decoded("DTSTART")
    assert start.astimezone(ZoneInfo("America/Toronto")).time() == time(12, 0)
    assert start.astimezone(UTC) == EVENT["starts_at"]


def test_lines_are_crlf_and_folded_at_75_octets_without_splitting_characters():
    event = dict(EVENT, title="Carrières non académiques — à l’œuvre " * 6, summary="Zoë ✓ " * 40)
    data = make_invite(event=event)
    assert data.endswith(b"\r\n") and b"\n" not in data.replace(b"\r\n", b"")
    for line in data.split(b"\r\n"):
        assert len(line) <= 75
        line.decode("utf-8")  # a fold never cuts a multi-byte character in two
    _, vevent = only_vevent(data)
    assert str(vevent["SUMMARY"]) == event["title"].strip()


def test_control_characters_are_stripped():
    event = dict(EVENT, title="Careers\x00 with\x07 Impact\r\nX-INJECTED:1", summary="one\x1b[31m\r\ntwo")
    registration = dict(REGISTRATION, name='Ada\x0b "The Countess"\nLovelace')
    data = make_invite(event=event, registration=registration)
    assert not any(byte < 0x20 and byte not in (0x0D, 0x0A) for byte in data)
    _, vevent = only_vevent(data)
    assert str(vevent["SUMMARY"]) == "Careers with Impact X-INJECTED:1"
    assert "X-INJECTED" not in vevent  # it stayed text, not a property
    assert str(vevent["DESCRIPTION"]).startswith("one[31m\ntwo")
    assert vevent["ATTENDEE"].params["CN"] == "Ada 'The Countess' Lovelace"


def test_a_cancel_keeps_the_uid_and_says_cancelled():
    request = only_vevent(make_invite())[1]
    calendar, cancel = only_vevent(make_invite("CANCEL", registration=dict(REGISTRATION, sequence=3)))
    assert str(calendar["METHOD"]) == "CANCEL"
    assert str(cancel["STATUS"]) == "CANCELLED"
    assert cancel["UID"] == request["UID"]
    assert cancel["SEQUENCE"] > request["SEQUENCE"]


def test_a_feed_publishes_every_event_with_stable_uids():
    other = dict(EVENT, id=8, slug="second", title="Second webinar", status="cancelled", version=5,
                 calendar_uid="second@events.example.org")
    first = ics.event_feed([EVENT, other], name="Implementation Centre events", **FEED)
    again = ics.event_feed([EVENT, other], name="Implementation Centre events", **FEED)
    assert first == again  # same events, same bytes: safe to cache
    calendar = icalendar.Calendar.from_ical(first)
    assert str(calendar["METHOD"]) == "PUBLISH"
    vevents = calendar.walk("VEVENT")
    assert [str(v["UID"]) for v in vevents] == [EVENT["calendar_uid"], "second@events.example.org"]
    assert str(calendar["NAME"]) == "Implementation Centre events"
    assert all(str(v["ORGANIZER"]) == "mailto:events@example.org" for v in vevents)
    assert [v["SEQUENCE"] for v in vevents] == [3, 5]
    assert [str(v["STATUS"]) for v in vevents] == ["CONFIRMED", "CANCELLED"]
    assert str(vevents[0]["URL"]) == "https://events.example.org/events/non-academic-careers"
    assert b"meet.example.com" not in first and b"ATTENDEE" not in first
    assert len(calendar.walk("VTIMEZONE")) == 1


def test_an_empty_feed_is_a_valid_calendar():
    calendar = icalendar.Calendar.from_ical(ics.event_feed([], name="x", **FEED))
    assert str(calendar["METHOD"]) == "PUBLISH" and calendar.walk("VEVENT") == []


def test_add_to_calendar_links_carry_the_utc_times():
    links = ics.calendar_links(EVENT, base_url="https://events.example.org/")
    google = parse_qs(urlsplit(links["google"]).query)
    assert links["google"].startswith("https://calendar.google.com/calendar/render?")
    assert google["action"] == ["TEMPLATE"]
    assert google["dates"] == ["20221129T170000Z/20221129T180000Z"]
    assert google["text"] == [EVENT["title"]]
    outlook = parse_qs(urlsplit(links["outlook"]).query)
    assert links["outlook"].startswith("https://outlook.live.com/calendar/0/deeplink/compose?")
    assert (outlook["startdt"], outlook["enddt"]) == (["2022-11-29T17:00:00Z"], ["2022-11-29T18:00:00Z"])
    assert outlook["subject"] == [EVENT["title"]]
    assert links["ics"] == "https://events.example.org/events/non-academic-careers.ics"
    assert "meet.example.com" not in links["google"] + links["outlook"]
    personal = ics.calendar_links(EVENT, base_url="https://e.org", location="https://e.org/j/T")
    assert parse_qs(urlsplit(personal["google"]).query)["location"] == ["https://e.org/j/T"]
