"""The messages domain/schedule.py queues (reminder, follow_up_attended, follow_up_missed): their
wording, their escaping, and the rows that must not be sent any more, with the in-memory
transport. The clock-driven journeys are in tests/domain/test_schedule.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from events_app import db, settings
from events_app.domain import outbox
from events_app.mail import messages, render
from events_app.mail.transport import MemoryTransport
from events_app.mail.worker import Worker

from .helpers import TITLE, outbox_rows, parts, published_webinar, register, text_of

UTC = timezone.utc


@pytest.mark.parametrize(
    ("minutes", "words"),
    [(1, "1 minute"), (30, "30 minutes"), (60, "1 hour"), (90, "90 minutes"), (120, "2 hours"),
     (1440, "24 hours"), (1500, "25 hours"), (2880, "2 days"), (10080, "7 days")],
)
def test_a_reminder_says_how_far_ahead_in_the_unit_people_use(minutes, words):
    assert messages.in_words(minutes) == words


def test_the_new_messages_render_escaped_with_a_one_line_subject():
    event = {"title": "Careers <script>alert(1)</script> & more", "summary": "", "timezone": "UTC",
             "doors_open_minutes": 15}
    links = {k: f"http://t/{k}?a=1&b=2" for k in ("site", "events", "event", "manage", "join")}
    base = {"name": "Ada <b>", "event": event, "when": "soon", "links": links, "organizer_name": "Centre",
            "site_host": "t", "has_invite": False, "show_join": True, "starts_in": "1 hour",
            "recording_url": "https://v.example/rec?a=1&b=2"}
    for kind, subject in (("reminder", "Starts in 1 hour: "), ("follow_up_attended", "Thank you for joining: "),
                          ("follow_up_missed", "Sorry we missed you: ")):
        got_subject, text, html = render.render(kind, base)
        assert got_subject == subject + event["title"]
        assert "<script>" not in html and "&lt;script&gt;" in html and "Ada &lt;b&gt;" in html, kind
        assert event["title"] in text and 'style="' in html, kind
        if kind == "reminder":
            assert "http://t/join?a=1&amp;b=2" in html and "http://t/manage?a=1&amp;b=2" in html
        else:
            assert "https://v.example/rec?a=1&amp;b=2" in html and "https://v.example/rec?a=1&b=2" in text


async def _send(kind: str, payload: dict) -> tuple[list, dict]:
    transport = MemoryTransport()
    await outbox.enqueue(kind, "ada@example.com", payload)
    await Worker(settings.get(), transport).run_once()
    return transport.messages, (await outbox_rows())[-1]


async def test_a_reminder_for_an_event_already_over_is_dropped():
    event = await published_webinar()
    reg = await register(event, "Ada Lovelace", "ada@example.com")
    past = datetime.now(UTC) - timedelta(hours=3)
    await db.fetch("UPDATE event SET starts_at = {}, ends_at = {} WHERE id = {}", past, past + timedelta(hours=1), event["id"])
    await db.fetch("DELETE FROM outbox")

    sent, row = await _send("reminder", {"registration_id": reg["id"], "offset": 60, "starts_at": past.isoformat()})

    assert sent == [] and row["status"] == "failed" and "the event is over" in row["last_error"]


async def test_a_follow_up_says_what_is_true_when_it_goes():
    event = await published_webinar(recording_url="https://v.example/rec")
    reg = await register(event, "Ada Lovelace", "ada@example.com")
    await db.fetch("DELETE FROM outbox")
    # Queued as a no-show, but her attendance was recorded before the worker got to it.
    await db.fetch("UPDATE registration SET attended_at = {} WHERE id = {}", event["starts_at"], reg["id"])

    [message], row = await _send("follow_up_missed", {"registration_id": reg["id"]})

    assert message["Subject"] == f"Thank you for joining: {TITLE}"
    assert "https://v.example/rec" in text_of(message) and "text/calendar" not in parts(message)
    assert row["status"] == "sent"


async def test_a_reminder_queued_before_the_registrant_cancelled_is_dropped():
    event = await published_webinar()
    reg = await register(event, "Ada Lovelace", "ada@example.com")
    await db.fetch("DELETE FROM outbox")
    await outbox.enqueue("reminder", "ada@example.com",
                         {"registration_id": reg["id"], "offset": 60, "starts_at": event["starts_at"].isoformat()})
    await db.fetch("UPDATE registration SET status = 'cancelled' WHERE id = {}", reg["id"])
    transport = MemoryTransport()

    await Worker(settings.get(), transport).run_once()

    [row] = await outbox_rows()
    assert transport.messages == [] and row["status"] == "failed" and "registration is cancelled" in row["last_error"]
