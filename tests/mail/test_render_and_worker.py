"""Rendering (times, escaping, template lookup) and the worker's handling of rows that cannot or
should not be sent, with the in-memory transport."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timezone
from pathlib import Path

import pytest

import events_app
from events_app import db, resources, settings, timefmt
from events_app.domain import outbox, registrations
from events_app.mail import messages, render
from events_app.mail.transport import MemoryTransport
from events_app.mail.worker import Worker

from .helpers import html_of, outbox_rows, parts, published_webinar, register, registration_row, text_of

UTC = timezone.utc


@pytest.mark.parametrize(
    ("start", "end", "zone", "expected"),
    [
        ((2022, 11, 29, 17), (2022, 11, 29, 18), "America/Toronto", "Tuesday 29 November 2022, 12:00–1:00 PM EST"),
        ((2022, 11, 29, 16, 30), (2022, 11, 29, 17, 30), "America/Toronto", "Tuesday 29 November 2022, 11:30 AM–12:30 PM EST"),
        ((2022, 6, 7, 13), (2022, 6, 7, 14, 15), "America/Toronto", "Tuesday 7 June 2022, 9:00–10:15 AM EDT"),
        ((2022, 11, 29, 9), (2022, 11, 29, 10), "Europe/Istanbul", "Tuesday 29 November 2022, 12:00–1:00 PM UTC+03"),
        ((2022, 11, 30, 3), (2022, 11, 30, 6), "America/Toronto",
         "Tuesday 29 November 2022, 10:00 PM EST – Wednesday 30 November 2022, 1:00 AM EST"),
    ],
)
def test_format_range_says_the_time_as_people_read_it(start, end, zone, expected):
    assert timefmt.format_range(datetime(*start, tzinfo=UTC), datetime(*end, tzinfo=UTC), zone) == expected


def test_templates_are_found_in_the_repo_and_in_an_installed_package(tmp_path):
    assert render.emails_dir() == Path(events_app.__file__).resolve().parent.parent / "emails"
    assert (render.emails_dir() / "registration_confirmed" / "body.html").is_file()
    package = tmp_path / "site-packages" / "events_app"
    (package / "emails").mkdir(parents=True)
    assert resources.find("emails", package) == package / "emails"
    checkout = tmp_path / "checkout"
    (checkout / "templates").mkdir(parents=True)
    assert resources.find("templates", checkout / "events_app") == checkout / "templates"


def test_every_message_renders_with_escaped_html_and_a_one_line_subject():
    event = {"title": "Careers <script>alert(1)</script> & more", "summary": "A <b>bold</b> talk", "timezone": "UTC"}
    links = {k: f"http://t/{k}?a=1&b=2" for k in ("site", "events", "event", "manage", "join", "google", "outlook", "ics")}
    base = {
        "name": "Ada", "event": event, "when": "soon", "links": links, "organizer_name": "Centre",
        "site_host": "t", "has_invite": True, "show_join": True, "status": "registered", "resend": False,
        "position": 3, "was": "registered", "changes": ["The time has changed."], "time_changed": True,
    }
    for kind in ("registration_confirmed", "registration_waitlisted", "registration_promoted",
                 "registration_cancelled", "event_changed", "event_cancelled"):
        subject, text, html = render.render(kind, base)
        assert "\n" not in subject and event["title"] in subject, kind
        assert "<script>" not in html and "&lt;script&gt;" in html, kind
        assert event["title"] in text, kind
        assert 'style="' in html, kind  # CSS inlined
        assert "http://t/manage?a=1&amp;b=2" in html or kind == "event_cancelled", kind


async def test_a_confirmation_overtaken_by_a_cancellation_is_not_sent():
    transport = MemoryTransport()
    worker = Worker(settings.get(), transport)
    event = await published_webinar()
    reg = await register(event, "Ada Lovelace", "ada@example.com")
    await registrations.cancel(registrations.personal_token(await registration_row(reg["id"])))

    assert await worker.run_once() == 2

    # A REQUEST after the cancellation would put a dead entry in the calendar: only the CANCEL goes.
    [message] = transport.messages
    assert parts(message)["text/calendar"].get_param("method") == "CANCEL"
    confirmed, cancelled = await outbox_rows()
    assert confirmed["status"] == "failed" and "cancelled before this message was sent" in confirmed["last_error"]
    assert cancelled["status"] == "sent"


async def test_a_row_whose_registration_vanished_fails_with_the_reason():
    transport = MemoryTransport()
    worker = Worker(settings.get(), transport)
    event = await published_webinar()
    reg = await register(event, "Ada Lovelace", "ada@example.com")
    await db.fetch("DELETE FROM registration WHERE id = {}", reg["id"])

    assert await worker.run_once() == 1

    assert transport.messages == []
    [row] = await outbox_rows()
    assert row["status"] == "failed" and f"registration {reg['id']} no longer exists" in row["last_error"]


async def test_header_injection_through_the_name_is_impossible():
    transport = MemoryTransport()
    worker = Worker(settings.get(), transport)
    event = await published_webinar()
    # The door refuses such a name now (validation: names are one line); a row stored before
    # that must still not inject a header.
    await register(event, "Ada", "ada@example.com")
    await db.fetch("UPDATE registration SET name = {} WHERE email = 'ada@example.com'", "Ada\r\nBcc: victim@example.net")
    await worker.run_once()

    [message] = transport.messages
    assert message["Bcc"] is None
    assert [a.addr_spec for a in message["To"].addresses] == ["ada@example.com"]
    assert "victim@example.net" not in message.as_string().split("\n\n", 1)[0].replace(
        message["To"], ""
    )


async def test_the_loop_survives_errors_and_stops_when_asked(monkeypatch):
    transport = MemoryTransport()
    worker = Worker(dataclasses.replace(settings.get(), worker_poll_seconds=0.01), transport)
    event = await published_webinar()
    await register(event, "Ada Lovelace", "ada@example.com")
    real_claim, calls = outbox.claim, []

    async def flaky_claim(limit, claim_timeout, recover=True):
        calls.append(limit)
        if len(calls) == 1:
            raise ConnectionError("database went away")
        return await real_claim(limit, claim_timeout, recover)

    monkeypatch.setattr(outbox, "claim", flaky_claim)
    transport.fail_next.append(RuntimeError("unexpected bug in a transport"))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    for _ in range(400):  # wait for the outcome, not for a time
        rows = await outbox_rows()
        if rows[0]["status"] == "queued" and rows[0]["attempts"] == 1:
            break
        await asyncio.sleep(0.005)
    # The unexpected error became a retry with its reason; make it due and let the loop go on.
    assert "unexpected bug" in rows[0]["last_error"]
    await db.fetch("UPDATE outbox SET next_attempt_at = {}", datetime(2000, 1, 1, tzinfo=UTC))
    for _ in range(400):
        if transport.messages:
            break
        await asyncio.sleep(0.005)
    stop.set()
    await asyncio.wait_for(task, timeout=5)

    assert len(transport.messages) == 1
    assert "Thank you for registering" in text_of(transport.messages[0])
    assert "/j/" in html_of(transport.messages[0])
    [row] = await outbox_rows()
    assert row["status"] == "sent" and row["attempts"] == 2


def test_message_ids_are_derived_from_the_row_and_differ_across_databases():
    config = settings.get()
    first = datetime(2026, 1, 5, 10, 0, 0, 123456, tzinfo=UTC)
    assert messages.message_id(12, config, first) == messages.message_id(12, config, first)
    # Row 12 of a fresh database is another message: it must not look like a duplicate.
    assert messages.message_id(12, config, first) != messages.message_id(12, config, datetime(2026, 2, 1, tzinfo=UTC))
    assert messages.message_id(12, config, first).startswith("<outbox-12.")


async def test_a_kind_this_worker_does_not_know_is_kept_for_a_newer_one():
    transport = MemoryTransport()
    worker = Worker(settings.get(), transport)
    await outbox.enqueue("issue_released", "ada@example.com", {"issue_id": 1})

    assert await worker.run_once() == 1

    [row] = await outbox_rows()
    assert row["status"] == "queued" and row["attempts"] == 1
    assert "issue_released" in row["last_error"]
    assert transport.messages == []
