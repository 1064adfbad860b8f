"""The JSON API under /api/v1: events (staff write, anyone reads published) and registrations.

Bodies are typed (web/schemas.py) and so are answers (web/responses.py): /schema/openapi.json
documents both. The domain gets the fields sent as a plain dict and checks what they mean."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.params import FromPath
from litestar.serialization import encode_json
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from litestar.types import ASGIApp, Receive, Scope, Send

from ..domain import events, exports, registrant_admin, registrations
from ..domain.errors import NotFound
from . import responses as out
from .auth import optional_staff, require_staff
from .present import event_json, registration_json
from .responses import ERRORS, STAFF, answer
from .schemas import (
    CHANGE_EXAMPLE,
    EVENT_EXAMPLE,
    REGISTRATION_EXAMPLE,
    EventChange,
    EventIn,
    RegistrationIn,
    checked,
    example,
    fields,
)


async def _event_for(request: Request, event_id: int) -> tuple[dict, dict | None]:
    """The event, hiding drafts from anyone but staff."""
    member = await optional_staff(request)
    event = await events.get(event_id)
    if event["status"] == "draft" and member is None:
        raise NotFound("No such event")
    return event, member


class JsonAnswer:
    """A JSON answer as a bare ASGI app, the bytes and headers Litestar's Response gives for the
    same value (tests/web/test_api.py compares them) without building and checking a Response
    and its header set per request: on the registration route that was about a tenth of the
    server's time per request (bench/profile_registration.py). The answer stays documented by
    the route's `responses`."""

    __slots__ = ("status", "body")

    def __init__(self, value: Any, status: int = HTTP_200_OK) -> None:
        self.status, self.body = status, encode_json(value)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Fresh message dicts: a middleware may add to a message's headers (web/edge.py).
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(self.body))]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


# Litestar adds "; charset=utf-8" to text/* types itself (naming it here too doubled it).
CSV = "text/csv"


class EventsApi(Controller):
    path = "/api/v1/events"
    tags = ["events"]

    @post(
        "/",
        guards=[require_staff],
        security=STAFF,
        status_code=HTTP_201_CREATED,
        responses=answer(out.Event, 201),
        summary="Create an event (staff)",
    )
    async def create(self, request: Request, data: Annotated[EventIn, example(EVENT_EXAMPLE)]) -> dict:
        event = await events.create(fields(await checked(request, EventIn, data)), actor=request.state.staff["id"])
        return event_json(event, staff=True)

    @get("/", responses=answer(list[out.Event]), summary="Published events, upcoming first; staff also see drafts")
    async def index(self, request: Request) -> list[dict]:
        member = await optional_staff(request)
        found = await events.listing(include_drafts=member is not None)
        return [event_json(e, staff=member is not None) for e in found]

    @get("/{event_id:int}", responses=answer(out.Event), summary="One event")
    async def show(self, request: Request, event_id: FromPath[int]) -> dict:
        event, member = await _event_for(request, event_id)
        counts = await registrant_admin.status_counts(event["id"]) if member else None
        return event_json(event, staff=member is not None, counts=counts)

    @patch(
        "/{event_id:int}",
        guards=[require_staff],
        security=STAFF,
        responses=answer(out.EventChanged),
        summary="Change any field (staff)",
    )
    async def change(
        self, request: Request, event_id: FromPath[int], data: Annotated[EventChange, example(CHANGE_EXAMPLE)]
    ) -> dict:
        event, notified = await events.update(
            event_id, fields(await checked(request, EventChange, data)), actor=request.state.staff["id"]
        )
        return {**event_json(event, staff=True), "notified": notified}

    @post(
        "/{event_id:int}/change-preview",
        guards=[require_staff],
        security=STAFF,
        status_code=HTTP_200_OK,
        responses=answer(out.WouldEmail),
        summary="How many people a change would email, without saving it (staff)",
    )
    async def change_preview(
        self, request: Request, event_id: FromPath[int], data: Annotated[EventChange, example(CHANGE_EXAMPLE)]
    ) -> dict:
        return {"would_email": await events.count_affected(event_id, fields(await checked(request, EventChange, data)))}

    @post(
        "/{event_id:int}/publish",
        guards=[require_staff],
        security=STAFF,
        status_code=HTTP_200_OK,
        responses=answer(out.Event),
        summary="Publish (staff)",
    )
    async def publish(self, request: Request, event_id: FromPath[int]) -> dict:
        event = await events.publish(event_id, actor=request.state.staff["id"])
        return event_json(event, staff=True)

    @post(
        "/{event_id:int}/cancel",
        guards=[require_staff],
        security=STAFF,
        status_code=HTTP_200_OK,
        responses=answer(out.EventChanged),
        summary="Cancel; every registrant is told, with a calendar CANCEL (staff)",
    )
    async def cancel(self, request: Request, event_id: FromPath[int]) -> dict:
        event, notified = await events.cancel(event_id, actor=request.state.staff["id"])
        return {**event_json(event, staff=True), "notified": notified}

    @post(
        "/{event_id:int}/registrations",
        status_code=HTTP_201_CREATED,
        responses=answer(out.Registration, 201),
        summary="Register: a seat, or a waitlist place when full",
    )
    async def register(
        self, request: Request, event_id: FromPath[int], data: Annotated[RegistrationIn, example(REGISTRATION_EXAMPLE)]
    ) -> ASGIApp:
        event = await events.current(event_id)
        if event["status"] == "draft" and await optional_staff(request) is None:
            raise NotFound("No such event")
        # Built from what the caller sent: a repeat answers like a new address (see register_public).
        registration = await registrations.register_public(event, fields(await checked(request, RegistrationIn, data)))
        return JsonAnswer(registration_json(registration), HTTP_201_CREATED)

    @get(
        "/{event_id:int}/registrations",
        guards=[require_staff],
        security=STAFF,
        responses=answer(list[out.Registrant]),
        summary="Registrants (staff)",
    )
    async def registrants(self, event_id: FromPath[int]) -> list[dict]:
        await events.get(event_id)
        return [registration_json(r) for r in await registrations.for_event(event_id)]

    @get(
        "/{event_id:int}/registrations.csv",
        guards=[require_staff],
        security=STAFF,
        media_type=CSV,
        responses=ERRORS,
        summary="Registrants as CSV (staff)",
    )
    async def registrants_csv(self, event_id: FromPath[int]) -> Response[str]:
        return await registrants_csv_response(event_id)


async def registrants_csv_response(event_id: int) -> Response:
    """The registrants CSV as a download (the API and the workspace's button)."""
    name, text = await exports.registrants_csv(event_id)
    return Response(text, media_type=CSV, headers={"Content-Disposition": f'attachment; filename="{name}"'})
