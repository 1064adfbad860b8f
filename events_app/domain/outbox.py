"""The durable outbox: enqueue inside the caller's transaction, claim, and mark.

The domain owns it: a change queues its messages here, in its own transaction, and the mail worker
(events_app/mail/) claims and marks rows through these functions only. A row says what to send
(kind, recipient, a small JSON payload of ids and what changed); the worker renders it at send
time. Rows move queued -> sending -> sent | failed | skipped (a list recipient who left since the
release). A permanent refusal of an address is the audience's business
(domain/audience.py `suppress`). A row left in
`sending` longer than the claim timeout (a worker died) goes back to `queued`; the Message-ID is
derived from the row id, so a retry is the same message to the receiving side.

Claiming is one conditional UPDATE, correct on both engines: on PostgreSQL the inner SELECT skips
rows another worker has locked, and the outer WHERE repeats the status test. The statements are
fixed SQL (a hot path: a release claims and marks 100,000 rows): measured by bench/release.py
(2 cores, 30 Nov 2026) the hand-off to SMTP ran at 1,215 messages/s, 1.02x raw aiosmtplib sending
pre-built messages over the same two connections.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any

from .. import db
from ..clock import now

INSERT_SQL = (
    "INSERT INTO outbox (kind, recipient, payload, status, attempts, next_attempt_at, "
    "last_error, created_at) VALUES ({}, {}, {}, 'queued', 0, {}, '', {}) RETURNING id"
)


# json.dumps with separators builds an encoder per call; one kept encoder gives the same text.
_COMPACT = json.JSONEncoder(separators=(",", ":"))


async def enqueue(kind: str, recipient: str, payload: dict[str, Any], at: datetime | None = None) -> int:
    """Queue one message. Call inside the transaction of the change that causes it, so the
    message exists if and only if the change does. `at` delays the first attempt."""
    moment = now()
    rows = await db.fetch(INSERT_SQL, kind, recipient, _COMPACT.encode(payload), at or moment, moment)
    return rows[0]["id"]


RETURNING = "RETURNING id, kind, recipient, payload, attempts, created_at, mailing, subscriber, claimed_at"


async def claim(limit: int, claim_timeout: float, recover: bool = True) -> list[dict]:
    """Take up to `limit` due rows for sending, first releasing rows stuck in `sending` (with
    `recover`; a worker's refills within one run skip that statement, its first claim does it).
    Transactional rows (confirmations, changes, reminders) come first, so that a registration's
    confirmation never waits behind a bulk release; then the rows of mailings that are sending
    (not scheduled or paused), oldest mailing first."""
    moment = now()
    if recover:
        await db.fetch(
            "UPDATE outbox SET status = 'queued' WHERE status = 'sending' AND claimed_at < {}",
            moment - timedelta(seconds=claim_timeout),
        )
    rows = await _claim("mailing IS NULL", (), moment, limit)
    if len(rows) < limit:
        for mailing in await db.fetch("SELECT id FROM mailing WHERE status = 'sending' ORDER BY id"):
            rows += await _claim("mailing = {}", (mailing["id"],), moment, limit - len(rows))
            if len(rows) >= limit:
                break
    return rows


async def _claim(which: str, args: tuple, moment: datetime, limit: int) -> list[dict]:
    # On PostgreSQL `id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)` may be planned as a
    # nested-loop semi join that re-runs the subquery for every row, each run skipping the rows
    # this statement already updated: the LIMIT was ignored and one worker claimed everything due.
    # `= ANY(ARRAY(...))` makes the subquery an InitPlan, run once. The index outbox_due
    # (status, mailing, next_attempt_at) hands the subquery its rows in order, without a sort.
    pick, skip = ("= ANY(ARRAY(", " FOR UPDATE SKIP LOCKED))") if db.is_postgres() else ("IN (", ")")
    return await db.fetch(
        "UPDATE outbox SET status = 'sending', claimed_at = {}, attempts = attempts + 1 "
        f"WHERE status = 'queued' AND id {pick}SELECT id FROM outbox WHERE status = 'queued' AND {which} "
        f"AND next_attempt_at <= {{}} ORDER BY next_attempt_at, id LIMIT {{}}{skip} {RETURNING}",
        moment,
        *args,
        moment,
        limit,
    )


# While set (`deferring_sent`), `mark_sent` collects row ids here instead of writing each.
_deferred_sent: ContextVar[list[int] | None] = ContextVar("outbox_deferred_sent", default=None)


@contextmanager
def deferring_sent(pending: list[int]) -> Iterator[list[int]]:
    """Within this block (and the tasks started in it), `mark_sent` appends the row id to
    `pending` instead of writing it; the caller records them with `mark_sent_many`. A worker
    sending a batch uses it: one statement per batch instead of one commit per message (on
    SQLite each commit also takes the write lock the web server's registrations wait for). The
    rows stay `sending` until then: a crash in between re-sends at most them, the messages in
    flight, as for bulk mail."""
    token = _deferred_sent.set(pending)
    try:
        yield pending
    finally:
        _deferred_sent.reset(token)


async def mark_sent(row_id: int) -> None:
    """Record a message as handed over; tried again while the database is away (db.while_away),
    because a row left `sending` is sent a second time after the claim time-out. Inside
    `deferring_sent` only noted, for the caller to record with its batch."""
    pending = _deferred_sent.get()
    if pending is not None:
        pending.append(row_id)
        return
    sent_at = now()
    await db.while_away(
        lambda: db.fetch(
            "UPDATE outbox SET status = 'sent', sent_at = {}, last_error = '' WHERE id = {}",
            sent_at,
            row_id,
        )
    )


async def mark_sent_many(row_ids: list[int]) -> None:
    """Record a batch of messages as handed over in one statement. Until it runs they stay
    `sending`: a crash in between re-sends at most them (the messages in flight)."""
    if row_ids:
        where, args = db.sql_in("id", row_ids)
        sent_at = now()
        await db.while_away(
            lambda: db.fetch(
                f"UPDATE outbox SET status = 'sent', sent_at = {{}}, last_error = '' WHERE {where}", sent_at, *args
            )
        )


async def mark_skipped(row_id: int, reason: str) -> None:
    """Not sent, on purpose: the recipient left (unsubscribed, paused, erased) after the release."""
    await db.fetch("UPDATE outbox SET status = 'skipped', last_error = {} WHERE id = {}", reason[:2000], row_id)


async def mark_retry(row_id: int, attempts: int, error: str, max_attempts: int, base: float = 30.0) -> None:
    """A temporary failure: back to `queued` with exponential backoff from `base` seconds (up to
    an hour), or `failed` when the attempts are used up."""
    if attempts >= max_attempts:
        await mark_failed(row_id, error)
        return
    delay = min(base * 2 ** (attempts - 1), 3600)
    await db.fetch(
        "UPDATE outbox SET status = 'queued', next_attempt_at = {}, last_error = {} WHERE id = {}",
        now() + timedelta(seconds=delay),
        error[:2000],
        row_id,
    )


async def give_back(row: dict) -> None:
    """Return a claimed row untried (its mailing was paused meanwhile, or it waited too long in
    the worker): the attempt is not counted. Only while the claim is still this worker's: once
    the claim time-out handed the row to another worker, it is theirs."""
    await db.fetch(
        "UPDATE outbox SET status = 'queued', attempts = attempts - 1 "
        "WHERE id = {} AND status = 'sending' AND claimed_at = {}",
        row["id"],
        row["claimed_at"],
    )


async def mark_failed(row_id: int, error: str) -> None:
    await db.fetch("UPDATE outbox SET status = 'failed', last_error = {} WHERE id = {}", error[:2000], row_id)
