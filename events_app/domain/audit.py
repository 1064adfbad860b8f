"""The audit log: who created, changed, published, cancelled or released what, and when.

`record()` is called by the layer that knows who is acting (the web handlers for staff, the CLI
with no staff member), inside or after the change it describes. Entries are never changed.
"""

from __future__ import annotations

from .. import clock, db
from ..tables import MAX_ID

INSERT_SQL = (
    "INSERT INTO audit_entry (staff, action, subject_type, subject_id, summary, created_at) "
    "VALUES ({}, {}, {}, {}, {}, {}) RETURNING id"
)


async def record(
    staff_id: int | None, action: str, subject_type: str = "", subject_id: int | None = None, summary: str = ""
) -> int:
    """Append one entry, e.g. `record(3, "issue.release", "issue", 7, "to 2,000 subscribers")`."""
    rows = await db.fetch(INSERT_SQL, staff_id, action, subject_type, subject_id, summary[:2000], clock.now())
    return rows[0]["id"]


async def recent(limit: int = 100, before_id: int | None = None) -> list[dict]:
    """Newest first, keyset-paged by id, with the staff member's email (None for the system)."""
    return await db.fetch(
        "SELECT a.id, a.action, a.subject_type, a.subject_id, a.summary, a.created_at, s.email AS staff_email "
        "FROM audit_entry a LEFT JOIN staff_user s ON s.id = a.staff "
        "WHERE a.id < {} ORDER BY a.id DESC LIMIT {}",
        before_id if before_id is not None else MAX_ID,
        limit,
    )
