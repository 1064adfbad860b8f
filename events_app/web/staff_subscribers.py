"""The staff API for the mailing list: topics with counts, subscribers (filtered, searched, paged
by id) and a streamed CSV export. Staff only (bearer token). What is read, and what "paused"
means, is domain/subscriber_lists.py's; this module shapes it as JSON and CSV.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromQuery
from litestar.response import Stream

from ..domain import exports, subscriber_lists
from ..domain.subscriber_lists import STATUSES, SubscriberFilter, page, topic_counts
from ..timefmt import iso
from . import responses as out
from .api import CSV
from .auth import require_staff
from .responses import ERRORS, STAFF, answer

# The workspace's subscriber page (web/staff/subscriber_pages.py) reads these through here.
__all__ = ["STATUSES", "STAFF_SUBSCRIBER_HANDLERS", "SubscriberFilter", "csv_response", "page", "topic_counts"]


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


async def csv_response(topic: str | None, status: str | None, q: str | None) -> Stream:
    """The mailing list as a streamed CSV download (the API and the workspace's button)."""
    name, chunks = await exports.subscribers_csv(topic, status, q)
    return Stream(chunks, media_type=CSV, headers={"Content-Disposition": f'attachment; filename="{name}"'})


class StaffSubscribersApi(Controller):
    path = "/api/v1"
    tags = ["subscribers"]
    guards = [require_staff]
    security = STAFF

    @get("/topics", responses=answer(out.Topics), summary="Topics with subscriber counts by status (staff)")
    async def topics(self) -> dict:
        return {"topics": await topic_counts()}

    @get(
        "/subscribers.csv",
        media_type=CSV,
        responses={
            200: ResponseSpec(str, media_type=CSV, description="The CSV file", generate_examples=False),
            **ERRORS,
        },
        summary="Subscribers as CSV, streamed (staff)",
    )
    async def subscribers_csv(
        self,
        topic: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        q: FromQuery[str | None] = None,
    ) -> Stream:
        return await csv_response(topic, status, q)


@get(
    "/api/v1/subscribers",
    guards=[require_staff],
    security=STAFF,
    tags=["subscribers"],
    responses=answer(out.Subscribers),
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
    rows, next_after = await subscriber_lists.listing(topic, status, q, after, limit)
    return {"subscribers": [_subscriber_json(r) for r in rows], "next_after": next_after}


# GET /api/v1/subscribers is a plain handler, not in the controller: the public POST on that path
# lives in web/subscribers_api.py's controller, and Litestar (2.25) refuses two controllers sharing
# a path (each brings its own OPTIONS handler). A plain handler joins the route the controller made,
# so it must be registered after SubscriberApi; in the other order the app fails at start-up.
STAFF_SUBSCRIBER_HANDLERS: list[Any] = [StaffSubscribersApi, list_subscribers]
