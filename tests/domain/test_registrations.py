"""Registration rules: one seat per person, re-sent confirmations, waitlist promotion."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from events_app import db
from events_app.domain import events, registrations
from factories import published_event


async def _confirmations(email: str) -> int:
    rows = await db.fetch(
        "SELECT COUNT(*) AS n FROM outbox WHERE kind = 'registration_confirmed' AND recipient = {}", email
    )
    return rows[0]["n"]


async def test_same_email_resends_the_confirmation_at_most_every_few_minutes():
    event = await published_event()
    person = {"name": "Ada", "email": "ada@example.org"}
    first = await registrations.register(event, person)
    for _ in range(3):
        assert await registrations.register(event, person) == first
    assert await _confirmations("ada@example.org") == 1, "no re-send inside the interval"

    await db.fetch(
        "UPDATE registration SET confirmation_sent_at = {} WHERE id = {}",
        datetime.now(timezone.utc) - timedelta(minutes=6), first["id"],
    )
    again = await registrations.register(event, person)
    assert again == first
    assert await _confirmations("ada@example.org") == 2
    resend = (await db.fetch("SELECT payload FROM outbox ORDER BY id DESC LIMIT 1"))[0]["payload"]
    assert '"resend":true' in resend
    assert (await events.get(event["id"]))["taken"] == 1


async def test_the_same_email_at_once_takes_one_seat():
    event = await published_event(capacity=5)
    person = {"name": "Ada", "email": "ada@example.org"}
    results = await asyncio.gather(*(registrations.register(event, person) for _ in range(20)))
    assert len({r["id"] for r in results}) == 1
    assert (await events.get(event["id"]))["taken"] == 1
    assert (await db.fetch("SELECT COUNT(*) AS n FROM registration"))[0]["n"] == 1


async def test_raising_the_capacity_promotes_the_waitlist_in_order():
    event = await published_event(capacity=1)
    people = [f"p{i}@example.org" for i in range(4)]
    for email in people:
        await registrations.register(event, {"name": "P", "email": email})
    await events.update(event["id"], {"capacity": 3})
    rows = await db.fetch("SELECT email, status FROM registration ORDER BY id")
    assert [r["status"] for r in rows] == ["registered", "registered", "registered", "waitlisted"]
    promoted = await db.fetch("SELECT recipient FROM outbox WHERE kind = 'registration_promoted' ORDER BY id")
    assert [r["recipient"] for r in promoted] == people[1:3]
    view = await registrations.view((await db.fetch("SELECT id FROM registration WHERE email = {}", people[3]))[0]["id"])
    assert view["waitlist_position"] == 1


async def test_unlimited_capacity_never_waitlists():
    event = await published_event(capacity=None)
    for i in range(30):
        assert (await registrations.register(event, {"name": "P", "email": f"p{i}@example.org"}))["status"] == "registered"


async def test_changes_to_time_raise_sequence_and_queue_one_message_per_registered_person():
    event = await published_event(capacity=1)
    await registrations.register(event, {"name": "A", "email": "a@example.org"})
    await registrations.register(event, {"name": "B", "email": "b@example.org"})  # waitlisted
    assert await events.count_affected(event["id"], {"summary": "only words"}) == 0
    new_start = (event["starts_at"] + timedelta(days=1)).isoformat()
    new_end = (event["ends_at"] + timedelta(days=1)).isoformat()
    assert await events.count_affected(event["id"], {"starts_at": new_start, "ends_at": new_end}) == 1
    _, notified = await events.update(event["id"], {"starts_at": new_start, "ends_at": new_end})
    assert notified == 1
    rows = await db.fetch("SELECT recipient, payload FROM outbox WHERE kind = 'event_changed'")
    assert [r["recipient"] for r in rows] == ["a@example.org"]
    assert '"changes":["starts_at","ends_at"]' in rows[0]["payload"]
    seq = await db.fetch("SELECT email, sequence FROM registration ORDER BY id")
    assert [(r["email"], r["sequence"]) for r in seq] == [("a@example.org", 1), ("b@example.org", 0)]


async def test_cancelling_the_event_tells_registered_and_waitlisted():
    event = await published_event(capacity=1)
    await registrations.register(event, {"name": "A", "email": "a@example.org"})
    await registrations.register(event, {"name": "B", "email": "b@example.org"})
    _, notified = await events.cancel(event["id"])
    assert notified == 2
    again = await events.cancel(event["id"])
    assert again[1] == 0, "cancelling twice tells nobody twice"
    rows = await db.fetch("SELECT recipient FROM outbox WHERE kind = 'event_cancelled' ORDER BY recipient")
    assert [r["recipient"] for r in rows] == ["a@example.org", "b@example.org"]


async def test_ticking_the_bulletin_box_starts_the_double_opt_in():
    event = await published_event()
    await registrations.register(event, {"name": "Ada", "email": "ada@example.org", "subscribe": True})
    await registrations.register(event, {"name": "Bob", "email": "bob@example.org", "subscribe": False})
    subscribers = await db.fetch("SELECT email, status, source FROM subscriber")
    assert [(s["email"], s["status"], s["source"]) for s in subscribers] == [("ada@example.org", "pending", "registration")]
    kinds = await db.fetch("SELECT recipient FROM outbox WHERE kind = 'subscription_confirm'")
    assert [k["recipient"] for k in kinds] == ["ada@example.org"]


async def test_coming_back_after_cancelling_twice_at_once_takes_one_seat():
    """The same person registers again after cancelling, from two tabs at once: one comeback
    (one seat, one new confirmation, SEQUENCE up once); the other answers as a repeat. On
    PostgreSQL both used to find the row cancelled and both took a seat for it."""
    event = await published_event(capacity=5)
    person = {"name": "Ada", "email": "ada@example.org"}
    first = await registrations.register(event, person)
    salt = (await db.fetch("SELECT token_salt FROM registration WHERE id = {}", first["id"]))[0]["token_salt"]
    await registrations.cancel(registrations.personal_token({"id": first["id"], "token_salt": salt}))
    assert (await events.get(event["id"]))["taken"] == 0
    back = await asyncio.gather(*(registrations.register(event, person) for _ in range(6)))
    assert {(b["id"], b["status"]) for b in back} == {(first["id"], "registered")}
    assert (await events.get(event["id"]))["taken"] == 1
    row = (await db.fetch("SELECT status, sequence FROM registration WHERE id = {}", first["id"]))[0]
    assert (row["status"], row["sequence"]) == ("registered", 2), "cancelled once, back once"
    assert await _confirmations("ada@example.org") == 2, "the first and the comeback's"
