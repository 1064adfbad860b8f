"""Retention: registrants' personal data has a lifetime, and this module ends it.

`retention_days` after an event's scheduled end (the event's own figure, or the installation's
`EVENTS_RETENTION_DAYS`, default 90), whether it took place or was cancelled, every registration
of the event is anonymised: the name and answers are emptied and the address becomes a
placeholder that is no address (`deleted-<id>`, unique per row as the (event, email) index
needs). Status, the created/cancelled/promoted/attended times and the seat count stay, so counts
and attendance remain. The same batch strips the registrations' outbox rows (recipient,
payload, error text; a row still queued is skipped, never sent) and the summaries of audit
entries about them. `scheduled_send` holds only ids, kinds and times and is kept: it is what
stops a reminder going twice. When the last batch is done the event's `purged_at` is set.

A registration is purged exactly when its email holds no "@" (`is_purged`): every real address
has one (domain/validation.py), no placeholder has. The worker (mail/messages.py) checks it
before sending, and the registrant's links (domain/registrations.py) answer that the details
were deleted.

`purge_due(now)` is called from the worker's schedule (domain/schedule.py). It is idempotent and
safe to run from several workers at once: each batch is one transaction that first takes the
event row's lock, so a second purger waits and then finds the work done; only registrations
still holding an address are touched. Work per call is bounded (`PER_TICK` registrations), so
years of past events are worked off over a few ticks, oldest first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .. import clock, db, settings

# Registrations anonymised per transaction, and per call of purge_due (one worker tick).
BATCH = 500
PER_TICK = 2000
PLACEHOLDER_PREFIX = "deleted-"
SKIPPED_REASON = "not sent: the registrant's details were deleted after the event"
AUDIT_SUMMARY = "(registrant's details deleted after the event)"
# The smallest figure staff may choose: no event is due sooner than a day after its end.
MIN_DAYS = 1


def days_for(event: dict) -> int:
    """How many days after its end the event's registrants' details are kept."""
    return event.get("retention_days") or settings.get().retention_days


def due_at(event: dict) -> datetime:
    """When the event's registrants' details are (or were) due for deletion."""
    try:
        return event["ends_at"] + timedelta(days=days_for(event))
    except OverflowError:  # a stored end near year 9999: never due
        return datetime.max.replace(tzinfo=UTC)


def is_purged(registration: dict) -> bool:
    """True once the registration's personal details were deleted (its address is a placeholder)."""
    return "@" not in (registration.get("email") or "")


def placeholder(reg_id: int) -> str:
    return f"{PLACEHOLDER_PREFIX}{reg_id}"


def _registration_id_sql() -> str:
    """SQL for the registration id an outbox row's JSON payload names (NULL when none). Never
    raises on odd text: a payload that is not JSON must not stop the purge forever."""
    if db.is_postgres():
        # The regex reads the compact JSON every writer produces ({"registration_id":12,...});
        # ten digits hold any id the integer column can.
        return "CAST(substring(payload from '\"registration_id\": ?([0-9]{1,10})') AS bigint)"
    return "(CASE WHEN json_valid(payload) THEN json_extract(payload, '$.registration_id') END)"


async def purge_due(now: datetime | None = None, budget: int = PER_TICK) -> int:
    """Purge the registrants of every event whose retention has run out at `now` (default: the
    real time), oldest end first, at most `budget` registrations in this call. Returns how many
    registrations were anonymised. Events with nobody left to purge get `purged_at` set; the
    rest continue at the next call.

    An event moved after its purge (purged_at before its new end) is due again when its new
    retention runs out, for whoever registered since."""
    now = now or clock.now()
    candidates = await db.fetch(
        "SELECT id, ends_at, retention_days, purged_at FROM event "
        "WHERE ends_at <= {} AND (purged_at IS NULL OR purged_at < ends_at) ORDER BY ends_at, id",
        now - timedelta(days=MIN_DAYS),
    )
    done = 0
    for event in candidates:
        if due_at(event) > now:
            continue
        while done < budget:
            purged, finished = await _purge_batch(event["id"], now, min(BATCH, budget - done))
            done += purged
            if finished:
                break
        if done >= budget:
            break
    return done


async def _purge_batch(event_id: int, now: datetime, limit: int) -> tuple[int, bool]:
    """Anonymise up to `limit` registrations of one event, in one transaction. Returns (how many,
    whether the event is now fully purged)."""
    async with db.transaction():
        # Take the event row's lock first: a second purger of this event (another worker) waits
        # here, then reads the purged_at the first one wrote, instead of racing it row by row.
        locked = await db.fetch(
            "UPDATE event SET purged_at = purged_at WHERE id = {} RETURNING ends_at, purged_at", event_id
        )
        if not locked:
            return 0, True
        if locked[0]["purged_at"] is not None and locked[0]["purged_at"] >= locked[0]["ends_at"]:
            return 0, True
        rows = await db.fetch(
            "SELECT id FROM registration WHERE event = {} AND email LIKE '%@%' ORDER BY id LIMIT {}",
            event_id,
            limit,
        )
        ids = [row["id"] for row in rows]
        if ids:
            await _anonymise(ids, now)
        if len(ids) < limit:
            await db.fetch("UPDATE event SET purged_at = {} WHERE id = {}", now, event_id)
            return len(ids), True
        return len(ids), False


async def _anonymise(ids: list[int], now: datetime) -> None:
    """Strip the personal data of these registrations and of what refers to them. Runs inside
    the caller's transaction."""
    where, args = db.sql_in("id", ids)
    # '{}' goes as a parameter: in the SQL text it would read as a placeholder (db.fetch).
    await db.fetch(
        "UPDATE registration SET name = '', email = CAST({} AS TEXT) || CAST(id AS TEXT), answers = {}, "
        f"updated_at = {{}} WHERE {where} AND email LIKE '%@%'",
        PLACEHOLDER_PREFIX,
        "{}",
        now,
        *args,
    )
    reg_id = _registration_id_sql()
    where, args = db.sql_in(reg_id, ids)
    # Only the id stays in the payload (what a message was about is no one's personal data, but
    # nothing else need stay either); an error text may quote the address ("550 <ada@...>").
    await db.fetch(
        f"UPDATE outbox SET recipient = CAST({{}} AS TEXT) || CAST({reg_id} AS TEXT), "
        f"payload = '{{\"registration_id\":' || CAST({reg_id} AS TEXT) || '}}', "
        "last_error = CASE WHEN status = 'queued' THEN {} ELSE '' END, "
        "status = CASE WHEN status = 'queued' THEN 'skipped' ELSE status END "
        f"WHERE mailing IS NULL AND {where}",
        PLACEHOLDER_PREFIX,
        SKIPPED_REASON,
        *args,
    )
    where, args = db.sql_in("subject_id", ids)
    await db.fetch(
        f"UPDATE audit_entry SET summary = {{}} WHERE subject_type = 'registration' AND {where}",
        AUDIT_SUMMARY,
        *args,
    )


def describe(event: dict, now: datetime | None = None) -> dict:
    """What staff are told: the figure (and whether it is the default), when the details are or
    were due for deletion, when they were deleted, and whether that is still to come."""
    now = now or clock.now()
    purged_at = event.get("purged_at")
    if purged_at is not None and purged_at < event["ends_at"]:
        purged_at = None  # moved after its purge: the newer registrants are still to be purged
    return {
        "days": days_for(event),
        "is_default": not event.get("retention_days"),
        "due_at": due_at(event),
        "purged_at": purged_at,
        "pending": purged_at is None,
        "overdue": purged_at is None and due_at(event) <= now,
    }
