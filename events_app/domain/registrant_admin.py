"""What staff do to one registration from the workspace: cancel it for the person, promote a
waitlisted person ahead of the queue, resend a confirmation. Each is atomic and queues the email
the person would get anyway (domain/registrations.py owns the registrant's own actions)."""

from __future__ import annotations

from piccolo.query.functions.aggregate import Count

from .. import db
from ..tables import Registration
from . import audit, outbox, retention
from .errors import Conflict, NotFound
from .registrations import _event_state, cancel, now, personal_token, staff_summary, view


async def _row(reg_id: int) -> dict:
    """The registration staff act on; Conflict once its details were deleted after the event
    (nothing may be sent to, or changed for, a person who is no longer on record)."""
    rows = await db.fetch("SELECT * FROM registration WHERE id = {}", reg_id)
    if not rows:
        raise NotFound("No such registration")
    if retention.is_purged(rows[0]):
        raise Conflict("This registration's details were deleted after the event.", "purged")
    return rows[0]


async def cancel_by_staff(reg_id: int, actor: int | None = None) -> dict:
    """Cancel someone's registration for them: exactly what their own cancel button does (a
    calendar CANCEL, the seat to the first waitlisted person)."""
    return await cancel(personal_token(await _row(reg_id)), by_staff=True, actor=actor)


async def promote(reg_id: int, actor: int | None = None) -> dict:
    """Give a waitlisted person a seat now, ahead of the queue and even when the event is full
    (staff override: `taken` may then exceed the capacity, and nobody else is promoted until it
    falls below). They are told by email with the calendar invite. Not once the event is over
    (Conflict): a seat offer for a past event helps nobody."""
    row = await _row(reg_id)
    if (await _event_state(row["event"]))["ends_at"] <= now():
        raise Conflict("This event is over: nobody can be given a seat now", "past")
    async with db.transaction():
        moment = now()
        done = await db.fetch(
            "UPDATE registration SET status = 'registered', promoted_at = {}, updated_at = {}, "
            "sequence = sequence + 1 WHERE id = {} AND status = 'waitlisted' RETURNING id",
            moment,
            moment,
            reg_id,
        )
        if not done:
            raise Conflict(f"Only a waitlisted person can be promoted; this one is {row['status']}", row["status"])
        await db.fetch("UPDATE event SET taken = taken + 1 WHERE id = {}", row["event"])
        await outbox.enqueue("registration_promoted", row["email"], {"registration_id": reg_id})
        await audit.record(actor, "registration.promote", "registration", reg_id, staff_summary(row))
    return await view(reg_id)


async def resend_confirmation(reg_id: int, actor: int | None = None) -> dict:
    """Queue the confirmation again (with the same links and calendar UID) for a registered or
    waitlisted person."""
    row = await _row(reg_id)
    if row["status"] == "cancelled":
        raise Conflict("This registration is cancelled: there is nothing to confirm", "cancelled")
    async with db.transaction():
        await db.fetch("UPDATE registration SET confirmation_sent_at = {} WHERE id = {}", now(), reg_id)
        await outbox.enqueue("registration_confirmed", row["email"], {"registration_id": reg_id, "resend": True})
        await audit.record(actor, "registration.resend", "registration", reg_id, staff_summary(row))
    return await view(reg_id)


async def status_counts(event_id: int) -> dict[str, int]:
    """How many of the event's registrations are waitlisted and cancelled (the staff view of an
    event adds these to its seat count)."""
    rows = (
        await Registration.select(Registration.status, Count(alias="n"))
        .where(Registration.event == event_id)
        .group_by(Registration.status)
    )
    found = {r["status"]: int(r["n"]) for r in rows}
    return {"waitlisted": found.get("waitlisted", 0), "cancelled": found.get("cancelled", 0)}
