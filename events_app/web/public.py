"""Public pages: the event list, an event's page with its registration form, calendar files."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from .. import settings
from ..domain import events, registrations
from ..domain.errors import Conflict, NotFound, ValidationFailed
from .present import event_page

ICS_TYPE = "text/calendar; charset=utf-8"


def _ics_response(body: bytes, filename: str) -> Response:
    return Response(
        body,
        media_type=ICS_TYPE,
        headers={"Content-Disposition": f'inline; filename="{filename}"', "Cache-Control": "max-age=300"},
    )


def form_to_data(event: dict, form: Any) -> dict:
    """Turn the registration form's fields into the API's shape. Questions are `q_<key>`;
    multiple choice sends one value per ticked box."""
    answers: dict[str, Any] = {}
    for q in event["questions"]:
        name = f"q_{q['key']}"
        if q["type"] == "multiple":
            values = form.getall(name) if hasattr(form, "getall") else form.get(name) or []
            answers[q["key"]] = [v for v in values if v]
        else:
            answers[q["key"]] = form.get(name)
    return {
        "name": form.get("name"),
        "email": form.get("email"),
        "subscribe": form.get("subscribe") == "yes",
        "answers": answers,
    }


class PublicPages(Controller):
    include_in_schema = False

    @get("/")
    async def home(self) -> Redirect:
        return Redirect("/events")

    @get("/events")
    async def index(self) -> Template:
        found = await events.listing()
        pages = [event_page(e) for e in found]
        return Template(
            "events/list.html",
            context={
                "upcoming": [p for p in pages if p["state"] not in ("past",)],
                "past": [p for p in pages if p["state"] == "past"],
                "webcal": settings.get().base_url.replace("https://", "webcal://").replace("http://", "webcal://")
                + "/calendar.ics",
            },
        )

    @get("/events/{slug:str}")
    async def show(self, slug: FromPath[str]) -> Response | Template:
        # Litestar matches whole segments, so /events/x.ics arrives here as slug "x.ics".
        if slug.endswith(".ics"):
            from .. import ics

            event = await events.get_by_slug(slug[:-4])
            if event["status"] == "draft":
                raise NotFound("No such event")
            cfg = settings.get()
            return _ics_response(ics.event_feed([event], host=cfg.host, base_url=cfg.base_url), f"{event['slug']}.ics")
        event = await events.get_by_slug(slug)
        if event["status"] == "draft":
            raise NotFound("No such event")
        return self._page(event)

    def _page(self, event: dict, *, errors: dict | None = None, values: dict | None = None, status: int = 200,
              notice: str | None = None) -> Template:
        from ..ics import calendar_links

        context = event_page(event)
        context.update(
            errors=errors or {},
            values=values or {"answers": {}},
            notice=notice,
            links=calendar_links(event, base_url=settings.get().base_url),
        )
        return Template("events/detail.html", context=context, status_code=status)

    @post("/events/{slug:str}/register")
    async def register(self, request: Request, slug: FromPath[str]) -> Template:
        event = await events.get_by_slug(slug)
        if event["status"] == "draft":
            raise NotFound("No such event")
        form = await request.form()
        data = form_to_data(event, form)
        try:
            reg = await registrations.register(event, data)
        except ValidationFailed as exc:
            return self._page(event, errors=exc.fields, values=data, status=400)
        except Conflict as exc:
            return self._page(event, values=data, status=409, notice=exc.message)
        return Template(
            "events/registered.html",
            context={**event_page(await events.get(event["id"])), "registration": reg},
            status_code=200,
        )

    @get("/calendar.ics")
    async def calendar(self, tag: FromQuery[str | None] = None) -> Response:
        from .. import ics

        found = [e for e in await events.listing() if e["status"] == "published"]
        now = datetime.now(timezone.utc)
        found = [e for e in found if e["ends_at"] >= now and (tag is None or tag.lower() in e["tags"])]
        cfg = settings.get()
        return _ics_response(ics.event_feed(found, host=cfg.host, base_url=cfg.base_url), "calendar.ics")

    @get("/health", include_in_schema=True, tags=["operations"])
    async def health(self) -> dict:
        from .. import db

        await db.fetch("SELECT 1 AS ok")
        return {"status": "ok"}

