"""Taking a seat or a waitlist place: the statements and the ways of running them.

Capacity holds under any concurrency because a seat is claimed by one conditional statement,
CLAIM_SQL, inside the transaction that also writes the registration and its confirmation's outbox
row: all three happen or none. On SQLite the transaction is BEGIN IMMEDIATE on the process's one
connection; on PostgreSQL the UPDATE's row lock serialises claimants under READ COMMITTED.

On PostgreSQL new addresses take their seats in groups (GroupClaims, GROUP_PG_SQL): those that
arrive for one event while the previous group's statement is in flight go together in the next
one, a single statement and so a single commit, in arrival order, each with its own row, result,
outbox row, calendar UID and token salt. A claim used to hold the event row's lock through its
own commit's flush, so one event took about as many registrations per second as the disk takes
flushes (470/s); a group pays one flush for all its members. The row lock still serialises the
groups of several processes. A repeat, a comeback after cancelling and a changed event go the
general way (`_register_general`), as before.

On SQLite (`_register_once`; BEGIN IMMEDIATE makes the transaction exclusive, and units arriving
together share one commit, sqlite_engine.py) a new address with a seat free takes three
statements: the seat, taken only while the event is the version the caller judged
(VERSIONED_CLAIM_SQL: events.current hands out its cached copy of a published event without
reading), the row, written only when the address has none (NEW_INSERT_SQL, ON CONFLICT DO
NOTHING), and the outbox row. A repeat gives the seat back and goes the general way; so does a
failed claim, where VERSIONED_EXISTING_SQL reads the version and the person's row in one
statement: a moved version is StaleEvent (judged again on the current event), otherwise the event
is full. domain/registrations.py decides when to call these
(after checking the person, the answers and that the event is open); the SQL texts are fixed so
that db.fetch compiles each once, and bench/ imports them to measure the same statements.

Why fixed SQL and not Piccolo's query builder here: building and compiling one query with the
builder costs about 50-100 us, more than running it (shared/DESIGN.md), and a registration runs
three. Measured (bench/registration.py, 2 cores, 64 clients, 30 Nov 2026): 4,436 registrations/s
on SQLite, 0.41x a bare Litestar route, p99 23 ms; bench/registration_pg.py: 2,620/s on
PostgreSQL for one event, 6.1x the raw single-statement asyncpg baseline (FAST_PG_SQL behind a
bare route, 430/s in the same run).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

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
# SQLite's first two statements for a new address (`_register_once`): the seat, taken only while
# the event is the version the caller judged, and the row, written only when the address has
# none (the unique index registration_event_email).
# The claim is run with db.changes (no RETURNING: on SQLite that clause costs a temporary table
# per statement), and the insert's RETURNING id is answered from the rowid (db.fetch).
VERSIONED_CLAIM_SQL = (
    "UPDATE event SET taken = taken + 1 WHERE id = {} AND version = {} AND (capacity IS NULL OR taken < capacity)"
)
NEW_INSERT_SQL = INSERT_SQL.replace(" RETURNING id", " ON CONFLICT (event, email) DO NOTHING RETURNING id")
UNCLAIM_SQL = "UPDATE event SET taken = taken - 1 WHERE id = {}"
# EXISTING_SQL with the event's version in front (`event_version`); the registration's columns
# are NULL when the address has no row.
VERSIONED_EXISTING_SQL = (
    "SELECT e.version AS event_version, r.id, r.event, r.status, r.name, r.email, r.answers, r.created_at, "
    "r.confirmation_sent_at FROM event e LEFT JOIN registration r ON r.event = e.id AND r.email = {} "
    "WHERE e.id = {}"
)


class StaleEvent(Exception):
    """The event changed after the caller read it (another process changed it)."""


class Raced(Exception):
    """The person's registration changed between reading and writing it: try again."""


async def _as_new(event_id: int) -> tuple[str, int | None]:
    """What a new address would get now: a free seat, or the next place on the waitlist."""
    rows = await db.fetch("SELECT capacity, taken FROM event WHERE id = {}", event_id)
    if rows[0]["capacity"] is None or rows[0]["taken"] < rows[0]["capacity"]:
        return "registered", None
    waiting = await db.fetch(
        "SELECT COUNT(*) AS n FROM registration WHERE event = {} AND status = 'waitlisted'",
        event_id,
    )
    return "waitlisted", waiting[0]["n"] + 1


async def _register_fast_pg(event, name, email, answers, subscribe, moment) -> dict | None:
    """A new address taking a seat or a waitlist place on PostgreSQL, in one statement with the
    others registering for the event at this moment (GroupClaims); None when the general path
    must decide (a repeat, or the event changed since it was read)."""
    if db.in_transaction():
        return await _register_alone_pg(event, name, email, answers, subscribe, moment)
    row = await group_claims().claim(
        event["id"],
        event["version"],
        name,
        email,
        json.dumps(answers),
        subscribe,
        moment,
    )
    if row is None:
        return None
    if isinstance(row, Alone):
        return await _register_alone_pg(event, name, email, answers, subscribe, moment)
    place = None
    if row["status"] == "waitlisted":
        place = row["place"] if row["place"] is not None else await waitlist_position(event["id"], row["id"])
    return {
        "id": row["id"],
        "event_id": event["id"],
        "name": name,
        "email": email,
        "status": row["status"],
        "answers": answers,
        "created_at": moment,
        "waitlist_position": place,
    }


async def _register_alone_pg(event, name, email, answers, subscribe, moment) -> dict | None:
    """A new address taking a free seat in one statement of its own (PostgreSQL): inside a
    caller's transaction, or when its group failed; None when the general path must decide (a
    repeat, no free seat, or the event changed since it was read)."""
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
    full = False
    if not db.is_postgres():
        # SQLite (the transaction is exclusive: nothing changes between these statements). A new
        # address with a seat free, the common case, takes three statements: the seat (with the
        # version test), the row, the outbox row.
        if await db.changes(VERSIONED_CLAIM_SQL, event["id"], event["version"]):
            # The salt and the calendar UID from one random read (as new_salt and
            # new_calendar_uid make them), the moment converted once for its three columns.
            salt, uid = tokens.new_salt_and_uuid()
            stamp = db.sqlite_datetime(moment)
            rows = await db.fetch(
                NEW_INSERT_SQL,
                event["id"],
                email,
                name,
                json.dumps(answers) if answers else "{}",
                "registered",
                salt,
                subscribe,
                stamp,
                stamp,
                stamp,
                new_calendar_uid(uid),
            )
            if rows:
                return await _queued(event, rows[0]["id"], name, email, "registered", answers, moment)
            # The address has a row already: the seat goes back and the general way decides.
            await db.fetch(UNCLAIM_SQL, event["id"])
        else:
            # No seat, or the event moved: the version test below tells which.
            full = True
    return await _register_general(event, name, email, answers, subscribe, moment, full)


async def _register_general(event, name, email, answers, subscribe, moment, full: bool) -> dict:
    """Every case on PostgreSQL's general path, and on SQLite all but a new address taking a free
    seat. `full`: SQLite found no free seat in this transaction (so no claim is tried again)."""
    interval = timedelta(seconds=settings.get().resend_interval_seconds)
    # The caller may hold a cached event (events.current trusts its copy of a published event):
    # judge nothing on a changed event. The version is read inside this transaction.
    if db.is_postgres():
        rows = await db.fetch("SELECT version FROM event WHERE id = {}", event["id"])
        if not rows or rows[0]["version"] != event["version"]:
            raise StaleEvent()
        existing = await db.fetch(EXISTING_SQL, event["id"], email)
    else:
        # On SQLite the version and the person's row come in one statement (BEGIN IMMEDIATE has
        # made the transaction exclusive already).
        rows = await db.fetch(VERSIONED_EXISTING_SQL, email, event["id"])
        if not rows or rows[0]["event_version"] != event["version"]:
            raise StaleEvent()
        existing = rows if rows[0]["id"] is not None else []
    if existing and existing[0]["status"] != "cancelled":
        row = existing[0]
        sent = row["confirmation_sent_at"]
        if sent is None or moment - sent >= interval:
            await db.fetch(
                "UPDATE registration SET confirmation_sent_at = {} WHERE id = {}",
                moment,
                row["id"],
            )
            await outbox.enqueue(
                "registration_confirmed",
                email,
                {"registration_id": row["id"], "resend": True},
            )
        return {**await _shown(row), "as_new": await _as_new(event["id"])}
    claimed = [] if full else await db.fetch(CLAIM_SQL, event["id"])
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
        back = await db.fetch(
            "UPDATE registration SET status = {}, name = {}, answers = {}, subscribe = {}, "
            "sequence = sequence + 1, cancelled_at = NULL, created_at = {}, updated_at = {}, "
            "confirmation_sent_at = {}, calendar_uid = {} WHERE id = {} AND status = 'cancelled' RETURNING id",
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
        if not back:
            # The same person came back at the same moment in another transaction (PostgreSQL;
            # SQLite's are exclusive): ours, seat included, is rolled back and tried again.
            raise Raced()
        return await _queued(event, reg_id, name, email, status, answers, moment)
    else:
        rows = await db.fetch(
            INSERT_SQL,
            event["id"],
            email,
            name,
            json.dumps(answers) if answers else "{}",
            status,
            tokens.new_salt(),
            subscribe,
            moment,
            moment,
            moment,
            new_calendar_uid(),
        )
        return await _queued(event, rows[0]["id"], name, email, status, answers, moment)


async def _queued(event, reg_id, name, email, status, answers, moment) -> dict:
    """A new registration's confirmation queued, and the registration as `_shown` gives it."""
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


# -- PostgreSQL group claims ---------------------------------------------------------------------
#
# Registrations for one event that arrive together in one process take their seats in ONE
# statement, so in one commit (GroupClaims below). Each statement holds the event row's lock from
# `held` (FOR UPDATE, which under READ COMMITTED returns the row as the last holder committed it)
# to its commit, so groups from any number of processes are serialised exactly as single claims
# were; within a process one group per event is in flight and the next one forms meanwhile.
#   item   the arrivals, in arrival order (ordinality)
#   fresh  those whose address holds no registration (as the statement's snapshot sees; a row
#          committed by another process since then fails the insert on the unique index, and
#          GroupClaims runs the group again, when the snapshot sees it). A scalar subquery per
#          arrival, not NOT EXISTS: PostgreSQL may turn NOT EXISTS into a hash anti join that reads
#          every registration of the event, each group, when it underestimates them.
#   seen   the event row as the snapshot sees it, and the waitlist then: when `held` locked that
#          very row version (same ctid), nobody changed the event since the snapshot, and since
#          everything that waitlists someone also updates the event row, the snapshot's waitlist
#          is the one at the lock: places can be counted in the statement. Otherwise `place` is
#          NULL and GroupClaims counts them after the commit (GROUP_PLACES_PG_SQL).
#   seats  how many of `fresh` get a seat: all when unlimited, else as many as are free
#   claim  takes them (from the locked row's value), reg writes the rows in arrival order, the
#          first `got` registered and the rest waitlisted, queued their outbox rows (the row
#          outbox.enqueue writes).
GROUP_PG_SQL = (
    "WITH item AS MATERIALIZED (SELECT * FROM unnest({}::text[], {}::text[], {}::text[], {}::text[], "
    "{}::boolean[], {}::timestamptz[], {}::text[]) WITH ORDINALITY "
    "AS t(email, name, answers, token_salt, subscribe, moment, calendar_uid, n)), "
    "fresh AS MATERIALIZED (SELECT item.*, row_number() OVER (ORDER BY item.n) AS k FROM item "
    "WHERE (SELECT 1 FROM registration r WHERE r.event = {} AND r.email = item.email) IS NULL), "
    "seen AS MATERIALIZED (SELECT ctid AS at, (SELECT COUNT(*) FROM registration WHERE event = {} "
    "AND status = 'waitlisted') AS waiting FROM event WHERE id = {}), "
    "held AS MATERIALIZED (SELECT id, ctid AS at, taken, capacity FROM event "
    "WHERE id = {} AND version = {} FOR UPDATE), "
    "seats AS MATERIALIZED (SELECT held.id, held.at, held.taken, CASE WHEN held.capacity IS NULL "
    "THEN wanted.m ELSE LEAST(wanted.m, GREATEST(held.capacity - held.taken, 0)) END AS got "
    "FROM held, (SELECT COUNT(*) AS m FROM fresh) wanted), "
    "claim AS (UPDATE event SET taken = seats.taken + seats.got FROM seats WHERE event.id = seats.id "
    "RETURNING event.id), "
    "reg AS (INSERT INTO registration (event, email, name, answers, status, token_salt, sequence, "
    "subscribe, created_at, updated_at, confirmation_sent_at, calendar_uid) "
    "SELECT seats.id, fresh.email, fresh.name, fresh.answers, "
    "CASE WHEN fresh.k <= seats.got THEN 'registered' ELSE 'waitlisted' END, fresh.token_salt, 0, "
    "fresh.subscribe, fresh.moment, fresh.moment, fresh.moment, fresh.calendar_uid "
    "FROM fresh, seats ORDER BY fresh.k RETURNING id, email, status), "
    "queued AS (INSERT INTO outbox (kind, recipient, payload, status, attempts, next_attempt_at, "
    "last_error, created_at) SELECT 'registration_confirmed', email, "
    "'{\"registration_id\":' || id || '}', 'queued', 0, {}, '', {} FROM reg ORDER BY id RETURNING id) "
    "SELECT reg.id, reg.email, reg.status, CASE WHEN reg.status = 'waitlisted' "
    "AND (SELECT at FROM seen) = (SELECT at FROM seats) THEN (SELECT waiting FROM seen) "
    "+ row_number() OVER (PARTITION BY reg.status ORDER BY reg.id) END AS place FROM reg"
)
# Waitlist places counted after the commit, when the group's snapshot was older than its lock.
# Exact: every id of this event below ours was drawn by a claimant that held the lock before us.
GROUP_PLACES_PG_SQL = (
    "SELECT r.id, (SELECT COUNT(*) FROM registration w WHERE w.event = {} AND w.status = 'waitlisted' "
    "AND w.id <= r.id) AS place FROM unnest({}::int[]) AS r(id)"
)
GROUP_LIMIT = 256  # arrivals per statement


class Alone:
    """The group's statement failed for a reason other than an outage: each arrival takes its
    seat on its own (so that one bad arrival fails only itself)."""


ALONE = Alone()


@dataclass(slots=True, eq=False)
class _Arrival:
    email: str
    name: str
    answers: str  # JSON
    salt: str
    subscribe: bool
    moment: datetime
    calendar_uid: str
    future: asyncio.Future


class GroupClaims:
    """One process's group claims on PostgreSQL (see GROUP_PG_SQL).

    `claim()` queues an arrival for (event, version); when no statement for that key is in
    flight a drain task starts at once, and while it is in flight later arrivals wait and go
    together in the next statement (at most `limit`). Each arrival gets its own row as
    {id, email, status, place}, None when the general path must answer (an address already
    registered, a second arrival of one address in the group, or an event that changed since it
    was read), or ALONE. An outage fails every arrival with its error. `fetch(sql, *args)` runs
    one statement on its own (default: the engine's pool, outside any transaction); `sql` is
    the group statement (the tests' control takes the lock away)."""

    def __init__(
        self,
        fetch: Callable[..., Awaitable[list[dict]]] | None = None,
        sql: str = GROUP_PG_SQL,
        limit: int = GROUP_LIMIT,
    ) -> None:
        self._fetch = fetch
        self._sql = sql
        self._limit = limit
        self._waiting: dict[tuple[int, int], list[_Arrival]] = {}
        self._draining: set[tuple[int, int]] = set()
        self._tasks: set[asyncio.Task] = set()  # the loop holds tasks weakly
        self.statements = 0  # group statements run (tests read it)

    async def claim(
        self,
        event_id: int,
        version: int,
        name: str,
        email: str,
        answers: str,
        subscribe: bool,
        moment: datetime,
    ) -> dict | None | Alone:
        loop = asyncio.get_running_loop()
        salt, uid_hex = tokens.new_salt_and_uuid()  # one random read for both
        arrival = _Arrival(
            email, name, answers, salt, subscribe, moment, new_calendar_uid(uid_hex), loop.create_future()
        )
        key = (event_id, version)
        self._waiting.setdefault(key, []).append(arrival)
        if key not in self._draining:
            self._draining.add(key)
            # A context of its own: never inside a transaction one of the callers holds.
            task = loop.create_task(self._drain(key), context=contextvars.Context())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await arrival.future

    async def _drain(self, key: tuple[int, int]) -> None:
        try:
            while queue := self._waiting.get(key):
                group = queue[: self._limit]
                del queue[: self._limit]
                if not queue:
                    del self._waiting[key]
                group = [a for a in group if not a.future.done()]  # callers that went away
                if group:
                    await self._flush(key, group)
        finally:
            self._draining.discard(key)
            for arrival in self._waiting.pop(key, []):  # only when this task was cancelled
                if not arrival.future.done():
                    arrival.future.set_result(ALONE)

    async def _flush(self, key: tuple[int, int], group: list[_Arrival]) -> None:
        firsts: dict[str, _Arrival] = {}
        for arrival in group:
            firsts.setdefault(arrival.email, arrival)
        items = list(firsts.values())
        try:
            rows = await self._run(key, items)
        except Exception as exc:  # every arrival is told, none is left waiting
            for arrival in group:
                if not arrival.future.done():
                    if db.is_outage(exc):
                        arrival.future.set_exception(exc)
                    else:
                        arrival.future.set_result(ALONE)
            return
        except BaseException:
            for arrival in group:
                if not arrival.future.done():
                    arrival.future.set_result(ALONE)
            raise
        by_email = {row["email"]: row for row in rows}
        for arrival in group:
            if not arrival.future.done():
                first = firsts[arrival.email] is arrival
                arrival.future.set_result(by_email.get(arrival.email) if first else None)

    async def _run(self, key: tuple[int, int], items: list[_Arrival]) -> list[dict]:
        event_id, version = key
        if self._fetch is None:
            # A new database's first rush: plans made without statistics read the whole event.
            await db.ensure_statistics("registration", "event")
        fetch = self._fetch or db.fetch
        for attempt in range(3):
            queued_at = outbox.now()
            try:
                self.statements += 1
                rows = await fetch(
                    self._sql,
                    [a.email for a in items],
                    [a.name for a in items],
                    [a.answers for a in items],
                    [a.salt for a in items],
                    [a.subscribe for a in items],
                    [a.moment for a in items],
                    [a.calendar_uid for a in items],
                    event_id,
                    event_id,
                    event_id,
                    event_id,
                    version,
                    queued_at,
                    queued_at,
                )
                break
            except Exception as exc:
                # Another process registered one of these addresses after this statement's
                # snapshot: nothing was written; the next snapshot sees that row.
                if not db.is_unique_violation(exc) or attempt == 2:
                    raise
        unplaced = [row["id"] for row in rows if row["status"] == "waitlisted" and row["place"] is None]
        if unplaced:
            try:
                places = {r["id"]: r["place"] for r in await fetch(GROUP_PLACES_PG_SQL, event_id, unplaced)}
            except Exception:  # committed already: each caller counts its own place
                places = {}
            for row in rows:
                if row["id"] in places:
                    row["place"] = places[row["id"]]
        return rows


_groups: tuple[asyncio.AbstractEventLoop, GroupClaims] | None = None


def group_claims() -> GroupClaims:
    """This event loop's GroupClaims (one per process in practice)."""
    global _groups
    loop = asyncio.get_running_loop()
    if _groups is None or _groups[0] is not loop:
        _groups = (loop, GroupClaims())
    return _groups[1]
