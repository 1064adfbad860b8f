"""The audit log: who created, changed, published, cancelled or released what, and when.

The entry is part of the change: the domain function that makes a change calls `record()` inside
the change's own transaction, so a change that fails leaves no entry and no change goes without
one. Whoever asks (an API handler, a workspace page, the CLI) passes the acting staff member as
`actor` (None: the system or the CLI), and the domain function writes the same action and summary
for the same change. Entries are not edited afterwards, except that retention
(domain/retention.py) blanks the summaries about a registrant whose details it deletes.
"""

from __future__ import annotations

from .. import clock, db
from ..tables import MAX_ID, AuditEntry

INSERT_SQL = (
    "INSERT INTO audit_entry (staff, action, subject_type, subject_id, summary, created_at) "
    "VALUES ({}, {}, {}, {}, {}, {}) RETURNING id"
)


async def record(
    staff_id: int | None, action: str, subject_type: str = "", subject_id: int | None = None, summary: str = ""
) -> int:
    """Append one entry, e.g. `record(3, "issue.release", "issue", 7, "now, to about 2000
    subscribers")`. Joins the caller's transaction when there is one: call it from inside the
    transaction of the change it describes."""
    rows = await db.fetch(INSERT_SQL, staff_id, action, subject_type, subject_id, summary[:2000], clock.now())
    return rows[0]["id"]


async def recent(limit: int = 100, before_id: int | None = None) -> list[dict]:
    """Newest first, keyset-paged by id (entries with an id below `before_id`), with the staff
    member's email as `staff_email` (None for the system). A cold path: Piccolo's query builder
    on tables.py, so a renamed column fails loudly."""
    query = AuditEntry.select(
        AuditEntry.id,
        AuditEntry.action,
        AuditEntry.subject_type,
        AuditEntry.subject_id,
        AuditEntry.summary,
        AuditEntry.created_at,
        AuditEntry.staff.email.as_alias("staff_email"),
    )
    if before_id is not None and before_id < 1:
        return []
    if before_id is not None and before_id <= MAX_ID:  # a larger one is no bound (nor an overflow)
        query = query.where(AuditEntry.id < before_id)
    return await query.order_by(AuditEntry.id, ascending=False).limit(limit)
