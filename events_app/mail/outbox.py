"""The durable outbox: enqueue inside the caller's transaction, claim, and mark.

A row says what to send (kind, recipient, a small JSON payload of ids and what changed); the
worker renders it at send time. Rows move queued -> sending -> sent | failed. A row left in
`sending` longer than the claim timeout (a worker died) goes back to `queued`; the Message-ID is
derived from the row id, so a retry is the same message to the receiving side.

Claiming is one conditional UPDATE, correct on both engines: on PostgreSQL the inner SELECT skips
rows another worker has locked, and the outer WHERE repeats the status test.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from .. import db

INSERT_SQL = (
    "INSERT INTO outbox (kind, recipient, payload, status, attempts, next_attempt_at, "
    "last_error, created_at) VALUES ({}, {}, {}, 'queued', 0, {}, '', {}) RETURNING id"
)


def now() -> datetime:
    return datetime.now(timezone.utc)


async def enqueue(kind: str, recipient: str, payload: dict[str, Any], at: datetime | None = None) -> int:
    """Queue one message. Call inside the transaction of the change that causes it, so the
    message exists if and only if the change does. `at` delays the first attempt."""
    moment = now()
    rows = await db.fetch(
        INSERT_SQL, kind, recipient, json.dumps(payload, separators=(",", ":")), at or moment, moment
    )
    return rows[0]["id"]


async def claim(limit: int, claim_timeout: float) -> list[dict]:
    """Take up to `limit` due rows for sending, first releasing rows stuck in `sending`."""
    moment = now()
    await db.fetch(
        "UPDATE outbox SET status = 'queued' WHERE status = 'sending' AND claimed_at < {}",
        moment - timedelta(seconds=claim_timeout),
    )
    # On PostgreSQL `id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)` may be planned as a
    # nested-loop semi join that re-runs the subquery for every row, each run skipping the rows
    # this statement already updated: the LIMIT was ignored and one worker claimed everything due.
    # `= ANY(ARRAY(...))` makes the subquery an InitPlan, run once.
    pick, skip = ("= ANY(ARRAY(", " FOR UPDATE SKIP LOCKED))") if db.is_postgres() else ("IN (", ")")
    return await db.fetch(
        "UPDATE outbox SET status = 'sending', claimed_at = {}, attempts = attempts + 1 "
        f"WHERE status = 'queued' AND id {pick}SELECT id FROM outbox WHERE status = 'queued' "
        f"AND next_attempt_at <= {{}} ORDER BY id LIMIT {{}}{skip} "
        "RETURNING id, kind, recipient, payload, attempts",
        moment,
        moment,
        limit,
    )


async def mark_sent(row_id: int) -> None:
    await db.fetch(
        "UPDATE outbox SET status = 'sent', sent_at = {}, last_error = '' WHERE id = {}",
        now(),
        row_id,
    )


async def mark_retry(row_id: int, attempts: int, error: str, max_attempts: int) -> None:
    """A temporary failure: back to `queued` with exponential backoff, or `failed` when the
    attempts are used up."""
    if attempts >= max_attempts:
        await mark_failed(row_id, error)
        return
    delay = min(30 * 2 ** (attempts - 1), 3600)
    await db.fetch(
        "UPDATE outbox SET status = 'queued', next_attempt_at = {}, last_error = {} WHERE id = {}",
        now() + timedelta(seconds=delay),
        error[:2000],
        row_id,
    )


async def mark_failed(row_id: int, error: str) -> None:
    await db.fetch(
        "UPDATE outbox SET status = 'failed', last_error = {} WHERE id = {}", error[:2000], row_id
    )
