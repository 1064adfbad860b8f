"""Public pages as a visitor without JavaScript uses them: list, event page, form, calendar files."""

from __future__ import annotations

import re

from icalendar import Calendar

from events_app import db
from events_app.domain import events
from factories import published_event

QUESTIONS = [
    {"key": "stage", "label": "Career stage", "type": "single", "options": ["Student", "Graduate"], "required": True},
    {"key": "topics", "label": "Topics of interest", "type": "multiple", "options": ["Jobs", "Skills", "Networks"]},
    {"key": "first", "label": "Is this your first webinar?", "type": "yesno"},
    {"key": "question", "label": "A question for the panel", "type": "text"},
]


async def test_event_list_shows_upcoming_first_then_past_and_hides_drafts(client):
    await published_event(title="Past webinar", starts_at="2022-11-29T12:00", ends_at="2022-11-29T13:00")
    await published_event(title="Later webinar", starts_at="2031-02-01T12:00", ends_at="2031-02-01T13:00")
    await published_event(title="Sooner webinar", starts_at="2031-01-01T12:00", ends_at="2031-01-01T13:00")
    await published_event(title="Secret draft", status="draft")
    page = (await client.get("/events")).text
    assert page.index("Sooner webinar") < page.index("Later webinar") < page.index("Past webinar")
    assert "Secret draft" not in page
    assert 'href="webcal://' in page


async def test_event_page_shows_time_in_its_zone_audience_description_and_seats(client):
    await published_event(
        slug="careers", starts_at="2030-11-29T12:00", ends_at="2030-11-29T13:00", capacity=3,
        description="Meet **practitioners**.\n\n<script>alert(1)</script>",
        audience="Graduate students, recent graduates and career changers",
    )
    page = (await client.get("/events/careers")).text
    assert "Friday 29 November 2030, 12:00–1:00 PM EST" in page
    assert 'data-local-range="2030-11-29T17:00:00+00:00|2030-11-29T18:00:00+00:00"' in page
    assert "Friday 29 November 2030, 5:00–6:00 PM UTC" in page  # the no-JavaScript fallback
    assert "Graduate students, recent graduates and career changers" in page
    assert "<strong>practitioners</strong>" in page
    assert "<script>alert(1)</script>" not in page
    assert "3 seats left" in page
    assert 'action="/events/careers/register"' in page
    assert '<label for="email">' in page


async def test_registration_form_keeps_input_and_shows_errors_next_to_fields(client):
    await published_event(slug="careers", questions=QUESTIONS)
    answer = await client.post(
        "/events/careers/register",
        data={"name": "Ada Lovelace", "email": "not-an-email", "q_topics": ["Jobs", "Skills"], "q_question": "Salaries?"},
    )
    assert answer.status_code == 400
    page = answer.text
    assert 'value="Ada Lovelace"' in page and 'value="not-an-email"' in page
    assert 'value="Salaries?"' in page
    assert re.search(r'id="email"[^>]*aria-invalid="true"', page)
    assert 'id="err-email"' in page and 'id="err-answers-stage"' in page
    assert re.search(r'value="Jobs" checked', page) and re.search(r'value="Skills" checked', page)
    assert (await db.fetch("SELECT COUNT(*) AS n FROM registration"))[0]["n"] == 0


async def test_registration_form_registers_and_then_waitlists(client):
    event = await published_event(slug="careers", capacity=1, questions=QUESTIONS)
    form = {"name": "Ada", "email": "ada@example.org", "q_stage": "Student", "q_topics": ["Jobs", "Networks"],
            "q_first": "yes", "subscribe": "yes"}
    answer = await client.post("/events/careers/register", data=form)
    assert answer.status_code == 303  # to a thank-you page that can be reopened
    answer = await client.get(answer.headers["location"])
    assert answer.status_code == 200
    assert "You're registered" in answer.text and "ada@example.org" in answer.text
    row = (await db.fetch("SELECT status, answers, subscribe FROM registration WHERE email = 'ada@example.org'"))[0]
    assert row["status"] == "registered" and bool(row["subscribe"]) is True
    assert '"topics": ["Jobs", "Networks"]' in row["answers"] and '"first": true' in row["answers"]

    page = (await client.get("/events/careers")).text
    assert "Join the waitlist" in page
    second = await client.post(
        "/events/careers/register", data={**form, "email": "grace@example.org"}, follow_redirects=True
    )
    assert "You're on the waitlist" in second.text and "number <strong>1</strong>" in second.text
    assert (await events.get(event["id"]))["taken"] == 1


async def test_closed_and_cancelled_events_show_no_form_and_refuse_posts(client):
    event = await published_event(slug="careers")
    await events.cancel(event["id"])
    page = (await client.get("/events/careers")).text
    assert "has been cancelled" in page and "<form" not in page
    answer = await client.post("/events/careers/register", data={"name": "A", "email": "a@example.org"})
    assert answer.status_code == 409 and "cancelled" in answer.text
    assert (await client.get("/events/no-such-event")).status_code == 404


async def test_event_ics_and_calendar_feed(client):
    career = await published_event(slug="careers", tags=["career"], starts_at="2030-11-29T12:00", ends_at="2030-11-29T13:00")
    await published_event(slug="other", title="Other event")
    await published_event(slug="hidden", title="Draft", status="draft")
    one = await client.get("/events/careers.ics")
    assert one.headers["content-type"].startswith("text/calendar")
    cal = Calendar.from_ical(one.content)
    assert cal["METHOD"] == "PUBLISH"
    (vevent,) = cal.walk("VEVENT")
    career_uid = (await db.fetch("SELECT calendar_uid FROM event WHERE id = {}", career["id"]))[0]["calendar_uid"]
    assert vevent["UID"] == career_uid and career_uid.endswith("@testserver")
    assert vevent.decoded("DTSTART").hour == 12 and str(vevent.decoded("DTSTART").tzinfo) == "America/Toronto"
    again = Calendar.from_ical((await client.get("/events/careers.ics")).content)
    assert again.walk("VEVENT")[0]["UID"] == vevent["UID"], "UIDs are stable across fetches"
    assert (await client.get("/events/hidden.ics")).status_code == 404

    feed = Calendar.from_ical((await client.get("/calendar.ics")).content)
    assert {str(e["SUMMARY"]) for e in feed.walk("VEVENT")} == {"Non-Academic Careers with Impact", "Other event"}
    tagged = Calendar.from_ical((await client.get("/calendar.ics?tag=career")).content)
    assert [str(e["UID"]) for e in tagged.walk("VEVENT")] == [career_uid]
    assert "meet.example.org" not in (await client.get("/calendar.ics")).text


async def test_root_redirects_to_events(client):
    answer = await client.get("/")
    assert answer.status_code in (301, 302, 307, 308) and answer.headers["location"] == "/events"
