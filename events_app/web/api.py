"""The JSON API under /api/v1: events (staff write, anyone reads published) and registrations."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from ..domain import audit, events, exports, registrant_admin, registrations
from ..domain.errors import NotFound, ValidationFailed
from .auth import optional_staff, require_staff
from .present import event_json, registration_json


async def _event_for(request: Request, event_id: int) -> tuple[dict, dict | None]:
    """The event, hiding drafts from anyone but staff."""
    member = await optional_staff(request)
    event = await events.get(event_id)
    if event["status"] == "draft" and member is None:
        raise NotFound("No such event")
    return event, member


def _object(data: Any) -> dict:
    if not isinstance(data, dict):
        raise ValidationFailed({"body": "must be a JSON object"})
    return data


# Litestar adds "; charset=utf-8" to text/* types itself (naming it here too doubled it).
CSV = "text/csv"


class EventsApi(Controller):
    path = "/api/v1/events"
    tags = ["events"]

    @post("/", guards=[require_staff], status_code=HTTP_201_CREATED, summary="Create an event (staff)")
    async def create(self, request: Request, data: JSONBody[Any]) -> dict:
        event = await events.create(_object(data))
        await audit.record(
            request.state.staff["id"],
            "event.create",
            "event",
            event["id"],
            f"{event['title']} ({event['status']}, API)",
        )
        return event_json(event, staff=True)

    @get("/", summary="Published events, upcoming first; staff also see drafts")
    async def index(self, request: Request) -> list[dict]:
        member = await optional_staff(request)
        found = await events.listing(include_drafts=member is not None)
        return [event_json(e, staff=member is not None) for e in found]

    @get("/{event_id:int}", summary="One event")
    async def show(self, request: Request, event_id: FromPath[int]) -> dict:
        event, member = await _event_for(request, event_id)
        counts = await registrant_admin.status_counts(event["id"]) if member else None
        return event_json(event, staff=member is not None, counts=counts)

    @patch("/{event_id:int}", guards=[require_staff], summary="Change any field (staff)")
    async def change(self, request: Request, event_id: FromPath[int], data: JSONBody[Any]) -> dict:
        event, notified = await events.update(event_id, _object(data))
        await audit.record(
            request.state.staff["id"],
            "event.update",
            "event",
            event_id,
            f"{event['title']}: changed {', '.join(sorted(_object(data)))}; emailed {notified} (API)",
        )
        return {**event_json(event, staff=True), "notified": notified}

    @post(
        "/{event_id:int}/change-preview",
        guards=[require_staff],
        status_code=HTTP_200_OK,
        summary="How many people a change would email, without saving it (staff)",
    )
    async def change_preview(self, event_id: FromPath[int], data: JSONBody[Any]) -> dict:
        return {"would_email": await events.count_affected(event_id, _object(data))}

    @post("/{event_id:int}/publish", guards=[require_staff], status_code=HTTP_200_OK, summary="Publish (staff)")
    async def publish(self, request: Request, event_id: FromPath[int]) -> dict:
        event = await events.publish(event_id)
        await audit.record(request.state.staff["id"], "event.publish", "event", event_id, f"{event['title']} (API)")
        return event_json(event, staff=True)

    @post(
        "/{event_id:int}/cancel",
        guards=[require_staff],
        status_code=HTTP_200_OK,
        summary="Cancel; every registrant is told, with a calendar CANCEL (staff)",
    )
    async def cancel(self, request: Request, event_id: FromPath[int]) -> dict:
        event, notified = await events.cancel(event_id)
        await audit.record(
            request.state.staff["id"], "event.cancel", "event", event_id, f"{event['title']}; told {notified} (API)"
        )
        return {**event_json(event, staff=True), "notified": notified}

    @post(
        "/{event_id:int}/registrations",
        status_code=HTTP_201_CREATED,
        summary="Register: a seat, or a waitlist place when full",
    )
    async def register(self, request: Request, event_id: FromPath[int], data: JSONBody[Any]) -> dict:
        event = await events.current(event_id)
        if event["status"] == "draft" and await optional_staff(request) is None:
            raise NotFound("No such event")
        # Built from what the caller sent: a repeat answers like a new address (see register_public).
        return registration_json(await registrations.register_public(event, _object(data)))

    @get("/{event_id:int}/registrations", guards=[require_staff], summary="Registrants (staff)")
    async def registrants(self, event_id: FromPath[int]) -> list[dict]:
        await events.get(event_id)
        return [registration_json(r) for r in await registrations.for_event(event_id)]

    @get(
        "/{event_id:int}/registrations.csv",
        guards=[require_staff],
        media_type=CSV,
        summary="Registrants as CSV (staff)",
    )
    async def registrants_csv(self, event_id: FromPath[int]) -> Response:
        return await registrants_csv_response(event_id)


async def registrants_csv_response(event_id: int) -> Response:
    """The registrants CSV as a download (the API and the workspace's button)."""
    name, text = await exports.registrants_csv(event_id)
    return Response(text, media_type=CSV, headers={"Content-Disposition": f'attachment; filename="{name}"'})
