"""The outbox (domain/outbox.py) as staff see it: counts by status, recent and failed messages with
their errors, and sending a failed message again. Read and retry only: the mail worker still does
all sending.

A failed row's `last_error` is the one-line reason staff read (a refused recipient, an address
that can never be written into a message). Stored text is shown as it is, with control
characters made visible (`\x07`): an address stored before validation was tightened may hold
them, and staff need to see why it failed, not a mangled line."""

from __future__ import annotations

import re

from .. import clock, db
from ..tables import MAX_ID

# `skipped`: not sent on purpose (the subscriber left after the release).
STATUSES = ("queued", "sending", "sent", "failed", "skipped")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def visible(text: str | None) -> str:
    """`text` with every control character written as an escape, e.g. `\x07`, `\n`."""
    return _CONTROLS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text or "")


async def counts() -> dict[str, int]:
    rows = await db.fetch("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status")
    found = {r["status"]: int(r["n"]) for r in rows}
    return {s: found.get(s, 0) for s in STATUSES}


async def recent(
    status: str | None = None, q: str | None = None, limit: int = 50, before_id: int | None = None
) -> list[dict]:
    """Newest first, keyset-paged by id; `q` matches part of the recipient or the kind."""
    conditions: list[str] = ["id < {}"]
    args: list[object] = [before_id if before_id is not None else MAX_ID]
    if status in STATUSES:
        conditions.append("status = {}")
        args.append(status)
    if q:
        escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append("(LOWER(recipient) LIKE {} ESCAPE '\\' OR kind LIKE {} ESCAPE '\\')")
        args += [f"%{escaped}%", f"%{escaped}%"]
    rows = await db.fetch(
        "SELECT id, kind, recipient, status, attempts, last_error, created_at, next_attempt_at, sent_at, mailing "
        f"FROM outbox WHERE {' AND '.join(conditions)} ORDER BY id DESC LIMIT {{}}",
        *args,
        limit,
    )
    for row in rows:  # what the page shows: stored text with its control characters visible
        row["recipient_shown"], row["error_shown"] = visible(row["recipient"]), visible(row["last_error"])
    return rows


async def retry(row_id: int) -> bool:
    """Queue a failed message again, due now, with a fresh count of attempts (the worker gives
    up after a number of them). The previous error stays visible until the next attempt. False
    when the row is not (or no longer) failed."""
    rows = await db.fetch(
        "UPDATE outbox SET status = 'queued', attempts = 0, next_attempt_at = {} "
        "WHERE id = {} AND status = 'failed' RETURNING id",
        clock.now(),
        row_id,
    )
    return bool(rows)
