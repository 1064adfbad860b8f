"""Bulk mail outside the issues API (staff, bearer token): announcing an event to the `events`
topic (and `careers` for events tagged career), and a mailing's delivery counts."""

from __future__ import annotations

from litestar import Request, get, post
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED

from ..domain import mailings
from . import responses as out
from .auth import require_staff
from .issues_api import plain, staff_id
from .responses import STAFF, answer
from .schemas import AnnounceIn, checked


@post(
    "/api/v1/events/{event_id:int}/announce",
    guards=[require_staff],
    security=STAFF,
    responses=answer(out.Announced, 202),
    status_code=HTTP_202_ACCEPTED,
    tags=["events"],
    summary="Email the event to the events topic (and careers for events tagged career)",
)
async def announce(request: Request, event_id: FromPath[int], data: JSONBody[AnnounceIn | None] = None) -> dict:
    again = (await checked(request, AnnounceIn, data)).again
    mailing = await mailings.announce(event_id, actor=staff_id(request), again=again)
    return {"mailing": mailing["id"], "recipients": mailing["recipients"], "status": mailing["status"]}


@get(
    "/api/v1/mailings/{mailing_id:int}",
    guards=[require_staff],
    security=STAFF,
    responses=answer(out.Delivery),
    tags=["bulletin"],
    summary="A mailing's delivery counts",
)
async def mailing_delivery(mailing_id: FromPath[int]) -> dict:
    return plain(await mailings.delivery(mailing_id))
