"""Bulk mailings: an issue's release or an event announcement, to the subscribers of some topics.

A mailing is created at release time and never changes its audience: the recipients are the
subscribers who, at `release_at`, were confirmed, not paused, not refused by their mail server
(bounced), and subscribed to one of the mailing's topics. People who join later are not added.

The ledger is the outbox itself: `expand_step()` writes one outbox row per recipient, keyed by
(mailing, subscriber) under a unique index, in keyset batches of subscriber ids (never the whole
list in memory). Expansion is idempotent: the next batch starts after the highest subscriber id
already in the ledger, and a batch repeated after a crash, or by a second worker at the same
moment, inserts nothing twice (ON CONFLICT DO NOTHING). The worker then sends the rows like any
other; a crash repeats at most the rows it had claimed (in flight).

On PostgreSQL a batch is 200,000 recipients, one INSERT ... SELECT that hands back its count
(not a row per recipient), under a transaction-scoped advisory lock so that one worker at a time
expands a mailing, and a worker's `tick` goes on for up to EXPAND_SECONDS: a 1,000,000-recipient
ledger is written in about 20 s (bench/release.py; one bare INSERT ... SELECT of the same rows
takes 8 s), where batches of 1,000 between the worker's sending rounds took over 20 minutes.
Each row is due at its own microsecond and the outbox is analysed after a large step, so that a
claim reads about the rows it takes (see `_expand`).

Delivery figures are counts of the ledger by state (`delivery`). A polled page during a release
uses `delivery_live`: one count per process shared by all its requests, renewed in the
background at most every 2.5 s, shown with the time it was taken; a count of a 1,000,000-row
ledger that is changing takes about 0.3 s, which every poll would otherwise wait for.

States: scheduled (release_at in the future) -> sending -> done; paused (by staff, or by the
worker after a run of temporary failures, with `paused_until`) holds the rows back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime, timedelta

from .. import db
from ..clock import now
from . import audit
from .audience import LIFT_BOUNCE, not_paused_sql, not_suppressed_sql, suppressed_sql
from .errors import Conflict, NotFound
from .subscriptions import topic_ids

# Ledger rows per expansion step. SQLite: a short write, since every other writer waits for it.
# # PostgreSQL: a large INSERT ... SELECT (about 1.5 s for 200,000 rows on 2 cores), so that a
# 1,000,000-recipient ledger is written in a few steps.
EXPAND_BATCH = 1000
EXPAND_BATCH_PG = 200_000
# PostgreSQL: a step that wrote at least this many rows refreshes the outbox's statistics.
ANALYZE_AFTER = 10_000
# PostgreSQL: how long one `tick` may go on writing ledger batches before the worker sends again.
EXPAND_SECONDS = 10.0
# The first key of the advisory lock that lets one worker at a time expand a mailing.
LEDGER_LOCK = 0x6C656467  # "ledg"
# One worker at a time writes a mailing's ledger (PostgreSQL; the lock ends with the transaction).
PG_LEDGER_LOCK_SQL = "SELECT pg_try_advisory_xact_lock({}, {}) AS mine"
log = logging.getLogger(__name__)
# A polled delivery page (it asks every 3 s) recounts a sending mailing's ledger at most this
# often (seconds): one count of a 1,000,000-row ledger costs the database about 0.3 s of CPU.
LIVE_MAX_AGE = 2.5
# ... or, when a count took longer, this many times as long as the last one took: the shared count
# then costs the database at most about a tenth of one core however large the ledger or busy the
# machine (a release on 2 cores: the page's own statements waited behind it, p99 240 ms).
LIVE_COST_FACTOR = 10.0
# Below this many ledger rows a count takes a few milliseconds: the page counts exactly each time
# (and sees a batch written a moment ago); from it on, the count is shared as delivery_live says.
LIVE_SHARED_FROM = 50_000
# Delivery states as staff read them; `sending` rows are in flight.
STATES = ("queued", "sending", "sent", "failed", "skipped")


def _audience(topic_ids: list[int]) -> tuple[str, list]:
    """SQL conditions on subscriber `s` for the audience at a moment (the first argument), and
    the arguments after it. A subscriber in two of the topics is one recipient."""
    topics, topic_args = db.sql_in("t.topic", topic_ids)
    not_paused = not_paused_sql("s.paused_until").replace("{}", "{0}")
    sql = (
        f"s.status = 'confirmed' AND s.email IS NOT NULL AND {not_suppressed_sql('s')} "
        f"AND s.confirmed_at <= {{0}} AND {not_paused} "
        f"AND EXISTS (SELECT 1 FROM subscription t WHERE t.subscriber = s.id AND {topics} "
        "AND t.created_at <= {0})"
    )
    return sql, topic_args


def _sql(template: str, moment: datetime, topic_ids: list[int]) -> tuple[str, list]:
    """`template` with its {audience} filled in, and the audience's arguments (in text order)."""
    cond, topic_args = _audience(topic_ids)
    return template.replace("{audience}", cond.replace("{0}", "{}")), [moment, moment, *topic_args, moment]


def _typed(sql_type: str) -> str:
    # A parameter in a SELECT list has no type for PostgreSQL to infer (it would be text).
    return f"{{}}::{sql_type}" if db.is_postgres() else "{}"


async def recipient_count(topic_ids: list[int], at: datetime | None = None) -> int:
    """How many people a mailing to these topics released at `at` (default now) would reach."""
    sql, args = _sql("SELECT count(*) AS n FROM subscriber s WHERE {audience}", at or now(), topic_ids)
    return (await db.fetch(sql, *args))[0]["n"]


async def create(
    kind: str,
    topic_ids: list[int],
    *,
    issue_id: int | None = None,
    event_id: int | None = None,
    release_at: datetime | None = None,
    staff_id: int | None = None,
) -> dict:
    """Record a mailing due at `release_at` (default now). The worker expands and sends it."""
    moment = now()
    at = release_at or moment
    rows = await db.fetch(
        "INSERT INTO mailing (kind, issue, event, topics, status, release_at, pause_reason, created_by, created_at) "
        "VALUES ({}, {}, {}, {}, {}, {}, '', {}, {}) RETURNING *",
        kind,
        issue_id,
        event_id,
        json.dumps(topic_ids),
        "scheduled" if at > moment else "sending",
        at,
        staff_id,
        moment,
    )
    return rows[0]


async def get(mailing_id: int) -> dict:
    rows = await db.fetch("SELECT * FROM mailing WHERE id = {}", mailing_id)
    if not rows:
        raise NotFound(f"No mailing {mailing_id}")
    return rows[0]


async def expand_step(mailing: dict, batch: int | None = None) -> int:
    """Write the ledger rows of the next `batch` recipients of `mailing` (default: the engine's
    EXPAND_BATCH); returns how many were written. Once none are left the mailing is marked
    expanded. On PostgreSQL one worker at a time writes a mailing's ledger (a transaction-scoped
    advisory lock; another worker's step returns 0 at once instead of waiting on the same rows),
    and the batch is one INSERT ... SELECT that returns its count, never the rows."""
    size = batch or expand_batch()
    if not db.is_postgres():
        return await _expand(mailing, size)
    async with db.transaction():
        mine = await db.fetch(PG_LEDGER_LOCK_SQL, LEDGER_LOCK, mailing["id"])
        if not mine[0]["mine"]:
            return 0
        written = await _expand(mailing, size)
    if written >= ANALYZE_AFTER:
        # The planner's statistics of the outbox, taken when it was small, would have the claims
        # sort every queued row of the mailing (0.4 s per claim of 100 at 1,000,000 rows, 2 ms
        # once analysed). A sample of the table: about 0.1 s.
        try:
            await db.fetch("ANALYZE outbox")
        except Exception:
            log.exception("ANALYZE outbox after writing ledger rows failed")
    return written


async def _expand(mailing: dict, batch: int) -> int:
    topic_ids = json.loads(mailing["topics"])
    kind = mailing["kind"]  # the outbox kind: issue | announcement
    moment = now()
    last = await _last_expanded(mailing["id"])
    ts, integer = _typed("timestamptz"), _typed("integer")
    # On PostgreSQL each row of the batch is due at its own microsecond, in subscriber order, all
    # within the second before now. The claim takes rows ORDER BY next_attempt_at, id from the
    # index (status, mailing, next_attempt_at): with one time for a whole batch it had to read and
    # sort all 200,000 rows of that time for each claim of 100 (about 1 s per claim at 1,000,000,
    # a fifth of the hand-off rate); with distinct times it reads about 100.
    due = f"{ts} + row_number() OVER (ORDER BY s.id) * interval '1 microsecond'" if db.is_postgres() else ts
    due_at = moment - timedelta(seconds=1) if db.is_postgres() else moment
    insert = (
        "INSERT INTO outbox (kind, recipient, payload, status, attempts, next_attempt_at, last_error, "
        "created_at, mailing, subscriber) "
        f"SELECT {{}}, s.email, {{}}, 'queued', 0, {due}, '', {ts}, {integer}, s.id FROM subscriber s "
        "WHERE s.id > {} AND {audience} ORDER BY s.id LIMIT {} "
        "ON CONFLICT DO NOTHING RETURNING id"
    )
    if db.is_postgres():  # a count of the batch, not a row per recipient back to this process
        insert = f"WITH written AS ({insert}) SELECT count(*) AS n FROM written"
    sql, args = _sql(insert, mailing["release_at"], topic_ids)
    inserted = await db.fetch(sql, kind, "{}", due_at, moment, mailing["id"], last, *args, batch)
    written = inserted[0]["n"] if db.is_postgres() else len(inserted)
    if written >= batch:
        return written
    # A short batch: no one may be left (or, on SQLite, another worker wrote this batch a moment ago).
    left, left_args = _sql(
        "SELECT 1 AS x FROM subscriber s WHERE s.id > {} AND {audience} LIMIT 1", mailing["release_at"], topic_ids
    )
    if not await db.fetch(left, await _last_expanded(mailing["id"]), *left_args):
        await db.fetch(
            "UPDATE mailing SET expanded_at = {} WHERE id = {} AND expanded_at IS NULL", now(), mailing["id"]
        )
    return written


async def _last_expanded(mailing_id: int) -> int:
    """The highest subscriber id already in the ledger (the keyset cursor; an index lookup)."""
    rows = await db.fetch("SELECT max(subscriber) AS last FROM outbox WHERE mailing = {}", mailing_id)
    return rows[0]["last"] or 0


def expand_batch() -> int:
    """The ledger rows one expansion step writes on this engine."""
    return EXPAND_BATCH_PG if db.is_postgres() else EXPAND_BATCH


async def tick(batch: int | None = None) -> int:
    """One round of bookkeeping for the worker: start mailings that fell due, resume those whose
    automatic pause ran out, write ledger rows for each mailing still expanding (one batch; on
    PostgreSQL batches for up to EXPAND_SECONDS), and mark finished mailings done. Returns the ledger rows written (0: nothing to expand)."""
    moment = now()
    await db.fetch("UPDATE mailing SET status = 'sending' WHERE status = 'scheduled' AND release_at <= {}", moment)
    await db.fetch(
        "UPDATE mailing SET status = 'sending', paused_until = NULL, pause_reason = '' "
        "WHERE status = 'paused' AND paused_until IS NOT NULL AND paused_until <= {}",
        moment,
    )
    written = 0
    size = batch or expand_batch()
    # SQLite: one short step per round. PostgreSQL: steps (each its own commit, so its rows can
    # be claimed at once) for up to EXPAND_SECONDS, so that a large ledger is written in a couple
    # of rounds while transactional mail waits at most that long.
    budget = EXPAND_SECONDS if db.is_postgres() else 0.0
    started = time.monotonic()
    for mailing in await db.fetch(
        "SELECT * FROM mailing WHERE status IN ('sending', 'paused') AND expanded_at IS NULL ORDER BY id"
    ):
        while True:
            step = await expand_step(mailing, size)
            written += step
            if step < size or time.monotonic() - started >= budget:
                break
    for mailing in await db.fetch("SELECT id FROM mailing WHERE status = 'sending' AND expanded_at IS NOT NULL"):
        if not await db.fetch(
            "SELECT 1 AS x FROM outbox WHERE status IN ('queued', 'sending') AND mailing = {} LIMIT 1",
            mailing["id"],
        ):
            await db.fetch(
                "UPDATE mailing SET status = 'done', finished_at = {} WHERE id = {} AND status = 'sending'",
                now(),
                mailing["id"],
            )
    return written


async def _counts(mailing_id: int) -> dict:
    """The ledger's rows per delivery state and in all: a direct count (about 0.3 s for a
    1,000,000-row ledger whose rows are changing, 2 cores)."""
    states, args = db.sql_in("status", list(STATES))
    counts = {state: 0 for state in STATES}
    for row in await db.fetch(
        f"SELECT status, count(*) AS n FROM outbox WHERE {states} AND mailing = {{}} GROUP BY status",
        *args,
        mailing_id,
    ):
        counts[row["status"]] = row["n"]
    counts["total"] = sum(counts[s] for s in STATES)
    return counts


def _figures(mailing: dict, counts: dict) -> dict:
    return {
        **counts,
        "mailing": mailing["id"],
        "status": mailing["status"],
        "release_at": mailing["release_at"],
        "expanded": mailing["expanded_at"] is not None,
        "paused_until": mailing["paused_until"],
        "pause_reason": mailing["pause_reason"],
        "finished_at": mailing["finished_at"],
    }


async def delivery(mailing_id: int) -> dict:
    """Counts per delivery state, from the ledger, plus the mailing's own state."""
    mailing = await get(mailing_id)
    return _figures(mailing, await _counts(mailing_id))


class _Recent:
    """One process's latest count of a sending mailing's ledger, and the count under way."""

    def __init__(self) -> None:
        self.counts: dict | None = None
        self.as_of: datetime | None = None
        self.taken = float("-inf")  # loop time of the count
        self.cost = 0.0  # seconds the latest count took
        self.counting: asyncio.Task | None = None


# (mailing id, created_at) -> its latest count in this process; a few entries (mailings sending).
_recent: dict[tuple, _Recent] = {}


async def _recount(key: tuple, entry: _Recent) -> None:
    try:
        moment, started = now(), asyncio.get_running_loop().time()
        counts = await _counts(key[0])
        entry.counts, entry.as_of, entry.taken = counts, moment, started
        entry.cost = asyncio.get_running_loop().time() - started
    except Exception:  # a page shows the last figures (their time says how old); the next poll retries
        log.exception("counting the ledger of mailing %s failed", key[0])
    finally:
        entry.counting = None


async def delivery_live(mailing_id: int, max_age: float | None = None, mailing: dict | None = None) -> dict:
    """`delivery()` for a page that polls while the mailing is sending, with `as_of`, the time of
    the count. While the mailing is sending, a count of its (large) ledger is shared by every
    request of this process (once the ledger holds LIVE_SHARED_FROM rows; a smaller one is counted
    exactly on each request): the figures are those of the latest count, and once they are older
    than `max_age` seconds (default: LIVE_MAX_AGE, or LIVE_COST_FACTOR times as long as the last
    count took) one new count starts in the background, the request not waiting for it. Only the
    first request waits. The mailing's own state (status, pause, expanded) is read fresh every
    time (`mailing`: the row the caller has just read); in any other state than sending the count
    is direct and exact."""
    if mailing is None or mailing["id"] != mailing_id:
        mailing = await get(mailing_id)
    if mailing["status"] != "sending":
        moment = now()
        return {**_figures(mailing, await _counts(mailing_id)), "as_of": moment}
    loop = asyncio.get_running_loop()
    key = (mailing_id, mailing["created_at"], id(loop))
    entry = _recent.get(key)
    if entry is None:
        for stale in [k for k in _recent if k[0] == mailing_id or k[2] != id(loop)]:
            del _recent[stale]  # another database's or loop's mailing with this id
        while len(_recent) >= 64:
            del _recent[next(iter(_recent))]
        entry = _recent[key] = _Recent()
    if entry.counts is not None and entry.counts["total"] < LIVE_SHARED_FROM and entry.counting is None:
        moment, started = now(), loop.time()
        entry.counts, entry.as_of, entry.taken = await _counts(mailing_id), moment, started
        return {**_figures(mailing, entry.counts), "as_of": entry.as_of}
    if max_age is None:
        max_age = max(LIVE_MAX_AGE, LIVE_COST_FACTOR * entry.cost)
    if entry.counting is None and loop.time() - entry.taken > max_age:
        entry.counting = asyncio.create_task(_recount(key, entry))
    if entry.counts is None and entry.counting is not None:
        await asyncio.shield(entry.counting)  # the first figures of this process
    if entry.counts is None:  # the count failed: count here, exactly (the error shows)
        moment = now()
        return {**_figures(mailing, await _counts(mailing_id)), "as_of": moment}
    return {**_figures(mailing, entry.counts), "as_of": entry.as_of}


async def retry_failed(mailing_id: int, include_bounced: bool = False) -> int:
    """Queue the failed rows of a mailing again (and nothing else); returns how many. Addresses
    their server refused for good stay failed unless `include_bounced`, which also lifts the
    mark (for a refusal that was our fault, say a misconfigured relay)."""
    mailing = await get(mailing_id)
    async with db.transaction():
        if include_bounced:
            await db.fetch(
                f"UPDATE subscriber SET {LIFT_BOUNCE} WHERE id IN "
                "(SELECT subscriber FROM outbox WHERE status = 'failed' AND mailing = {})",
                mailing_id,
            )
        rows = await db.fetch(
            "UPDATE outbox SET status = 'queued', attempts = 0, next_attempt_at = {}, last_error = '' "
            "WHERE status = 'failed' AND mailing = {} AND subscriber NOT IN "
            f"(SELECT id FROM subscriber s WHERE {suppressed_sql('s')}) RETURNING id",
            now(),
            mailing_id,
        )
        if rows and mailing["status"] == "done":
            await db.fetch("UPDATE mailing SET status = 'sending', finished_at = NULL WHERE id = {}", mailing_id)
    return len(rows)


async def pause(mailing_id: int, until: datetime | None = None, reason: str = "paused by staff") -> dict:
    """Hold back the mailing's unsent rows (claims skip a paused mailing). `until` None: until
    resumed by staff; the worker's automatic pause sets a time."""
    mailing = await get(mailing_id)
    if mailing["status"] == "done":
        raise Conflict("This mailing has finished; there is nothing left to pause")
    await db.fetch(
        "UPDATE mailing SET status = 'paused', paused_until = {}, pause_reason = {} WHERE id = {}",
        until,
        reason,
        mailing_id,
    )
    return await get(mailing_id)


async def resume(mailing_id: int) -> dict:
    """Send again now: the paused rows become due at once."""
    mailing = await get(mailing_id)
    if mailing["status"] != "paused":
        raise Conflict(f"This mailing is {mailing['status']}, not paused")
    moment = now()
    async with db.transaction():
        await db.fetch(
            "UPDATE mailing SET status = CASE WHEN release_at > {} THEN 'scheduled' ELSE 'sending' END, "
            "paused_until = NULL, pause_reason = '' WHERE id = {}",
            moment,
            mailing_id,
        )
        await db.fetch(
            "UPDATE outbox SET next_attempt_at = {} WHERE status = 'queued' AND mailing = {}", moment, mailing_id
        )
    return await get(mailing_id)


async def pause_all_sending(minutes: float, reason: str) -> list[int]:
    """The worker's brake: after a run of temporary failures, pause every mailing that is sending
    for `minutes` (transactional mail goes on). Returns the paused mailing ids."""
    until = now() + timedelta(minutes=minutes)
    rows = await db.fetch(
        "UPDATE mailing SET status = 'paused', paused_until = {}, pause_reason = {} WHERE status = 'sending' "
        "RETURNING id",
        until,
        reason,
    )
    return [r["id"] for r in rows]


async def latest_for_issue(issue_id: int) -> dict | None:
    rows = await db.fetch("SELECT * FROM mailing WHERE issue = {} ORDER BY id DESC LIMIT 1", issue_id)
    return rows[0] if rows else None


def announcement_topics(event: dict) -> list[str]:
    """The topics an event's announcement goes to: `events`, and `careers` for an event tagged
    `career` (any case)."""
    return ["events"] + (["careers"] if "career" in {t.lower() for t in event["tags"]} else [])


def _announce_refusal(event: dict) -> Conflict | None:
    """Why the event cannot be announced now (None: it can)."""
    if event["status"] != "published":
        return Conflict(
            f"Only a published event can be announced; this one is {event['status']}", reason=event["status"]
        )
    if event["ends_at"] <= now():
        return Conflict("This event is over", reason="past")
    return None


async def announcements_of(event_id: int) -> list[dict]:
    """The event's announcement mailings, oldest first."""
    return await db.fetch("SELECT * FROM mailing WHERE kind = 'announcement' AND event = {} ORDER BY id", event_id)


async def announce_preview(event_id: int) -> dict:
    """What announcing the event now would do, changing nothing: {event, topics (slugs),
    recipients (counted now, as `announce` counts them), previous (earlier announcement
    mailings), refusal (a Conflict's message, or None)}. NotFound for an unknown event."""
    from . import events

    event = await events.get(event_id)
    slugs = announcement_topics(event)
    ids = list((await topic_ids(slugs, "topics")).values())
    refusal = _announce_refusal(event)
    return {
        "event": event,
        "topics": slugs,
        "recipients": await recipient_count(ids),
        "previous": await announcements_of(event_id),
        "refusal": refusal.message if refusal else None,
    }


async def announce(event_id: int, *, actor: int | None = None, again: bool = False) -> dict:
    """Email a published, upcoming event to the `events` topic (and `careers` for an event tagged
    `career`). One announcement per event unless `again` (a second one would reach everyone
    twice). Returns the mailing with `recipients`, the audience counted now. Audit, in the
    mailing's transaction: `event.announce` by `actor`, "to about N subscribers"."""
    from . import events

    event = await events.get(event_id)
    refusal = _announce_refusal(event)
    if refusal is not None:
        raise refusal
    if not again and await db.fetch(
        "SELECT id FROM mailing WHERE kind = 'announcement' AND event = {} LIMIT 1", event_id
    ):
        raise Conflict(
            'This event was announced already; send {"again": true} to announce it once more',
            reason="already_announced",
        )
    ids = list((await topic_ids(announcement_topics(event), "topics")).values())
    async with db.transaction():
        mailing = await create("announcement", ids, event_id=event_id, staff_id=actor)
        count = await recipient_count(ids, mailing["release_at"])
        await audit.record(actor, "event.announce", "event", event_id, f"to about {count} subscribers")
    return {**mailing, "recipients": count}
