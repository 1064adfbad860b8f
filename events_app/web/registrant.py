"""The registrant's own pages, reached by the links in their emails.

GET never changes anything (mail scanners follow links): cancelling is a POST from the page.
The token is a capability only its owner received by email, so these forms need no session.
"""

from __future__ import annotations

from datetime import timedelta

from litestar import Controller, Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from .. import clock, db, settings
from ..domain import events, registrations
from .present import event_page


class RegistrantPages(Controller):
    include_in_schema = False

    @get("/r/{token:str}")
    async def page(self, token: FromPath[str]) -> Template | Response:
        if token.endswith(".ics"):
            return await self._ics(token[:-4])
        reg = await registrations.by_token(token)
        event = await events.get(reg["event"])
        view = await registrations.view(reg["id"])
        # Only the person's own invite as a file (its UID): a Google or Outlook template link, or
        # the public .ics, would put a second copy beside the invite that follows changes.
        links = {"ics": f"{settings.get().base_url}/r/{token}.ics"}
        # The same rule the POST applies: the button shows only when the POST would cancel.
        rule = registrations.cancel_rule(event, reg)
        return Template(
            "registrant/page.html",
            context={**event_page(event), "registration": view, "token": token, "links": links, "cancel": rule},
        )

    async def _ics(self, token: FromPath[str]) -> Response:
        from ..ics import invite

        reg = await registrations.by_token(token)
        event = await events.get(reg["event"])
        cfg = settings.get()
        # The invite itself (same UID and SEQUENCE as the one emailed, REQUEST or CANCEL), not a
        # PUBLISH copy: opened in a calendar it updates the entry the invite made, never adds one.
        await registrations.calendar_uid("registration", reg)
        method = "REQUEST" if reg["status"] == "registered" and event["status"] == "published" else "CANCEL"
        body = invite(
            event,
            reg,
            method=method,
            organizer_name=cfg.mail_from.split("<")[0].strip() or "Events",
            organizer_email=cfg.mail_from_address,
            manage_url=f"{cfg.base_url}/r/{token}",
            join_url_personal=f"{cfg.base_url}/j/{registrations.join_token(reg)}",
            event_url=f"{cfg.base_url}/events/{event['slug']}",
        )
        # Litestar adds "; charset=utf-8" to a text/* media type by itself: naming it here too
        # sent the parameter twice.
        return Response(
            body,
            media_type="text/calendar",
            headers={"Content-Disposition": f'attachment; filename="{event["slug"]}.ics"'},
        )

    @post("/r/{token:str}/cancel", status_code=303)
    async def cancel(self, token: FromPath[str]) -> Redirect:
        """Cancel as registrations.cancel_rule allows; 409 with the reason otherwise."""
        await registrations.cancel(token)
        return Redirect(f"/r/{token}?cancelled=1", status_code=303)

    @get("/j/{token:str}")
    async def join(self, token: FromPath[str]) -> Template | Redirect:
        """Before the doors open: a page with the time and a countdown. While open: off to the
        meeting, attendance recorded at the first click. After the end: a page that says so."""
        reg = await registrations.by_join_token(token)
        event = await events.get(reg["event"])
        now = clock.now()
        context = {**event_page(event), "registration": reg}
        if reg["status"] != "registered" or event["status"] == "cancelled":
            return Template("registrant/join.html", context={**context, "phase": "inactive"}, status_code=410)
        doors = event["starts_at"] - timedelta(minutes=event["doors_open_minutes"])
        if now < doors:
            return Template(
                "registrant/join.html", context={**context, "phase": "early", "opens_iso": doors.isoformat()}
            )
        if now > event["ends_at"]:
            return Template("registrant/join.html", context={**context, "phase": "over"})
        if not event["join_url"]:
            return Template("registrant/join.html", context={**context, "phase": "no-link"})
        if reg["attended_at"] is None:
            await db.fetch(
                "UPDATE registration SET attended_at = {} WHERE id = {} AND attended_at IS NULL", now, reg["id"]
            )
        return Redirect(event["join_url"], status_code=302)
