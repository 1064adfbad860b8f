"""The registrant's own pages, reached by the links in their emails.

GET never changes anything (mail scanners follow links): cancelling is a POST from the personal
page, and joining is a POST that the join page makes itself (a form that sends itself, and a
button for browsers without scripts). Who may cancel (registrations.may_cancel) and where the
join link leads (attendance.join_phase) are the domain's rules; these handlers only show them.
The token is a capability only its owner received by email, so these forms need no session.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from litestar import Controller, Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from .. import settings
from ..domain import attendance, events, registrations
from ..resources import resource_dir
from .edge import content_security_policy, inline_script_hashes
from .present import event_page

# How each join phase answers (the person's link is not broken: 200, except a registration that
# holds no seat or a cancelled event, whose link is gone for good).
JOIN_STATUS = {"inactive": 410}


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
        rule = registrations.may_cancel(reg, event)
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
        method: Literal["REQUEST", "CANCEL"] = (
            "REQUEST" if reg["status"] == "registered" and event["status"] == "published" else "CANCEL"
        )
        organizer = events.organizer(cfg)
        body = invite(
            event,
            reg,
            method=method,
            organizer_name=organizer.name,
            organizer_email=organizer.email,
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
        """Cancel as registrations.may_cancel allows; 409 with the reason otherwise."""
        await registrations.cancel(token)
        return Redirect(f"/r/{token}?cancelled=1", status_code=303)

    @get("/j/{token:str}")
    async def join_page(self, token: FromPath[str]) -> Template:
        """Before the doors open: the time and a countdown. While open: a page that joins by
        POST at once (and a button). After the end: a page that says so. Changes nothing."""
        reg, event, phase = await attendance.opening(token)
        return _join_template(token, reg, event, phase)

    @post("/j/{token:str}", status_code=303)
    async def join(self, token: FromPath[str]) -> Template | Redirect:
        """While the doors are open: attendance recorded (once) and off to the meeting (303).
        Otherwise the same page as the GET, and nothing recorded."""
        reg, event, phase = await attendance.join(token)
        if phase == "open":
            return Redirect(event["join_url"], status_code=303)
        return _join_template(token, reg, event, phase)


_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?$")


def _join_template(token: str, reg: dict, event: dict, phase: str) -> Template:
    context = {**event_page(event), "registration": reg, "phase": phase, "token": token}
    headers = None
    if phase == "early":
        context["opens_iso"] = attendance.doors_open_at(event).isoformat()
    elif phase == "open":
        headers = {"Content-Security-Policy": _join_policy(event["join_url"])}
    return Template("registrant/join.html", context=context, status_code=JOIN_STATUS.get(phase, 200), headers=headers)


def _join_policy(join_url: str) -> str:
    """The site's policy, with the meeting's origin allowed as a form's destination: browsers
    apply `form-action` to where the POST's 303 leads too, and would stop the person at our door."""
    policy = content_security_policy(inline_script_hashes(resource_dir("templates")))
    parts = urlsplit(join_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    if _ORIGIN.match(origin):
        policy = policy.replace("form-action 'self'", f"form-action 'self' {origin}")
    return policy
