"""Helpers for the mail tests: a published webinar, registrations through the domain, and
readers for what arrived."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import icalendar

from events_app import db, settings
from events_app.domain import events, registrations
from events_app.mail.messages import message_id

TORONTO = ZoneInfo("America/Toronto")
TITLE = "Non-Academic Careers with Impact: Implementation Positions You Never Knew Existed"


def webinar_day() -> date:
    """A Tuesday in late November at least two months ahead: registration is open and Toronto
    is on standard time (EST), as for the real webinar of 29 November 2022."""
    today = date.today()
    year = today.year if today < date(today.year, 9, 1) else today.year + 1
    day = date(year, 11, 29)
    return day - timedelta(days=(day.weekday() - 1) % 7)


def expected_when(day: date) -> str:
    return f"{day:%A} {day.day} {day:%B %Y}, 12:00–1:00 PM EST"


async def published_webinar(capacity: int | None = None, **extra) -> dict:
    day = webinar_day()
    event = await events.create(
        {
            "title": TITLE,
            "summary": "Meet people who turned their research training into implementation careers.",
            "audience": "Graduate students, recent graduates and professionals",
            "starts_at": datetime.combine(day, time(12, 0)).isoformat(),
            "ends_at": datetime.combine(day, time(13, 0)).isoformat(),
            "timezone": "America/Toronto",
            "capacity": capacity,
            "join_url": "https://meet.example.com/secret-room",
            **extra,
        }
    )
    return await events.publish(event["id"])


async def register(event: dict, name: str, email: str) -> dict:
    return await registrations.register(await events.get(event["id"]), {"name": name, "email": email})


async def registration_row(reg_id: int) -> dict:
    return (await db.fetch("SELECT * FROM registration WHERE id = {}", reg_id))[0]


async def outbox_rows(kind: str | None = None) -> list[dict]:
    rows = await db.fetch("SELECT * FROM outbox ORDER BY id")
    return [r for r in rows if kind is None or r["kind"] == kind]


async def make_all_due() -> None:
    """Skip the backoff wait (it is correct behaviour; tests need not sit through it)."""
    await db.fetch("UPDATE outbox SET next_attempt_at = {} WHERE status = 'queued'", datetime(2000, 1, 1, tzinfo=ZoneInfo("UTC")))


def parts(message: EmailMessage) -> dict[str, EmailMessage]:
    """The leaf parts by content type."""
    return {part.get_content_type(): part for part in message.walk() if not part.is_multipart()}


def text_of(message: EmailMessage) -> str:
    return parts(message)["text/plain"].get_content()


def html_of(message: EmailMessage) -> str:
    return parts(message)["text/html"].get_content()


def invite_of(message: EmailMessage) -> tuple[str, icalendar.Calendar, icalendar.Event]:
    """(the part's method parameter, the calendar, its one VEVENT)."""
    part = parts(message)["text/calendar"]
    calendar = icalendar.Calendar.from_ical(part.get_content())
    vevents = calendar.walk("VEVENT")
    assert len(vevents) == 1
    return part.get_param("method"), calendar, vevents[0]


def row_message_id(row: dict) -> str:
    """The Message-ID outbox row `row` must carry on every attempt: `<outbox-ID.STAMP@host>`."""
    expected = message_id(row["id"], settings.get(), row["created_at"])
    assert expected.startswith(f"<outbox-{row['id']}.") and expected.endswith("@testserver>")
    return expected
