"""A registration may start from this process's cached copy of a published event
(events.current trusts it without reading the version), so the version is read again inside the
registration's own transaction: a change made by another process, which this process's cache
never heard of, is still judged before a seat is taken."""

from __future__ import annotations

import pytest
from factories import published_event

from events_app import db
from events_app.domain import events, registrations
from events_app.domain.errors import Conflict, ValidationFailed


async def _changed_elsewhere(event_id: int, sets: str, *args) -> None:
    """What another process's change looks like here: the row and its version move, and this
    process's cache is not told (no events.forget)."""
    await db.fetch(f"UPDATE event SET {sets}, version = version + 1 WHERE id = {{}}", *args, event_id)


async def test_a_cancellation_elsewhere_refuses_a_registration_from_the_cached_copy():
    event = await published_event(capacity=10)
    assert (await events.current(event["id"]))["status"] == "published"
    await _changed_elsewhere(event["id"], "status = 'cancelled'")
    copy = await events.current(event["id"])
    assert copy["status"] == "published", "the cached copy is what the request starts from"

    with pytest.raises(Conflict) as refused:
        await registrations.register_public(copy, {"name": "Ada", "email": "ada@example.org"})
    assert refused.value.reason == "cancelled"
    assert (await db.fetch("SELECT COUNT(*) AS n FROM registration"))[0]["n"] == 0
    assert (await db.fetch("SELECT COUNT(*) AS n FROM outbox"))[0]["n"] == 0
    assert (await events.get(event["id"]))["taken"] == 0


async def test_a_question_added_elsewhere_is_asked_of_a_registration_from_the_cached_copy():
    event = await published_event(capacity=10)
    await events.current(event["id"])
    question = '[{"key": "stage", "label": "Stage", "type": "single", "options": ["A", "B"], "required": true}]'
    await _changed_elsewhere(event["id"], "questions = {}", question)

    with pytest.raises(ValidationFailed) as refused:
        await registrations.register_public(
            await events.current(event["id"]), {"name": "Ada", "email": "ada@example.org"}
        )
    assert refused.value.fields == {"answers.stage": "is required"}
    assert (await db.fetch("SELECT COUNT(*) AS n FROM registration"))[0]["n"] == 0


async def test_an_unchanged_cached_copy_registers_and_a_repeat_answers_like_a_new_address():
    event = await published_event(capacity=1)
    copy = await events.current(event["id"])
    first = await registrations.register_public(copy, {"name": "Ada", "email": "ada@example.org"})
    assert first["status"] == "registered"
    again = await registrations.register_public(
        await events.current(event["id"]), {"name": "Ada", "email": "ada@example.org"}
    )
    assert again["status"] == "waitlisted" and again["waitlist_position"] == 1
    other = await registrations.register(await events.current(event["id"]), {"name": "Bo", "email": "bo@example.org"})
    assert other["status"] == "waitlisted" and other["waitlist_position"] == 1
    assert (await events.get(event["id"]))["taken"] == 1


async def test_repeats_comebacks_and_a_full_event_keep_the_seat_count_exact():
    """On SQLite a new address takes its seat before its row is written (the row only when the
    address has none); a repeat gives that seat back. Every way through ends with `taken` equal
    to the registered rows, and one confirmation per new registration or comeback."""
    event = await published_event(capacity=2)
    ada, bo, cy = ({"name": n, "email": f"{n.lower()}@example.org"} for n in ("Ada", "Bo", "Cy"))

    async def state() -> tuple[int, list[tuple[str, str]]]:
        rows = await db.fetch("SELECT email, status FROM registration WHERE event = {} ORDER BY id", event["id"])
        return (await events.get(event["id"]))["taken"], [(r["email"], r["status"]) for r in rows]

    first = await registrations.register(await events.current(event["id"]), ada)
    assert first["status"] == "registered"
    assert await registrations.register(await events.current(event["id"]), ada) == first, "a repeat, seat free"
    assert await state() == (1, [("ada@example.org", "registered")])

    await registrations.register(await events.current(event["id"]), bo)
    assert (await registrations.register(await events.current(event["id"]), cy))["status"] == "waitlisted"
    repeat = await registrations.register_public(await events.current(event["id"]), bo)
    assert (repeat["status"], repeat["waitlist_position"]) == ("waitlisted", 2), "a repeat on a full event"
    assert await state() == (
        2,
        [("ada@example.org", "registered"), ("bo@example.org", "registered"), ("cy@example.org", "waitlisted")],
    )

    token = registrations.personal_token(
        (await db.fetch("SELECT id, token_salt FROM registration WHERE id = {}", first["id"]))[0]
    )
    await registrations.cancel(token)  # Cy is promoted into Ada's seat
    assert (await registrations.register(await events.current(event["id"]), ada))["status"] == "waitlisted"
    await _changed_elsewhere(event["id"], "capacity = {}", 3)  # the cached copy still says 2
    await registrations.cancel(token)  # Ada leaves the waitlist
    back = await registrations.register(await events.current(event["id"]), ada)
    assert back["status"] == "registered", "a comeback takes the seat the capacity change freed"
    taken, rows = await state()
    assert taken == 3 == sum(status == "registered" for _, status in rows)
    confirmations = await db.fetch(
        "SELECT COUNT(*) AS n FROM outbox WHERE kind = 'registration_confirmed' AND payload NOT LIKE '%resend%'"
    )
    assert confirmations[0]["n"] == 5  # Ada, Bo, Cy, Ada waitlisted again, Ada back
