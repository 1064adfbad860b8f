"""The staff API for the mailing list: topics with counts, subscribers (filtered, searched, paged
by id) and a streamed CSV export. Staff only (bearer token).

A subscriber's status here is what mailing sees: `confirmed` (receiving), `paused` (confirmed,
with `paused_until` in the future), `pending` or `unsubscribed`. Erased subscribers are never
listed or counted: all that is left of them is a hash. No token, salt or link ever appears.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from litestar import Controller, get
from litestar.params import FromQuery
from litestar.response import Stream

from .. import clock, db
from ..domain import validation as v
from ..domain.errors import ValidationFailed
from ..domain.subscriptions import topic_ids
from ..domain.validation import MAX_ID
from ..timefmt import iso
from .api import CSV, _cell
from .auth import require_staff

STATUSES = ("confirmed", "paused", "pending", "unsubscribed")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_QUERY = 200
CSV_PAGE = 1000

# Paused is a confirmed subscriber whose pause has not run out yet; the first {} is "now".
_STATE = (
    "CASE WHEN s.status = 'confirmed' AND s.paused_until IS NOT NULL AND s.paused_until > {} "
    "THEN 'paused' ELSE s.status END"
)


class _Filter:
    """Checked query parameters, as SQL conditions with their arguments in order."""

    def __init__(self, topic: str | None, status: str | None, q: str | None) -> None:
        self.topic, self.status, self.q = topic, status, q

    @classmethod
    async def parse(cls, topic: str | None, status: str | None, q: str | None) -> _Filter:
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
        conditions, args = ["s.status <> 'erased'"], []
        if self.topic is not None:
            conditions.append("EXISTS (SELECT 1 FROM subscription x WHERE x.subscriber = s.id AND x.topic = {})")
            args.append(self.topic)
        if self.status == "confirmed":
            conditions.append("s.status = 'confirmed' AND (s.paused_until IS NULL OR s.paused_until <= {})")
            args.append(moment)
        elif self.status == "paused":
            conditions.append("s.status = 'confirmed' AND s.paused_until IS NOT NULL AND s.paused_until > {}")
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


async def _page(flt: _Filter, after: int, limit: int) -> list[dict]:
    """Up to `limit` subscribers with id > after, by id, each with its topic slugs."""
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


def _subscriber_json(row: dict) -> dict[str, Any]:
    return {
        "id": row["id"],
        "email": row["email"],
        "name": row["name"],
        "status": row["status"],
        "topics": row["topics"],
        "source": row["source"],
        "created_at": iso(row["created_at"]),
        "confirmed_at": iso(row["confirmed_at"]),
        "paused_until": iso(row["paused_until"]) if row["status"] == "paused" else None,
        "unsubscribed_at": iso(row["unsubscribed_at"]),
    }


async def topic_counts() -> list[dict]:
    """Every topic with its subscribers counted by status (erased ones have no subscriptions)."""
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


class StaffSubscribersApi(Controller):
    path = "/api/v1"
    tags = ["subscribers"]
    guards = [require_staff]

    @get("/topics", summary="Topics with subscriber counts by status (staff)")
    async def topics(self) -> dict:
        return {"topics": await topic_counts()}

    @get("/subscribers.csv", media_type=CSV, summary="Subscribers as CSV, streamed (staff)")
    async def subscribers_csv(
        self,
        topic: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        q: FromQuery[str | None] = None,
    ) -> Stream:
        flt = await _Filter.parse(topic, status, q)
        name = f"subscribers-{topic.strip()}.csv" if flt.topic is not None and topic else "subscribers.csv"
        return Stream(
            _csv_rows(flt),
            media_type=CSV,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )


@get(
    "/api/v1/subscribers",
    guards=[require_staff],
    tags=["subscribers"],
    summary="Subscribers, filtered and searched, paged by id (staff)",
)
async def list_subscribers(
    topic: FromQuery[str | None] = None,
    status: FromQuery[str | None] = None,
    q: FromQuery[str | None] = None,
    after: FromQuery[str | None] = None,
    limit: FromQuery[str | None] = None,
) -> dict:
    """`q` matches part of the email or name, case-insensitively. Pass the answer's
    `next_after` as `after` for the next page; it is null on the last page."""
    errors: dict[str, str] = {}
    start = size = None
    try:
        start = v.optional_int(after, "after", minimum=0, maximum=MAX_ID)
    except ValidationFailed as exc:
        errors.update(exc.fields)
    try:
        size = v.optional_int(limit, "limit", minimum=1, maximum=MAX_LIMIT)
    except ValidationFailed as exc:
        errors.update(exc.fields)
    try:
        flt = await _Filter.parse(topic, status, q)
    except ValidationFailed as exc:
        errors.update(exc.fields)
    if errors:
        raise ValidationFailed(errors)
    size = size or DEFAULT_LIMIT
    rows = await _page(flt, start or 0, size + 1)
    more = len(rows) > size
    rows = rows[:size]
    return {
        "subscribers": [_subscriber_json(r) for r in rows],
        "next_after": rows[-1]["id"] if more else None,
    }


async def _csv_rows(flt: _Filter) -> AsyncIterator[str]:
    """The export a page at a time, so that no list is held whole in memory."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["email", "name", "status", "topics", "created_at", "confirmed_at"])
    after = 0
    while True:
        rows = await _page(flt, after, CSV_PAGE)
        for r in rows:
            writer.writerow(
                [
                    _cell(r["email"] or ""),
                    _cell(r["name"] or ""),
                    r["status"],
                    "; ".join(r["topics"]),
                    iso(r["created_at"]),
                    iso(r["confirmed_at"]) or "",
                ]
            )
        yield out.getvalue()
        out.seek(0)
        out.truncate()
        if len(rows) < CSV_PAGE:
            return
        after = rows[-1]["id"]


# GET /api/v1/subscribers is a plain handler, not in the controller: the public POST on that path
# lives in web/subscriber.py's controller, and Litestar (2.25) refuses two controllers sharing a
# path (each brings its own OPTIONS handler). A plain handler joins the route the controller made,
# so it must be registered after SubscriberApi; in the other order the app fails at start-up.
STAFF_SUBSCRIBER_HANDLERS = [StaffSubscribersApi, list_subscribers]
