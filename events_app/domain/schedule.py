"""Time-triggered messages: reminders before an event and the follow-up after it.

`enqueue_due(now)` looks at the clock once and queues what is due, each message once: a ledger
row per (registration, kind, key) with a unique index, inserted with ON CONFLICT DO NOTHING in
the transaction that queues the message, so any number of workers may call it at once.

- Reminder: for each offset of the event's `reminders` (minutes before the start), at
  `starts_at - offset` and until the start (only the closest one due, so that workers back
  from an outage do not send "starts in 24 hours" next to "starts in 1 hour"), to everyone *registered* who held their seat before
  that moment (registered or promoted earlier): nobody gets a "starts in 24 hours" reminder for an
  event they signed up to an hour ago. The key holds the start time, so moving the event makes
  its reminders due again for the new time, including one already sent for the old time.
- Follow-up: `follow_up_minutes` after the end, once a recording or resources link is set, to
  every registered person: attendees (they used their join link) get a thank-you, the others a
  "sorry we missed you", both with the link. At most two weeks after the event.

Cancelled events and registrations get neither; a message queued just before a cancellation or
a reschedule is dropped at send time (the message builder checks the payload's start time).

The same tick then deletes the personal details of registrants whose event's retention has run
out (domain/retention.py), a bounded amount per tick; a failure there is logged and leaves the
messages already queued in place. A purged event gets no follow-up.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

from .. import clock, db
from . import outbox, retention

log = logging.getLogger(__name__)

FOLLOW_UP_WINDOW = timedelta(days=14)
LONGEST_REMINDER = timedelta(days=60)

CLAIM_SQL = (
    "INSERT INTO scheduled_send (registration, kind, key, created_at) "
    "SELECT id, {}, {}, {} FROM registration "
    "WHERE event = {} AND status = 'registered' AND COALESCE(promoted_at, created_at) <= {} "
    "AND email LIKE '%@%' "  # a purged registration (retention.is_purged) is never mailed
    "ON CONFLICT DO NOTHING RETURNING registration"
)


def reminder_key(offset: int, starts_at: datetime) -> str:
    return f"{offset}@{starts_at.astimezone(UTC).isoformat()}"


async def enqueue_due(now: datetime | None = None) -> int:
    """Queue every reminder and follow-up due at `now` (default: the real time) that is not
    queued yet, then purge the registrants whose retention ran out by `now` (at most
    retention.PER_TICK of them). Returns how many messages were queued."""
    now = now or clock.now()
    queued = await _enqueue_messages(now)
    try:
        await retention.purge_due(now)
    except Exception:
        # The next tick tries again; what this one queued stays queued.
        log.exception("schedule: purging registrants' details after retention failed")
    return queued


async def _enqueue_messages(now: datetime) -> int:
    queued = 0
    candidates = await db.fetch(
        "SELECT id, starts_at, ends_at, reminders, recording_url, follow_up_minutes FROM event "
        "WHERE status = 'published' AND starts_at > {} AND starts_at <= {}",
        now,
        now + LONGEST_REMINDER,
    )
    for event in candidates:
        # Only the closest reminder that is due: after an outage, "starts in 24 hours" must not
        # go out an hour before the start next to "starts in 1 hour".
        due = [m for m in json.loads(event["reminders"] or "[]") if event["starts_at"] - timedelta(minutes=m) <= now]
        if due:
            offset = min(due)
            moment = event["starts_at"] - timedelta(minutes=offset)
            queued += await _queue(
                event,
                "reminder",
                reminder_key(offset, event["starts_at"]),
                moment,
                now,
                {"offset": offset, "starts_at": event["starts_at"].isoformat()},
            )
    finished = await db.fetch(
        "SELECT id, starts_at, ends_at, recording_url, follow_up_minutes FROM event "
        "WHERE status = 'published' AND ends_at <= {} AND ends_at > {} AND recording_url != '' "
        "AND (purged_at IS NULL OR purged_at < ends_at)",
        now,
        now - FOLLOW_UP_WINDOW,
    )
    for event in finished:
        if event["ends_at"] + timedelta(minutes=event["follow_up_minutes"]) <= now:
            queued += await _queue(event, "follow_up", "once", event["ends_at"], now, {})
    return queued


async def _queue(event: dict, kind: str, key: str, held_before: datetime, now: datetime, extra: dict) -> int:
    """Claim the ledger rows for one (event, kind, key) and queue one message per claimed row."""
    async with db.transaction():
        claimed = await db.fetch(CLAIM_SQL, kind, key, now, event["id"], held_before)
        if not claimed:
            return 0
        ids = sorted(row["registration"] for row in claimed)
        for start in range(0, len(ids), 500):  # stay far below both engines' parameter limits
            chunk = ids[start : start + 500]
            ids_sql, args = db.sql_in("id", chunk)
            people = await db.fetch(
                f"SELECT id, email, attended_at FROM registration WHERE {ids_sql} ORDER BY id", *args
            )
            for person in people:
                message_kind = kind
                if kind == "follow_up":
                    message_kind = "follow_up_attended" if person["attended_at"] else "follow_up_missed"
                await outbox.enqueue(message_kind, person["email"], {"registration_id": person["id"], **extra})
        return len(ids)
