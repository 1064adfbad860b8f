"""Registrations: take a seat or a waitlist place, cancel, promote, and look up by token.

A seat is claimed by one conditional statement inside the transaction that also writes the
registration and its confirmation's outbox row (domain/seats.py holds the statements and the
ways of running them; on PostgreSQL new addresses arriving together for one event share one
statement and one commit, seats.GroupClaims). One person (event, email) holds at most one row,
enforced by a unique index; a repeat takes no second seat and re-sends the confirmation at
most once per `resend_interval_seconds`. What an anonymous caller is told (`register_public`) is
built from what they sent and the status a new address would get now, never from the stored
row: knowing an address reveals nothing about its registration. Whether an event takes
registrations is events.state(); the links and tokens live in domain/registration_links.py (re-exported here).

The waitlist is served in arrival order (registration id). A freed seat goes to the first
waitlisted person in the same transaction that freed it, while registration is open
(`seat_offered`). Who may cancel is one rule, `may_cancel` (a seat until the event starts, a
waitlist place until it ends), for the personal page's button, its POST, a calendar's
"decline" and staff alike; `cancel` enforces it
and, when staff cancel for someone, writes the audit entry in its transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import db
from ..clock import now
from . import audit, events, outbox
from . import validation as v
from .errors import Conflict, NotFound, ValidationFailed
from .questions import clean_answers
from .registration_input import clean_person
from .registration_links import (  # noqa: F401  (re-exported: callers know them as registrations.*)
    JOIN_PURPOSE,
    LINKS_KIND,
    PURPOSE,
    by_join_token,
    by_token,
    calendar_uid,
    join_token,
    link_items,
    new_calendar_uid,
    personal_token,
    send_links,
)
from .seats import (  # noqa: F401  (CLAIM_SQL, INSERT_SQL, EXISTING_SQL: bench/ and tests read them here)
    CLAIM_SQL,
    EXISTING_SQL,
    FAST_PG_SQL,
    INSERT_SQL,
    LOCK_EVENT_SQL,
    Raced,
    StaleEvent,
    _register_fast_pg,
    _register_once,
    _shown,
    waitlist_position,
)

REFUSALS = {
    "draft": "This event is not published yet",
    "cancelled": "This event has been cancelled",
    "past": "This event is over",
    "closed": "Registration for this event has closed",
}


def check_open(event: dict, moment: datetime) -> None:
    """Raise Conflict with a reason (the event's state) unless the event takes registrations
    now, i.e. unless events.state() says "open"."""
    shown = events.state(event, moment)
    if shown != "open":
        raise Conflict(REFUSALS[shown], shown)


async def register(event: dict, data: dict) -> dict:
    """Register `data` (name, email, answers, subscribe) for `event`.

    Returns the registration as stored, for trusted callers (staff tools, the CLI, tests); the
    public doors answer with `register_public` instead. Raises ValidationFailed (all field
    errors at once) or Conflict (not open). Writes the registration, the seat and the
    confirmation's outbox row atomically. `event` may be a cached copy (events.current): a
    refusal, or a version that moved meanwhile, is judged again on the current event."""
    return (await _judged(event, data))[0]


async def register_public(event: dict, data: dict) -> dict:
    """Register exactly as `register` does, and return what an anonymous caller may be told:
    built only from what they sent (cleaned) and the status a NEW address would get at this
    moment. A repeat (the address holds an active registration) therefore answers like a first
    registration would now, e.g. "waitlisted" with the next place on a full event, and shows
    nothing stored; its owner learns the truth from the re-sent confirmation. `id` is always
    None: a row id would tell an old registration from a new one."""
    return (await _judged(event, data))[1]


async def _judged(event: dict, data: dict) -> tuple[dict, dict]:
    try:
        return await _register(event, data)
    except (ValidationFailed, Conflict, StaleEvent):
        fresh = await events.current(event["id"], verify=True)
        if fresh["version"] == event["version"]:
            raise
        return await _register(fresh, data)


async def _register(event: dict, data: dict) -> tuple[dict, dict]:
    """(the registration as stored, the anonymous answer)."""
    if not isinstance(data, dict):
        raise ValidationFailed({"body": "must be a JSON object"})
    errors: dict[str, str] = {}
    name = email = ""
    answers: dict = {}
    try:
        name, email = clean_person(data)
    except ValidationFailed as exc:
        errors.update(exc.fields)
    try:
        answers = clean_answers(event, data.get("answers"))
    except ValidationFailed as exc:
        errors.update(exc.fields)
    try:
        subscribe = v.boolean(data.get("subscribe"), "subscribe")
    except ValidationFailed as exc:
        errors.update(exc.fields)
    if errors:
        raise ValidationFailed(errors)
    moment = now()
    check_open(event, moment)
    for attempt in range(3):
        try:
            result = None
            if db.is_postgres():
                result = await _register_fast_pg(event, name, email, answers, subscribe, moment)
            if result is None:
                result = await db.atomic(lambda: _register_once(event, name, email, answers, subscribe, moment))
            break
        except Exception as exc:
            # Two requests for one address at once (PostgreSQL): the loser's transaction was rolled
            # back, seat included (a unique violation, or Raced for a comeback); the next attempt
            # finds the winner's row and answers like it.
            if not (db.is_unique_violation(exc) or isinstance(exc, Raced)) or attempt == 2:
                raise
    if subscribe:
        # The bulletin opt-in starts the same double opt-in as the subscribe form.
        from . import subscriptions

        await subscriptions.subscribe(email, name, await subscriptions.topic_ids(["bulletin"]), source="registration")
    assert result is not None  # the loop either broke with a result or raised
    status, position = result.pop("as_new", None) or (result["status"], result["waitlist_position"])
    answer = {
        "id": None,
        "event_id": event["id"],
        "name": name,
        "email": email,
        "status": status,
        "answers": answers,
        "waitlist_position": position,
    }
    return result, answer


async def view(reg_id: int) -> dict:
    """The registration as its owner and the API see it (no token, no salt)."""
    rows = await db.fetch(
        "SELECT id, event, name, email, status, answers, created_at, attended_at FROM registration WHERE id = {}",
        reg_id,
    )
    if not rows:
        raise NotFound("No such registration")
    return await _shown(rows[0])


@dataclass(frozen=True)
class CancelRule:
    allowed: bool
    offers_seat: bool  # whether a seat this frees goes to the first waitlisted person
    reason: str = ""  # why not, for a 409: "cancelled" (registration or event), "started", "past"
    message: str = ""


def seat_offered(event: dict, moment: datetime | None = None) -> bool:
    """A free seat is offered to the waitlist only while registration is open (published, before
    the closing time): like pretix, whose waiting list stops when sales end. Nobody is emailed
    "a seat opened up" for an event that is over, closed or cancelled."""
    return events.state(event, moment) == "open"


def may_cancel(registration: dict, event: dict, at: datetime | None = None) -> CancelRule:
    """Who may cancel, and whether the freed seat is offered: the one rule behind the personal
    page's button, its POST, a calendar's "decline" and staff cancelling for someone. A seat may
    be given back until the event starts and a waitlist place left until it ends, unless the
    event itself was cancelled (everyone was told). From the start on a seat stays taken: the
    record of who held one stays as it was, and nobody is promoted into an event under way."""
    at = at or now()
    if registration["status"] not in ("registered", "waitlisted"):
        return CancelRule(False, False, registration["status"], "This registration is already cancelled")
    if event["status"] == "cancelled":
        return CancelRule(False, False, "cancelled", "This event has been cancelled: there is nothing to cancel")
    if event["ends_at"] <= at:
        return CancelRule(False, False, "past", "This event is over: a registration can no longer be cancelled")
    if event["starts_at"] <= at and registration["status"] == "registered":
        return CancelRule(False, False, "started", "This event has started: a seat can no longer be given back")
    return CancelRule(True, seat_offered(event, at))


async def _event_state(event_id: int) -> dict:
    rows = await db.fetch(
        "SELECT status, starts_at, ends_at, registration_closes_at FROM event WHERE id = {}", event_id
    )
    return rows[0]


async def cancel(token: str, *, by_staff: bool = False, actor: int | None = None) -> dict:
    """Cancel by the registrant's token, as `may_cancel` allows (Conflict otherwise, nothing
    changed). A registered person gets a calendar CANCEL and, while `seat_offered`, their seat
    goes to the first waitlisted person. Repeating it changes nothing. `by_staff`: a staff
    member (`actor`, None for the command line) cancels for the person, audited as
    "registration.cancel" with "<name> <email>" in the same transaction."""
    row = await by_token(token)
    if row["status"] == "cancelled":
        return await view(row["id"])
    async with db.transaction():
        # Judged inside the transaction, on the event as it is now.
        rule = may_cancel(row, await _event_state(row["event"]))
        if not rule.allowed:
            raise Conflict(rule.message, rule.reason)
        # One conditional UPDATE per prior status, so that a concurrent promotion cannot make us
        # free a seat that was never held, or keep one that was.
        for was in ("registered", "waitlisted"):
            moment = now()
            done = await db.fetch(
                "UPDATE registration SET status = 'cancelled', cancelled_at = {}, updated_at = {}, "
                "sequence = sequence + 1 WHERE id = {} AND status = {} RETURNING id",
                moment,
                moment,
                row["id"],
                was,
            )
            if done:
                # The entry to remove is this registration's, even if the person registers again
                # (a new entry) before the message goes.
                await outbox.enqueue(
                    "registration_cancelled",
                    row["email"],
                    {"registration_id": row["id"], "was": was, "uid": row["calendar_uid"]},
                )
                if was == "registered":
                    await db.fetch("UPDATE event SET taken = taken - 1 WHERE id = {}", row["event"])
                    if rule.offers_seat:
                        await promote_waitlisted(row["event"])
                if by_staff:
                    await audit.record(actor, "registration.cancel", "registration", row["id"], staff_summary(row))
                break
    return await view(row["id"])


def may_edit(registration: dict, event: dict, at: datetime | None = None) -> CancelRule:
    """Whether the person may still correct their name and answers: while the registration is
    active (a seat or a waitlist place) and the event neither cancelled nor over. The same rule
    for the personal page's form and its POST."""
    at = at or now()
    if registration["status"] not in ("registered", "waitlisted"):
        return CancelRule(False, False, "cancelled", "This registration is cancelled: there is nothing to change")
    if event["status"] == "cancelled":
        return CancelRule(False, False, "cancelled", "This event has been cancelled")
    if event["ends_at"] <= at:
        return CancelRule(False, False, "past", "This event is over: the details can no longer be changed")
    return CancelRule(True, False)


def clean_details(event: dict, data: Any) -> tuple[str, dict]:
    """(name, answers) from the personal page's correction form, checked by the same rules as a
    registration (a one-line name of at most 200 characters; the event's questions). Raises
    ValidationFailed with every bad field at once."""
    if not isinstance(data, dict):
        raise ValidationFailed({"body": "must be an object"})
    errors: dict[str, str] = {}
    name = ""
    answers: dict = {}
    try:
        name = v.text(data, "name", required=True, max_len=200, multiline=False) or ""
    except ValidationFailed as exc:
        errors.update(exc.fields)
    try:
        answers = clean_answers(event, data.get("answers"))
    except ValidationFailed as exc:
        errors.update(exc.fields)
    if errors:
        raise ValidationFailed(errors)
    return name, answers


async def update_details(token: str, data: Any) -> dict:
    """The registrant corrects their name and answers (by their personal token). Checked with
    `clean_details`; allowed as `may_edit` says (Conflict otherwise, nothing changed). The seat,
    the place on the waitlist and the address stay as they are. Returns the registration as
    `view` shows it."""
    row = await by_token(token)
    event = await events.get(row["event"])
    rule = may_edit(row, event)
    if not rule.allowed:
        raise Conflict(rule.message, rule.reason)
    name, answers = clean_details(event, data)
    moment = now()
    done = await db.fetch(
        "UPDATE registration SET name = {}, answers = {}, updated_at = {} "
        "WHERE id = {} AND status IN ('registered', 'waitlisted') RETURNING id",
        name,
        json.dumps(answers),
        moment,
        row["id"],
    )
    if not done:  # cancelled meanwhile
        raise Conflict("This registration is cancelled: there is nothing to change", "cancelled")
    return await view(row["id"])


def staff_summary(row: dict) -> str:
    """The audit summary of a staff action on one registration: whom it concerned."""
    return f"{row['name']} <{row['email']}>"


async def promote_waitlisted(event_id: int) -> list[int]:
    """Give free seats to waitlisted people in arrival order, while `seat_offered`; each is told
    by email with a calendar invite. Runs inside the caller's transaction."""
    promoted: list[int] = []
    if not seat_offered(await _event_state(event_id)):
        return promoted
    while True:
        waiting = await db.fetch(
            "SELECT id, email FROM registration WHERE event = {} AND status = 'waitlisted' ORDER BY id LIMIT 1",
            event_id,
        )
        if not waiting or not await db.fetch(CLAIM_SQL, event_id):
            return promoted
        moment = now()
        await db.fetch(
            "UPDATE registration SET status = 'registered', promoted_at = {}, updated_at = {}, "
            "sequence = sequence + 1 WHERE id = {}",
            moment,
            moment,
            waiting[0]["id"],
        )
        await outbox.enqueue("registration_promoted", waiting[0]["email"], {"registration_id": waiting[0]["id"]})
        promoted.append(waiting[0]["id"])


async def for_event(event_id: int) -> list[dict]:
    """Every registration of an event for staff: status, answers, attendance."""
    rows = await db.fetch(
        "SELECT id, name, email, status, answers, subscribe, created_at, cancelled_at, promoted_at, "
        "attended_at FROM registration WHERE event = {} ORDER BY id",
        event_id,
    )
    position = 0
    out = []
    for row in rows:
        item = dict(row, answers=json.loads(row["answers"]))
        if row["status"] == "waitlisted":
            position += 1
            item["waitlist_position"] = position
        else:
            item["waitlist_position"] = None
        out.append(item)
    return out
