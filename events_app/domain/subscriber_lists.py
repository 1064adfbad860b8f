"""The mailing list as staff read it: topics with counts, subscribers filtered, searched and
paged by id. Read-only; the staff API (web/staff_subscribers.py), the workspace's subscriber
page and the CSV export (domain/exports.py) all read through here.

A subscriber's status here is what mailing sees: `confirmed` (receiving), `paused` (confirmed,
with `paused_until` in the future), `pending` or `unsubscribed`. Erased subscribers are never
listed or counted: all that is left of them is a hash. No token, salt or link is ever read.
The filter and the search are SQL built from fixed fragments (a LIKE with ESCAPE and a
correlated EXISTS read better as text than through the query builder); every value is an
argument.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .. import clock, db
from . import validation as v
from .audience import not_paused_sql, paused_sql
from .errors import ValidationFailed
from .subscriptions import topic_ids

STATUSES = ("confirmed", "paused", "pending", "unsubscribed")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_QUERY = 200

# Paused is a confirmed subscriber whose pause has not run out yet (domain/audience.py); the
# first {} is "now".
_STATE = f"CASE WHEN s.status = 'confirmed' AND {paused_sql()} THEN 'paused' ELSE s.status END"


class SubscriberFilter:
    """Checked filter values (a topic id, a status, a search text), as SQL conditions."""

    def __init__(self, topic: int | None, status: str | None, q: str | None) -> None:
        self.topic, self.status, self.q = topic, status, q

    @classmethod
    async def parse(cls, topic: str | None, status: str | None, q: str | None) -> SubscriberFilter:
        """The filter from query-string values (None or blank: not filtered), or ValidationFailed
        naming every bad one (`topic`, `status`, `q`)."""
        errors: dict[str, str] = {}
        topic_id = None
        if topic is not None and topic.strip():
            try:
                topic_id = (await topic_ids([topic.strip()], "topic"))[topic.strip()]
            except ValidationFailed as exc:
                errors.update(exc.fields)
        if status is not None and status.strip():
            status = status.strip().lower()
            if status not in STATUSES:
                errors["status"] = f"must be one of {', '.join(STATUSES)}"
        else:
            status = None
        if q is not None:
            q = q.strip()
            if len(q) > MAX_QUERY:
                errors["q"] = f"must be at most {MAX_QUERY} characters"
            q = q or None
        if errors:
            raise ValidationFailed(errors)
        return cls(topic_id, status, q)

    def where(self, moment: datetime) -> tuple[str, list[Any]]:
        conditions: list[str] = ["s.status <> 'erased'"]
        args: list[Any] = []
        if self.topic is not None:
            conditions.append("EXISTS (SELECT 1 FROM subscription x WHERE x.subscriber = s.id AND x.topic = {})")
            args.append(self.topic)
        if self.status == "confirmed":
            conditions.append(f"s.status = 'confirmed' AND {not_paused_sql()}")
            args.append(moment)
        elif self.status == "paused":
            conditions.append(f"s.status = 'confirmed' AND {paused_sql()}")
            args.append(moment)
        elif self.status is not None:
            conditions.append("s.status = {}")
            args.append(self.status)
        if self.q is not None:
            escaped = self.q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = f"%{escaped}%"
            conditions.append("(LOWER(s.email) LIKE {} ESCAPE '\\' OR LOWER(s.name) LIKE {} ESCAPE '\\')")
            args += [pattern, pattern]
        return " AND ".join(conditions), args


async def page(flt: SubscriberFilter, after: int, limit: int) -> list[dict]:
    """Up to `limit` subscribers with id > after, by id, each with its topic slugs (`topics`)."""
    moment = clock.now()
    where, args = flt.where(moment)
    rows = await db.fetch(
        f"SELECT s.id, s.email, s.name, {_STATE} AS status, s.source, s.created_at, s.confirmed_at, "
        f"s.paused_until, s.unsubscribed_at FROM subscriber s WHERE {where} AND s.id > {{}} "
        "ORDER BY s.id LIMIT {}",
        moment,
        *args,
        after,
        limit,
    )
    if rows:
        ids_sql, ids = db.sql_in("x.subscriber", [r["id"] for r in rows])
        pairs = await db.fetch(
            f"SELECT x.subscriber, t.slug FROM subscription x JOIN topic t ON t.id = x.topic WHERE {ids_sql} "
            "ORDER BY t.id",
            *ids,
        )
        topics: dict[int, list[str]] = {}
        for p in pairs:
            topics.setdefault(p["subscriber"], []).append(p["slug"])
        for r in rows:
            r["topics"] = topics.get(r["id"], [])
    return rows


async def listing(
    topic: str | None, status: str | None, q: str | None, after: str | None, limit: str | None
) -> tuple[list[dict], int | None]:
    """One page of subscribers for the query-string values, and the `after` of the next page
    (None on the last). ValidationFailed names every bad value at once."""
    errors: dict[str, str] = {}
    start = size = None
    flt = None
    try:
        start = v.optional_int(after, "after", minimum=0, maximum=v.MAX_ID)
    except ValidationFailed as exc:
        errors.update(exc.fields)
    try:
        size = v.optional_int(limit, "limit", minimum=1, maximum=MAX_LIMIT)
    except ValidationFailed as exc:
        errors.update(exc.fields)
    try:
        flt = await SubscriberFilter.parse(topic, status, q)
    except ValidationFailed as exc:
        errors.update(exc.fields)
    if errors or flt is None:
        raise ValidationFailed(errors)
    size = size or DEFAULT_LIMIT
    rows = await page(flt, start or 0, size + 1)
    more = len(rows) > size
    rows = rows[:size]
    return rows, (rows[-1]["id"] if more else None)


async def topic_counts() -> list[dict]:
    """Every topic (`id`, `slug`, `name`, `description`) with its subscribers counted by status
    in `counts` (erased ones have no subscriptions)."""
    moment = clock.now()
    topics = await db.fetch("SELECT id, slug, name, description FROM topic ORDER BY id")
    rows = await db.fetch(
        f"SELECT x.topic, {_STATE} AS status, COUNT(*) AS n FROM subscription x "
        "JOIN subscriber s ON s.id = x.subscriber WHERE s.status <> 'erased' GROUP BY 1, 2",
        moment,
    )
    counts: dict[int, dict[str, int]] = {t["id"]: dict.fromkeys(STATUSES, 0) for t in topics}
    for r in rows:
        if r["topic"] in counts and r["status"] in STATUSES:
            counts[r["topic"]][r["status"]] = int(r["n"])
    return [{**t, "counts": counts[t["id"]]} for t in topics]
