"""Taking a seat or a waitlist place: the statements and the two ways of running them.

Capacity holds under any concurrency because a seat is claimed by one conditional statement,
CLAIM_SQL, inside the transaction that also writes the registration and its confirmation's outbox
row: all three happen or none. On SQLite the transaction is BEGIN IMMEDIATE on the process's one
connection; on PostgreSQL the UPDATE's row lock serialises claimants under READ COMMITTED. On
PostgreSQL the common case, a new address taking a free seat, is one statement (FAST_PG_SQL).
domain/registrations.py decides when to call these (after checking the person, the answers and
that the event is open); the SQL texts are fixed so that db.fetch compiles each once, and bench/
imports them to measure the same statements.

Why fixed SQL and not Piccolo's query builder here: building and compiling one query with the
builder costs about 50-100 us, more than running it (shared/DESIGN.md), and a registration runs
three. Measured (bench/registration.py, 2 cores, 64 clients, 30 Nov 2026): 4,436 registrations/s
on SQLite, 0.41x a bare Litestar route, p99 23 ms; bench/registration_pg.py: 492/s on PostgreSQL,
1.0x the raw asyncpg statement behind a bare route (FAST_PG_SQL is that statement).
"""

from __future__ import annotations

import json
from datetime import timedelta

from .. import db, settings, tokens
from . import outbox
from .registration_links import new_calendar_uid

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


class StaleEvent(Exception):
    """The event changed after the caller read it (another process changed it)."""


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
