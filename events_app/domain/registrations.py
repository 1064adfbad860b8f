"""Registrations: take a seat or a waitlist place, cancel, promote, and look up by token.

Capacity holds under any concurrency because a seat is claimed by one conditional statement,
`UPDATE event SET taken = taken + 1 WHERE id = ? AND taken < capacity`, inside the transaction
that also writes the registration and its confirmation's outbox row: all three happen or none.
On SQLite the transaction is BEGIN IMMEDIATE on the process's one connection; on PostgreSQL the
UPDATE's row lock serialises claimants under READ COMMITTED. One person (event, email) holds at
most one row, enforced by a unique index; a repeat takes no second seat and re-sends the
confirmation at most once per `resend_interval_seconds`. What an anonymous caller is told
(`register_public`) is built from what they sent and the status a new address would get now,
never from the stored row: knowing an address reveals nothing about its registration.

The waitlist is served in arrival order (registration id). A freed seat goes to the first
waitlisted person in the same transaction that freed it, while registration is open
(`seat_offered`); who may cancel is one rule (`cancel_rule`) for pages, POST and staff.

On PostgreSQL the common case, a new address taking a free seat, is one statement (FAST_PG_SQL:
claim, registration row and outbox row in one round trip, atomic on its own, no BEGIN/COMMIT),
checked against the event version the caller validated with. Anything else (a repeat, a full
event, a changed event) falls back to the general path in a transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import uuid4

from .. import db, settings, tokens
from ..clock import now
from . import outbox, retention
from . import validation as v
from .errors import Conflict, NotFound, ValidationFailed
from .registration_input import clean_answers, clean_person

PURPOSE = "registration"
JOIN_PURPOSE = "join"

CLAIM_SQL = (
    "UPDATE event SET taken = taken + 1 WHERE id = {} AND (capacity IS NULL OR taken < capacity) RETURNING taken"
)
LOCK_EVENT_SQL = "UPDATE event SET taken = taken WHERE id = {}"
INSERT_SQL = (
    "INSERT INTO registration (event, email, name, answers, status, token_salt, "
    "sequence, subscribe, created_at, updated_at, confirmation_sent_at, calendar_uid) "
    "VALUES ({}, {}, {}, {}, {}, {}, 0, {}, {}, {}, {}, {}) RETURNING id"
)
# One round trip on PostgreSQL: the claim's row lock serialises seat-takers as CLAIM_SQL does;
# the version test means the caller's (possibly cached) event is the one that was validated;
# NOT EXISTS sends a repeat to the general path (a concurrent repeat hits the unique index and
# the whole statement rolls back, seat included). The outbox row is the one outbox.enqueue
# writes (tests/domain/test_registrations.py compares them).
FAST_PG_SQL = (
    "WITH claim AS (UPDATE event SET taken = taken + 1 WHERE id = {} AND version = {} "
    "AND (capacity IS NULL OR taken < capacity) "
    "AND NOT EXISTS (SELECT 1 FROM registration WHERE event = {} AND email = {}) RETURNING id), "
    "reg AS (INSERT INTO registration (event, email, name, answers, status, token_salt, sequence, "
    "subscribe, created_at, updated_at, confirmation_sent_at, calendar_uid) "
    "SELECT id, {}, {}, {}, 'registered', {}, 0, {}, {}, {}, {}, {} FROM claim RETURNING id, email), "
    "queued AS (INSERT INTO outbox (kind, recipient, payload, status, attempts, next_attempt_at, "
    "last_error, created_at) SELECT 'registration_confirmed', email, "
    "'{\"registration_id\":' || id || '}', 'queued', 0, {}, '', {} FROM reg RETURNING id) "
    "SELECT reg.id FROM reg, queued"
)
EXISTING_SQL = (
    "SELECT id, event, status, name, email, answers, created_at, confirmation_sent_at "
    "FROM registration WHERE event = {} AND email = {}"
)


def personal_token(row: dict) -> str:
    """The token in the registrant's `/r/` link (derived, never stored)."""
    return tokens.link(settings.get().secret_key, PURPOSE, row["id"], row["token_salt"])


def join_token(row: dict) -> str:
    """The token in the registrant's `/j/` join link: another purpose, another token."""
    return tokens.link(settings.get().secret_key, JOIN_PURPOSE, row["id"], row["token_salt"])


def new_calendar_uid() -> str:
    """A calendar UID (RFC 5545 3.8.4.7) for a new registration or event: random, so that no
    other database or installation behind the same address ever makes it again."""
    return f"{uuid4().hex}@{settings.get().host}"[:64]


async def calendar_uid(table: str, row: dict) -> str:
    """The stored calendar UID of `row` (a registration or event, `table` one of those names).

    A row from before UIDs were stored has "": it gets one the first time one is needed, once
    however many ask at the same moment (a conditional UPDATE, then the stored value is read).
    That value is the UID its invites (or public .ics) already carried, `reg-<id>@<host>` or
    `event-<id>@<host>`, so the entries people already hold keep following changes; every row
    made since has a random one (new_calendar_uid). Sets row["calendar_uid"]."""
    if row.get("calendar_uid"):
        return row["calendar_uid"]
    if table not in ("registration", "event"):
        raise ValueError(f"no calendar UID for {table!r}")
    legacy = f"{'reg' if table == 'registration' else 'event'}-{row['id']}@{settings.get().host}"[:64]
    await db.fetch(f"UPDATE {table} SET calendar_uid = {{}} WHERE id = {{}} AND calendar_uid = ''", legacy, row["id"])
    rows = await db.fetch(f"SELECT calendar_uid FROM {table} WHERE id = {{}}", row["id"])
    row["calendar_uid"] = rows[0]["calendar_uid"] if rows else legacy
    return row["calendar_uid"]


def check_open(event: dict, moment: datetime) -> None:
    """Raise Conflict with a reason unless the event takes registrations now."""
    if event["status"] == "draft":
        raise Conflict("This event is not published yet", "draft")
    if event["status"] == "cancelled":
        raise Conflict("This event has been cancelled", "cancelled")
    if event["ends_at"] <= moment:
        raise Conflict("This event is over", "past")
    closes = event["registration_closes_at"] or event["ends_at"]
    if closes <= moment:
        raise Conflict("Registration for this event has closed", "closed")


class StaleEvent(Exception):
    """The event changed after the caller read it (another process changed it)."""


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
        from . import events  # events imports this module

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
            # back, seat included; the next attempt finds the winner's row and answers like it.
            if not db.is_unique_violation(exc) or attempt == 2:
                raise
    if subscribe:
        # The bulletin opt-in starts the same double opt-in as the subscribe form.
        from . import subscriptions

        await subscriptions.subscribe(email, name, await subscriptions.topic_ids(["bulletin"]), source="registration")
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


async def _as_new(event_id: int) -> tuple[str, int | None]:
    """What a new address would get now: a free seat, or the next place on the waitlist."""
    rows = await db.fetch("SELECT capacity, taken FROM event WHERE id = {}", event_id)
    if rows[0]["capacity"] is None or rows[0]["taken"] < rows[0]["capacity"]:
        return "registered", None
    waiting = await db.fetch(
        "SELECT COUNT(*) AS n FROM registration WHERE event = {} AND status = 'waitlisted'", event_id
    )
    return "waitlisted", waiting[0]["n"] + 1


async def _register_fast_pg(event, name, email, answers, subscribe, moment) -> dict | None:
    """A new address taking a free seat in one statement (PostgreSQL); None when the general
    path must decide (a repeat, no free seat, or the event changed since it was read)."""
    queued_at = outbox.now()  # the outbox's own clock, as outbox.enqueue stamps it
    rows = await db.fetch(
        FAST_PG_SQL,
        event["id"],
        event["version"],
        event["id"],
        email,
        email,
        name,
        json.dumps(answers),
        tokens.new_salt(),
        subscribe,
        moment,
        moment,
        moment,
        new_calendar_uid(),
        queued_at,
        queued_at,
    )
    if not rows:
        return None
    return await _shown(
        {
            "id": rows[0]["id"],
            "event": event["id"],
            "name": name,
            "email": email,
            "status": "registered",
            "answers": answers,
            "created_at": moment,
        }
    )


async def _register_once(event, name, email, answers, subscribe, moment) -> dict:
    """One attempt, run atomically by the caller (db.atomic)."""
    interval = timedelta(seconds=settings.get().resend_interval_seconds)
    if db.is_postgres():
        # The caller may hold a cached event (events.current trusts its cache there, and the
        # fast path's version test sent us here): judge nothing on a changed event.
        rows = await db.fetch("SELECT version FROM event WHERE id = {}", event["id"])
        if not rows or rows[0]["version"] != event["version"]:
            raise StaleEvent()
    existing = await db.fetch(EXISTING_SQL, event["id"], email)
    if existing and existing[0]["status"] != "cancelled":
        row = existing[0]
        sent = row["confirmation_sent_at"]
        if sent is None or moment - sent >= interval:
            await db.fetch("UPDATE registration SET confirmation_sent_at = {} WHERE id = {}", moment, row["id"])
            await outbox.enqueue("registration_confirmed", email, {"registration_id": row["id"], "resend": True})
        return {**await _shown(row), "as_new": await _as_new(event["id"])}
    claimed = await db.fetch(CLAIM_SQL, event["id"])
    status = "registered" if claimed else "waitlisted"
    if not claimed and db.is_postgres():
        # A failed claim locks nothing on PostgreSQL; take the event row's lock so that people
        # join the waitlist one at a time and each counts an exact place. (On SQLite the
        # transaction is already exclusive.)
        await db.fetch(LOCK_EVENT_SQL, event["id"])
    if existing:
        # Came back after cancelling: the same row, but a new registration and so a new calendar
        # entry (the cancelled one stays cancelled in the person's calendar); SEQUENCE grows on.
        reg_id = existing[0]["id"]
        await db.fetch(
            "UPDATE registration SET status = {}, name = {}, answers = {}, subscribe = {}, "
            "sequence = sequence + 1, cancelled_at = NULL, created_at = {}, updated_at = {}, "
            "confirmation_sent_at = {}, calendar_uid = {} WHERE id = {}",
            status,
            name,
            json.dumps(answers),
            subscribe,
            moment,
            moment,
            moment,
            new_calendar_uid(),
            reg_id,
        )
    else:
        rows = await db.fetch(
            INSERT_SQL,
            event["id"],
            email,
            name,
            json.dumps(answers),
            status,
            tokens.new_salt(),
            subscribe,
            moment,
            moment,
            moment,
            new_calendar_uid(),
        )
        reg_id = rows[0]["id"]
    await outbox.enqueue("registration_confirmed", email, {"registration_id": reg_id})
    # Built from what was just written (no re-read); the waitlist place is counted inside the
    # transaction so that it is exact.
    return await _shown(
        {
            "id": reg_id,
            "event": event["id"],
            "name": name,
            "email": email,
            "status": status,
            "answers": answers,
            "created_at": moment,
        }
    )


async def view(reg_id: int) -> dict:
    """The registration as its owner and the API see it (no token, no salt)."""
    rows = await db.fetch(
        "SELECT id, event, name, email, status, answers, created_at, attended_at FROM registration WHERE id = {}",
        reg_id,
    )
    if not rows:
        raise NotFound("No such registration")
    return await _shown(rows[0])


async def _shown(row: dict) -> dict:
    answers = row["answers"]
    result = {
        "id": row["id"],
        "event_id": row["event"],
        "name": row["name"],
        "email": row["email"],
        "status": row["status"],
        "answers": json.loads(answers) if isinstance(answers, str) else answers,
        "created_at": row["created_at"],
        "waitlist_position": None,
    }
    if row["status"] == "waitlisted":
        result["waitlist_position"] = await waitlist_position(row["event"], row["id"])
    return result


async def waitlist_position(event_id: int, reg_id: int) -> int:
    rows = await db.fetch(
        "SELECT COUNT(*) AS n FROM registration WHERE event = {} AND status = 'waitlisted' AND id <= {}",
        event_id,
        reg_id,
    )
    return rows[0]["n"]


async def _by_link(token: str, purpose: str, message: str) -> dict:
    row_id = tokens.link_row_id(token)
    rows = await db.fetch("SELECT * FROM registration WHERE id = {}", row_id) if row_id else []
    if not rows or not tokens.link_matches(token, settings.get().secret_key, purpose, row_id, rows[0]["token_salt"]):
        raise NotFound(message)
    if retention.is_purged(rows[0]):  # every use of the link (page, .ics, join, cancel) ends here
        raise Conflict("This registration's details were deleted after the event.", "purged")
    return rows[0]


async def by_token(token: str) -> dict:
    """The full registration row for a personal (/r/) token, or NotFound."""
    return await _by_link(token, PURPOSE, "This link is not valid. It may have been mistyped or the event removed.")


async def by_join_token(token: str) -> dict:
    """The full registration row for a join (/j/) token, or NotFound."""
    return await _by_link(token, JOIN_PURPOSE, "This join link is not valid.")


@dataclass(frozen=True)
class CancelRule:
    allowed: bool
    offers_seat: bool  # whether a seat this frees goes to the first waitlisted person
    reason: str = ""  # why not, for a 409: "past", "cancelled"
    message: str = ""


def seat_offered(event: dict, moment: datetime | None = None) -> bool:
    """A free seat is offered to the waitlist only while registration is open (published, before
    the closing time): like pretix, whose waiting list stops when sales end. Nobody is emailed
    "a seat opened up" for an event that is over, closed or cancelled."""
    moment = moment or now()
    return event["status"] == "published" and moment < (event["registration_closes_at"] or event["ends_at"])


def cancel_rule(event: dict, registration: dict, moment: datetime | None = None) -> CancelRule:
    """Who may cancel, and whether the freed seat is offered: the one rule behind the personal
    page's button, its POST, and staff cancelling for someone. An active registration may be
    cancelled until the event ends, unless the event itself was cancelled (everyone was told).
    After the end nothing changes: the record of who held a seat stays as it was."""
    moment = moment or now()
    if registration["status"] not in ("registered", "waitlisted"):
        return CancelRule(False, False, registration["status"], "This registration is already cancelled")
    if event["status"] == "cancelled":
        return CancelRule(False, False, "cancelled", "This event has been cancelled: there is nothing to cancel")
    if event["ends_at"] <= moment:
        return CancelRule(False, False, "past", "This event is over: a registration can no longer be cancelled")
    return CancelRule(True, seat_offered(event, moment))


async def _event_state(event_id: int) -> dict:
    rows = await db.fetch(
        "SELECT status, starts_at, ends_at, registration_closes_at FROM event WHERE id = {}", event_id
    )
    return rows[0]


async def cancel(token: str) -> dict:
    """Cancel by the registrant's token, as `cancel_rule` allows (Conflict otherwise). A
    registered person gets a calendar CANCEL and, while `seat_offered`, their seat goes to the
    first waitlisted person. Repeating it changes nothing."""
    row = await by_token(token)
    if row["status"] == "cancelled":
        return await view(row["id"])
    rule = cancel_rule(await _event_state(row["event"]), row)
    if not rule.allowed:
        raise Conflict(rule.message, rule.reason)
    async with db.transaction():
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
                break
    return await view(row["id"])


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
