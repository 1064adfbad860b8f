"""Events: create, change, publish, cancel, and read; what state an event is in; who organises it.

An event row is returned as a plain dict with its JSON fields decoded. A change of time, title or
join link raises the event's `version` and every active registration's invite SEQUENCE, and
queues an "event changed" message per registered person in the same transaction; cancelling the
event queues a cancellation per registrant. Each of create, update, publish and cancel writes its
audit entry (domain/audit.py) in the transaction of the change, with one summary per action
whoever calls: `actor` is the staff member's id, None for the system or the command line.

`state()` is the one decision of what an event page shows ("draft", "open", "closed", "past",
"cancelled"): pages, the API's presentation, the page cache's key and the registration door's
refusals all ask it.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from datetime import datetime
from email.utils import parseaddr
from typing import Any, Literal, NamedTuple

from .. import clock, db
from ..settings import Settings
from ..sqlite_engine import FastSQLiteEngine
from ..timefmt import format_range
from . import audit, identity, outbox, registrations
from . import validation as v
from .errors import Conflict, NotFound
from .event_input import clean_fields

JSON_FIELDS = ("tags", "questions", "reminders", "speakers")
# Fields whose change reaches people's calendars.
INVITE_FIELDS = ("starts_at", "ends_at", "title", "join_url", "timezone")


EventState = Literal["draft", "open", "closed", "past", "cancelled"]


def state(event: dict, at: datetime | None = None) -> EventState:
    """What an event is at `at` (default now), as its page shows it: "cancelled" first, then
    "past" once it has ended, "closed" once registration has closed (`registration_closes_at`,
    or the end), "draft" while unpublished, else "open" (full or not: seats are another fact)."""
    at = at or clock.now()
    ends = event["ends_at"]
    return state_of(event["status"], ends <= at, (event["registration_closes_at"] or ends) <= at)


def state_of(status: str, ended: bool, closed: bool) -> EventState:
    """`state` from facts already compared (the page key compares the times in SQL)."""
    if status == "cancelled":
        return "cancelled"
    if ended:
        return "past"
    if closed:
        return "closed"
    return "draft" if status == "draft" else "open"


class Organizer(NamedTuple):
    name: str
    email: str


def organizer(cfg: Settings) -> Organizer:
    """Who organises every event, as invites, calendar files and feeds name it (ORGANIZER;CN):
    the display name and address of EVENTS_MAIL_FROM, the name reduced to one line, and the
    organisation's name (as staff set it in Settings, domain/identity.py) when the From address
    has none. The one definition for the web's calendar files and the mail's invites."""
    name, address = parseaddr(cfg.mail_from)
    return Organizer(" ".join(name.split()) or identity.snapshot().name, address)


def decode(row: dict) -> dict:
    event = dict(row)
    for field in JSON_FIELDS:
        if isinstance(event.get(field), str):
            event[field] = json.loads(event[field])
    if "show_registered_count" in event:  # SQLite answers 0 or 1
        event["show_registered_count"] = bool(event["show_registered_count"])
    return event


async def _unique_slug(base: str, exclude_id: int | None = None) -> str:
    candidate, n = base, 1
    while True:
        rows = await db.fetch("SELECT id FROM event WHERE slug = {}", candidate)
        if not rows or rows[0]["id"] == exclude_id:
            return candidate
        n += 1
        candidate = f"{base}-{n}"


async def create(data: dict, *, actor: int | None = None) -> dict:
    """Create an event (draft unless `status` is published) and return it; audited as
    "event.create" with "<title> (<status>)" in the same transaction. Raises ValidationFailed
    (nothing written)."""
    fields = clean_fields(data)
    if "slug" in fields:
        if await db.fetch("SELECT id FROM event WHERE slug = {}", fields["slug"]):
            raise v.fail("slug", "is taken by another event")
    else:
        fields["slug"] = await _unique_slug(v.slugify(fields["title"]))
    moment = clock.now()
    fields.update(
        created_at=moment, updated_at=moment, version=1, taken=0, calendar_uid=registrations.new_calendar_uid()
    )
    fields.setdefault("status", "draft")
    columns = list(fields)
    try:
        async with db.transaction():
            rows = await db.fetch(
                f"INSERT INTO event ({', '.join(columns)}) VALUES ({', '.join('{}' for _ in columns)}) RETURNING id",
                *fields.values(),
            )
            await audit.record(actor, "event.create", "event", rows[0]["id"], f"{fields['title']} ({fields['status']})")
    except Exception as exc:
        if db.is_unique_violation(exc):
            raise v.fail("slug", "is taken by another event") from None
        raise
    return await get(rows[0]["id"])


async def get(event_id: int) -> dict:
    rows = await db.fetch("SELECT * FROM event WHERE id = {}", event_id)
    if not rows:
        raise NotFound("No such event")
    return decode(rows[0])


_CACHE: dict[int, dict] = {}


async def current(event_id: int, verify: bool = False) -> dict:
    """The event for taking a registration: re-read only when its `version` moved, since every
    change that matters to registering (status, times, questions, closing) raises it. The
    returned dict is shared: do not modify it, and do not rely on its `taken`.

    A cached published event is returned without asking (`verify` forces the check): the
    registration tests the version again inside its own transaction (seats.py: in the statement
    that takes the seat) and registrations.register judges again on the current event when it
    moved. A draft or cancelled copy is always checked."""
    cached = _CACHE.get(event_id)
    if not verify and cached is not None and cached["status"] == "published":
        return cached
    rows = await db.fetch("SELECT version FROM event WHERE id = {}", event_id)
    if not rows:
        raise NotFound("No such event")
    # Events are never deleted, so an id always names the same event. (Whatever deletes one
    # must call forget().)
    if cached is not None and cached["version"] == rows[0]["version"]:
        return cached
    if len(_CACHE) > 1000:
        _CACHE.clear()
    event = _CACHE[event_id] = await get(event_id)
    return event


# Grows with every forget(): what is built from events elsewhere (web/present.py) names it in its
# keys, so that ids and versions starting over (tests emptying the tables) never meet old parts.
forgotten = 0


def forget(event_id: int | None = None) -> None:
    """Drop cached events (one, or all when None)."""
    global _kept_conn, _kept_stamp, forgotten
    _kept.clear()
    _kept_conn = _kept_stamp = None
    _PAGE_EVENTS.clear()
    forgotten += 1
    if event_id is None:
        _CACHE.clear()
    else:
        _CACHE.pop(event_id, None)


async def get_by_slug(slug: str) -> dict:
    rows = await db.fetch("SELECT * FROM event WHERE slug = {}", slug)
    if not rows:
        raise NotFound("No such event")
    return decode(rows[0])


async def listing(include_drafts: bool = False) -> list[dict]:
    """Published (and cancelled) events, upcoming first (soonest first), then past (latest
    first). Staff also see drafts."""
    where = "" if include_drafts else "WHERE status != 'draft'"
    rows = [decode(r) for r in await db.fetch(f"SELECT * FROM event {where} ORDER BY starts_at")]
    moment = clock.now()
    upcoming = [e for e in rows if e["ends_at"] >= moment]
    past = [e for e in rows if e["ends_at"] < moment]
    return upcoming + past[::-1]


async def update(event_id: int, data: dict, *, actor: int | None = None) -> tuple[dict, int]:
    """Apply a change. Returns the event and how many people were emailed about it. A change
    that changes something is audited as "event.update" with "<title>: changed <fields>;
    emailed <n>" in its transaction; one that changes nothing writes nothing."""
    async with db.transaction():
        current = await get(event_id)
        if current["status"] == "cancelled":
            raise Conflict("This event is cancelled and can no longer change", "cancelled")
        fields = clean_fields(data, current)
        if "slug" in fields and fields["slug"] != current["slug"]:
            if await db.fetch("SELECT id FROM event WHERE slug = {} AND id != {}", fields["slug"], event_id):
                raise v.fail("slug", "is taken by another event")
        changed = {k: val for k, val in fields.items() if _differs(current.get(k), val)}
        if not changed:
            return current, 0
        names = list(changed)
        invite_changes = _invite_changes(current, fields)
        changed["updated_at"] = clock.now()
        sets = ", ".join(f"{k} = {{}}" for k in changed)
        await db.fetch(f"UPDATE event SET {sets}, version = version + 1 WHERE id = {{}}", *changed.values(), event_id)
        if "capacity" in changed:
            await registrations.promote_waitlisted(event_id)
        notified = 0
        if invite_changes and current["status"] == "published":
            notified = await _notify_registered(
                event_id, "event_changed", {"changes": invite_changes, "before": before_change(current, invite_changes)}
            )
        title = changed.get("title", current["title"])
        await audit.record(
            actor, "event.update", "event", event_id, f"{title}: changed {', '.join(names)}; emailed {notified}"
        )
        forget(event_id)  # this process stops trusting its copy at once (current() on PostgreSQL)
        return await get(event_id), notified


def changes(current: dict, data: dict) -> list[str]:
    """The fields a change would change (in the order of clean_fields), for staff to see before
    saving. Raises ValidationFailed like `update`."""
    return [k for k, value in clean_fields(data, current).items() if _differs(current.get(k), value)]


def before_change(current: dict, changed: list[str]) -> dict[str, str]:
    """What the "event changed" email shows as the old values: the time range in its zone (when
    the time or zone moved) and the old title. The join link's old value is never shown (it is
    only said to have changed)."""
    before: dict[str, str] = {}
    if {"starts_at", "ends_at", "timezone"} & set(changed):
        before["when"] = format_range(current["starts_at"], current["ends_at"], current["timezone"])
    if "title" in changed:
        before["title"] = current["title"]
    return before


def _invite_changes(current: dict, fields: dict) -> list[str]:
    """The fields of a change that reach people's calendars (update and its preview agree)."""
    return [k for k in INVITE_FIELDS if k in fields and _differs(current.get(k), fields[k])]


def _differs(old: Any, new: Any) -> bool:
    if isinstance(old, (list, dict)):
        return json.dumps(old) != new
    return old != new


async def _notify_registered(event_id: int, kind: str, extra: dict, statuses=("registered",)) -> int:
    """Raise the SEQUENCE of every registration in `statuses` and queue one `kind` message each.
    Runs inside the caller's transaction."""
    marks = ", ".join("{}" for _ in statuses)
    rows = await db.fetch(
        f"UPDATE registration SET sequence = sequence + 1, updated_at = {{}} "
        f"WHERE event = {{}} AND status IN ({marks}) RETURNING id, email, status",
        clock.now(),
        event_id,
        *statuses,
    )
    for row in rows:
        await outbox.enqueue(kind, row["email"], {"registration_id": row["id"], "status": row["status"], **extra})
    return len(rows)


async def count_affected(event_id: int, data: dict) -> int:
    """How many people a change would email (shown to staff before they save). ValidationFailed
    for a change `update` would refuse, whatever the event's state (the fields are checked first)."""
    current = await get(event_id)
    changes = clean_fields(data, current)
    if current["status"] != "published" or not _invite_changes(current, changes):
        return 0
    rows = await db.fetch("SELECT COUNT(*) AS n FROM registration WHERE event = {} AND status = 'registered'", event_id)
    return rows[0]["n"]


async def publish(event_id: int, *, actor: int | None = None) -> dict:
    """Publish a draft (audited as "event.publish" with its title, in the same transaction);
    publishing a published event changes nothing. Conflict for a cancelled event."""
    async with db.transaction():
        event = await get(event_id)
        if event["status"] == "cancelled":
            raise Conflict("A cancelled event cannot be published again", "cancelled")
        if event["status"] == "published":
            return event
        await db.fetch(
            "UPDATE event SET status = 'published', version = version + 1, updated_at = {} WHERE id = {}",
            clock.now(),
            event_id,
        )
        await audit.record(actor, "event.publish", "event", event_id, event["title"])
        forget(event_id)
        return await get(event_id)


async def cancel(event_id: int, *, actor: int | None = None, note: str | None = None) -> tuple[dict, int]:
    """Cancel the event: every registered and waitlisted person is told, registered people with
    a calendar CANCEL; `note` (staff's message to registrants, at most 2,000 characters) is kept
    as `cancellation_note`, shown on the page and in the cancellation email. Audited as
    "event.cancel" with "<title>; told <n>" in the same transaction. Idempotent: cancelling
    again tells nobody and writes nothing. ValidationFailed for a bad note (nothing written)."""
    note = v.text({"cancellation_note": note}, "cancellation_note", max_len=2000, multiline=True) or ""
    async with db.transaction():
        event = await get(event_id)
        if event["status"] == "cancelled":
            return event, 0
        await db.fetch(
            "UPDATE event SET status = 'cancelled', cancellation_note = {}, version = version + 1, updated_at = {} "
            "WHERE id = {}",
            note,
            clock.now(),
            event_id,
        )
        notified = 0
        if event["status"] == "published":
            notified = await _notify_registered(event_id, "event_cancelled", {}, statuses=("registered", "waitlisted"))
        await audit.record(actor, "event.cancel", "event", event_id, f"{event['title']}; told {notified}")
        forget(event_id)
        return await get(event_id), notified


def seats_left(event: dict) -> int | None:
    """Free seats, or None for unlimited capacity."""
    if event["capacity"] is None:
        return None
    return max(event["capacity"] - event["taken"], 0)


# What an event page shows that can change, in one indexed row. `born` tells apart two rows that
# had the same id (SQLite may reuse the highest id after a delete). The state follows the one
# clock (`state_of` from `ends_at` and `registration_closes_at` against clock.now(), as `state()` decides it), so a
# key read a moment ago still turns "closed" or "past" on time.
#
# It is asked on every request for a public event page, cached or not, so it is made cheap
# without ever answering from before a change, whichever process made it:
# - SQLite: the rows read are kept per slug while nothing was committed to the database since.
#   "Nothing" is `PRAGMA data_version` (it moves when any other connection, in any process,
#   commits) together with this connection's `total_changes` (which moves with its own writes),
#   read on the app's own connection: one tiny statement instead of the indexed row, its
#   timestamps and the converters.
# - PostgreSQL: reads that overlap are made one: a request joins the next read that starts
#   after it arrived (never one already running, which may predate a commit it must see), and
#   that read fetches the keys of every slug waiting, in one statement.
PAGE_KEY_COLUMNS = "slug, id, CAST(created_at AS TEXT) AS born, version, taken, status, ends_at, registration_closes_at"
PAGE_KEY_SQL = f"SELECT {PAGE_KEY_COLUMNS} FROM event WHERE slug = {{}}"
PAGE_KEYS_PG_SQL = f"SELECT {PAGE_KEY_COLUMNS} FROM event WHERE slug = ANY({{}}::text[])"
# Kept rows per slug while the database's stamp stays; bounded (a crawler's made-up slugs).
PAGE_KEYS_KEPT = 4096

_kept_conn: Any = None
_kept_stamp: tuple[int, int] | None = None
_kept: dict[str, dict | None] = {}


def _sqlite_stamp() -> tuple[Any, tuple[int, int]] | None:
    """(the app's SQLite connection of this loop, its stamp), or None when the stamp cannot
    tell (PostgreSQL, a transaction open here, or the connection busy with another's)."""
    eng = db.engine()
    if not isinstance(eng, FastSQLiteEngine) or eng.current_transaction.get() is not None:
        return None
    conn = eng.loop_connection()
    if conn.lock.locked():  # a unit of work is open on this connection: its writes are not ours to see
        return None
    raw = conn.raw
    row = raw.execute("PRAGMA data_version").fetchone()
    return conn, (raw.total_changes, row["data_version"])


async def page_key(slug: str) -> dict | None:
    """What the public page of the event `slug` shows that can change, for the page cache:
    `id`, `born`, `version`, `taken`, `status` and `state` (as `state()` decides, on the one
    clock). None when there is no such event (drafts are returned: the caller hides them).
    Always as committed when the call began, whichever process committed it."""
    global _kept_conn, _kept_stamp
    found = _sqlite_stamp()
    if found is not None:
        conn, stamp = found
        if conn is not _kept_conn or stamp != _kept_stamp:
            _kept.clear()
            _kept_conn, _kept_stamp = conn, stamp
        if slug in _kept:
            row = _kept[slug]
        else:
            # Runs at once (no transaction here, the connection free): nothing in between.
            rows = await db.fetch(PAGE_KEY_SQL, slug)
            row = rows[0] if rows else None
            if len(_kept) >= PAGE_KEYS_KEPT:
                _kept.clear()
            _kept[slug] = row
    elif db.is_postgres() and db.engine().current_transaction.get() is None:
        row = await _coalesced(slug)
    else:
        rows = await db.fetch(PAGE_KEY_SQL, slug)
        row = rows[0] if rows else None
    if row is None:
        return None
    moment = clock.now()
    return {
        "id": row["id"],
        "born": row["born"],
        "version": row["version"],
        "taken": row["taken"],
        "status": row["status"],
        "ends_at": row["ends_at"],
        "registration_closes_at": row["registration_closes_at"],
        "state": state_of(
            row["status"], row["ends_at"] <= moment, (row["registration_closes_at"] or row["ends_at"]) <= moment
        ),
    }


_PAGE_EVENTS: dict[tuple, dict] = {}


async def for_page(key: dict) -> dict:
    """The event a page `key` (page_key's answer) names: read once per event version and
    process, with what the key itself carries (seats taken, status, closing and end times) laid
    over it, so that the page shows exactly what the key names. The dict is the caller's."""
    found = _PAGE_EVENTS.get((key["id"], key["born"], key["version"]))
    if found is None:
        found = await get(key["id"])
        if found["version"] != key["version"]:
            return found  # changed since the key was read: newer than the key, kept by no one
        if len(_PAGE_EVENTS) >= PAGE_KEYS_KEPT:
            _PAGE_EVENTS.clear()
        _PAGE_EVENTS[(key["id"], key["born"], key["version"])] = found
    return {
        **found,
        "taken": key["taken"],
        "status": key["status"],
        "ends_at": key["ends_at"],
        "registration_closes_at": key["registration_closes_at"],
    }


class _Reads:
    """The PostgreSQL key reads of one event loop: slugs waiting for the next read, and the
    task that runs reads while any wait."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting: dict[str, asyncio.Future] = {}
        self.task: asyncio.Task | None = None

    async def run(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting, {}
            try:
                rows = await db.fetch(PAGE_KEYS_PG_SQL, list(batch))
            except BaseException as exc:
                for future in batch.values():
                    if not future.done():
                        future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("key read stopped"))
                if not isinstance(exc, Exception):
                    raise
                continue
            by_slug = {row["slug"]: row for row in rows}
            for slug, future in batch.items():
                if not future.done():
                    future.set_result(by_slug.get(slug))


_reads: dict[int, _Reads] = {}


async def _coalesced(slug: str) -> dict | None:
    loop = asyncio.get_running_loop()
    reads = _reads.get(id(loop))
    if reads is None or reads.loop is not loop:
        if len(_reads) > 16:  # loops of finished tests
            _reads.clear()
        reads = _reads[id(loop)] = _Reads(loop)
    future = reads.waiting.get(slug)
    if future is None:
        future = reads.waiting[slug] = loop.create_future()
    if reads.task is None or reads.task.done():
        # A task of its own, in a context of its own: no request's transaction or cancellation.
        reads.task = loop.create_task(reads.run(), context=contextvars.Context())
    # Shielded: a request given up (client gone) must not cancel the others' answer.
    return await asyncio.shield(future)
