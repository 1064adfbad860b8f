"""The registrant's personal page and join link, reached from their email."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from icalendar import Calendar

from events_app import db
from events_app.domain import registrations
from factories import published_event


async def _register(event: dict, email: str) -> tuple[dict, str, str]:
    view = await registrations.register(event, {"name": email.split("@")[0].title(), "email": email})
    row = (await db.fetch("SELECT * FROM registration WHERE id = {}", view["id"]))[0]
    return view, registrations.personal_token(row), registrations.join_token(row)


async def _snapshot() -> list:
    regs = await db.fetch("SELECT id, status, sequence, attended_at FROM registration ORDER BY id")
    mail = await db.fetch("SELECT COUNT(*) AS n FROM outbox")
    seats = await db.fetch("SELECT taken FROM event")
    return [regs, mail, seats]


async def test_personal_page_shows_status_and_get_changes_nothing(client):
    event = await published_event(capacity=1, slug="careers")
    _, ada, _ = await _register(event, "ada@example.org")
    _, grace, _ = await _register(event, "grace@example.org")
    before = await _snapshot()
    page = (await client.get(f"/r/{ada}")).text
    assert "Registered" in page and "ada@example.org" in page
    assert f'action="/r/{ada}/cancel"' in page and f"/r/{ada}.ics" in page and "Google Calendar" not in page
    waiting = (await client.get(f"/r/{grace}")).text
    assert "Waitlist – number 1" in waiting
    # A mail scanner that follows every link, cancel link included, changes nothing.
    for path in (f"/r/{ada}", f"/r/{ada}/cancel", f"/r/{grace}", f"/r/{ada}.ics"):
        await client.get(path)
    assert await _snapshot() == before


async def test_cancelling_frees_the_seat_for_the_first_waitlisted_person(client):
    event = await published_event(capacity=1, slug="careers")
    _, ada, _ = await _register(event, "ada@example.org")
    _, grace, _ = await _register(event, "grace@example.org")
    _, alan, _ = await _register(event, "alan@example.org")
    answer = await client.post(f"/r/{ada}/cancel", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith(f"/r/{ada}")
    assert "You cancelled this registration" in (await client.get(f"/r/{ada}")).text
    assert "Registered" in (await client.get(f"/r/{grace}")).text
    assert "Waitlist – number 1" in (await client.get(f"/r/{alan}")).text
    kinds = [(r["kind"], r["recipient"]) for r in await db.fetch("SELECT kind, recipient FROM outbox ORDER BY id")]
    assert ("registration_cancelled", "ada@example.org") in kinds
    assert ("registration_promoted", "grace@example.org") in kinds
    # Cancelling again is harmless: no second message, no second free seat.
    await client.post(f"/r/{ada}/cancel")
    assert (await db.fetch("SELECT taken FROM event"))[0]["taken"] == 1
    assert len(await db.fetch("SELECT id FROM outbox WHERE kind = 'registration_cancelled'")) == 1


async def test_registering_again_after_cancelling_keeps_the_calendar_uid(client):
    event = await published_event(slug="careers")
    first, ada, _ = await _register(event, "ada@example.org")
    await client.post(f"/r/{ada}/cancel")
    again, _, _ = await _register(event, "ada@example.org")
    assert again["id"] == first["id"] and again["status"] == "registered"
    row = (await db.fetch("SELECT sequence FROM registration WHERE id = {}", first["id"]))[0]
    assert row["sequence"] == 2, "cancel and re-register each moved SEQUENCE on"


async def test_personal_ics_uses_the_registration_uid(client):
    event = await published_event(slug="careers")
    view, ada, _ = await _register(event, "ada@example.org")
    cal = Calendar.from_ical((await client.get(f"/r/{ada}.ics")).content)
    (vevent,) = cal.walk("VEVENT")
    [row] = await db.fetch("SELECT calendar_uid FROM registration WHERE id = {}", view["id"])
    assert vevent["UID"] == row["calendar_uid"] and row["calendar_uid"].endswith("@testserver")


async def test_unknown_tokens_are_404(client):
    for path in ("/r/nope", "/j/nope", "/r/nope.ics"):
        assert (await client.get(path)).status_code == 404
    assert (await client.post("/r/nope/cancel")).status_code == 404


async def test_join_link_windows(client):
    now = datetime.now(timezone.utc)
    soon = await published_event(slug="soon", starts_at=(now + timedelta(days=1)).isoformat(),
                                 ends_at=(now + timedelta(days=1, hours=1)).isoformat())
    live = await published_event(slug="live", starts_at=(now + timedelta(minutes=10)).isoformat(),
                                 ends_at=(now + timedelta(minutes=70)).isoformat())
    _, _, early_join = await _register(soon, "ada@example.org")
    _, ada_live, live_join = await _register(live, "ada@example.org")
    _, grace_live, grace_join = await _register(live, "grace@example.org")

    early = await client.get(f"/j/{early_join}")
    assert early.status_code == 200 and "doors open 15 minutes before" in early.text
    assert "meet.example.org" not in early.text

    # While the doors are open the GET shows a page that joins by POST (itself, or with its
    # button) and records nothing: a mail scanner fetching the link is not a person attending.
    opened = await client.get(f"/j/{live_join}", follow_redirects=False)
    assert opened.status_code == 200 and f'<form method="post" action="/j/{live_join}"' in opened.text
    assert "Join the meeting" in opened.text and "<script>" in opened.text
    assert "form-action 'self' https://meet.example.org" in opened.headers["content-security-policy"]
    assert (await _attended(live, "ada@example.org")) is None
    joined = await client.post(f"/j/{live_join}", follow_redirects=False)
    assert joined.status_code == 303 and joined.headers["location"] == "https://meet.example.org/room"
    first = await _attended(live, "ada@example.org")
    assert first is not None
    again = await client.post(f"/j/{live_join}", follow_redirects=False)
    assert again.status_code == 303 and await _attended(live, "ada@example.org") == first, "recorded once"

    await client.post(f"/r/{grace_live}/cancel")
    dead = await client.get(f"/j/{grace_join}", follow_redirects=False)
    assert dead.status_code == 410 and "meet.example.org" not in dead.text
    refused = await client.post(f"/j/{grace_join}", follow_redirects=False)
    assert refused.status_code == 410 and "meet.example.org" not in refused.text
    assert (await _attended(live, "grace@example.org")) is None
    too_early = await client.post(f"/j/{early_join}", follow_redirects=False)
    assert too_early.status_code == 200 and "doors open 15 minutes before" in too_early.text
    assert (await _attended(soon, "ada@example.org")) is None

    await db.fetch("UPDATE event SET starts_at = {}, ends_at = {} WHERE id = {}",
                   now - timedelta(hours=2), now - timedelta(hours=1), live["id"])
    over = await client.get(f"/j/{live_join}", follow_redirects=False)
    assert over.status_code == 200 and "This event is over" in over.text
    assert "Watch the recording" not in over.text
    await db.fetch("UPDATE event SET recording_url = 'https://videos.example.org/rec' WHERE id = {}", live["id"])
    with_recording = await client.get(f"/j/{live_join}", follow_redirects=False)
    assert 'href="https://videos.example.org/rec"' in with_recording.text and "Watch the recording" in with_recording.text


async def _attended(event: dict, email: str):
    rows = await db.fetch("SELECT attended_at FROM registration WHERE email = {} AND event = {}", email, event["id"])
    return rows[0]["attended_at"]


async def test_once_the_event_has_started_a_cancel_changes_nothing_and_promotes_nobody(client):
    now = datetime.now(timezone.utc)
    event = await published_event(capacity=1, slug="live", starts_at=(now + timedelta(minutes=10)).isoformat(),
                                  ends_at=(now + timedelta(minutes=70)).isoformat())
    _, ada, _ = await _register(event, "ada@example.org")
    _, grace, _ = await _register(event, "grace@example.org")
    assert "Cancel my registration" in (await client.get(f"/r/{ada}")).text
    await db.fetch("UPDATE event SET starts_at = {}, version = version + 1 WHERE id = {}",
                   now - timedelta(minutes=5), event["id"])
    assert "Cancel my registration" not in (await client.get(f"/r/{ada}")).text
    before = await _snapshot()
    answer = await client.post(f"/r/{ada}/cancel", follow_redirects=False)
    assert answer.status_code == 409 and "has started" in answer.text
    assert await _snapshot() == before
    assert "Registered" in (await client.get(f"/r/{ada}")).text
    assert "Waitlist – number 1" in (await client.get(f"/r/{grace}")).text
    assert not await db.fetch("SELECT id FROM outbox WHERE kind IN ('registration_cancelled', 'registration_promoted')")
    # A waitlist place may still be left (it frees no seat): until the end.
    left = await client.post(f"/r/{grace}/cancel", follow_redirects=False)
    assert left.status_code == 303 and "You cancelled this registration" in (await client.get(f"/r/{grace}")).text
    assert (await db.fetch("SELECT taken FROM event"))[0]["taken"] == 1
