"""The registrant's own pages, reached by the links in their emails.

GET never changes anything (mail scanners follow links): cancelling is a POST from a confirmation
page the personal page's button opens (GET /r/{token}/cancel shows it), correcting one's name and
answers is a POST to the personal page itself, and joining is a POST that the join page makes itself (a form that sends itself, and a
button for browsers without scripts). Who may cancel (registrations.may_cancel) and where the
join link leads (attendance.join_phase) are the domain's rules; these handlers only show them.
The token is a capability only its owner received by email, so these forms need no session.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from .. import settings
from ..domain import attendance, events, registrations, validation
from ..domain.errors import ValidationFailed
from ..resources import resource_dir
from .edge import content_security_policy, inline_script_hashes
from .present import event_page

# How each join phase answers (the person's link is not broken: 200, except a registration that
# holds no seat or a cancelled event, whose link is gone for good).
JOIN_STATUS = {"inactive": 410}

# The answer to "email me my registration link", the same for any address (CONTRACT).
LINK_SENT = (
    "If this address has a registration for an upcoming event, we've emailed it the link to each one. "
    "It can take a minute or two to arrive; check your spam folder too."
)
NOTICES = {"saved": "Your details are saved."}


def details_form(event: dict, form: Any) -> dict:
    """The correction form's fields in the shape `registrations.update_details` takes: the name,
    and the answers as the registration form sends them (`q_<key>`; multiple choice one value
    per ticked box, no field when none is ticked)."""
    answers: dict[str, Any] = {}
    for q in event["questions"]:
        field = f"q_{q['key']}"
        if q["type"] == "multiple":
            answers[q["key"]] = [v for v in form.getall(field, []) if v]
        else:
            answers[q["key"]] = form.get(field)
    return {"name": form.get("name"), "answers": answers}


def _shown_back(value: Any) -> Any:
    """A typed value as the form may show it again (a lone surrogate becomes U+FFFD)."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_shown_back(x) for x in value if isinstance(x, str)]
    if isinstance(value, dict):
        return {k: _shown_back(x) for k, x in value.items()}
    return value


def _form_values(view: dict) -> dict:
    """The stored name and answers as the form shows them (yes/no as "yes" or "no")."""
    answers = {k: ("yes" if a is True else "no" if a is False else a) for k, a in (view["answers"] or {}).items()}
    return {"name": view["name"], "answers": answers}


def answers_shown(event: dict, answers: dict) -> list[dict]:
    """Each question with the answer given, in the event's order: {label, answer} (text)."""
    out = []
    for q in event["questions"]:
        a = (answers or {}).get(q["key"])
        if a is True:
            text = "Yes"
        elif a is False:
            text = "No"
        elif isinstance(a, list):
            text = "; ".join(str(x) for x in a)
        else:
            text = str(a) if a not in (None, "") else ""
        out.append({"label": q["label"], "answer": text})
    return out


class RegistrantPages(Controller):
    include_in_schema = False

    @get("/r/link")
    async def link_form(self) -> Template:
        """ "Email me my registration link": the form (field `email`)."""
        return Template("registrant/link.html", context={"errors": {}, "values": {}})

    @post("/r/link", status_code=200)
    async def link_submit(self, request: Request) -> Template:
        """The same answer for any well-formed address, known or not (the domain does the same
        work for both); the links follow by email. Rate-limited as a `link` door (web/limits.py)."""
        form = await request.form()
        try:
            email = validation.email(form.get("email"))
        except ValidationFailed as exc:
            return Template(
                "registrant/link.html",
                status_code=400,
                context={"errors": exc.fields, "values": {"email": _shown_back(form.get("email") or "")}},
            )
        await registrations.send_links(email)
        return Template("registrant/link_sent.html", context={"email": email, "message": LINK_SENT})

    @get("/r/{token:str}")
    async def page(self, token: FromPath[str], notice: FromQuery[str | None] = None) -> Template | Response:
        if token.endswith(".ics"):
            return await self._ics(token[:-4])
        reg = await registrations.by_token(token)
        event = await events.get(reg["event"])
        view = await registrations.view(reg["id"])
        return self._page(token, reg, event, view, notice=NOTICES.get(notice or "", ""))

    def _page(
        self,
        token: str,
        reg: dict,
        event: dict,
        view: dict,
        *,
        notice: str = "",
        errors: dict | None = None,
        values: dict | None = None,
        status: int = 200,
    ) -> Template:
        # Only the person's own invite as a file (its UID): a Google or Outlook template link, or
        # the public .ics, would put a second copy beside the invite that follows changes.
        links = {"ics": f"{settings.get().base_url}/r/{token}.ics"}
        # The same rules the POSTs apply: a button shows only when its POST would act.
        rule = registrations.may_cancel(reg, event)
        edit = registrations.may_edit(reg, event)
        return Template(
            "registrant/page.html",
            status_code=status,
            context={
                **event_page(event),
                "registration": view,
                "token": token,
                "links": links,
                "cancel": rule,
                "edit": edit,
                "answers_shown": answers_shown(event, view["answers"]),
                "notice": notice,
                "errors": errors or {},
                "values": values or _form_values(view),
            },
        )

    @post("/r/{token:str}", status_code=303)
    async def edit(self, request: Request, token: FromPath[str]) -> Template | Redirect:
        """Correct the name and answers (the token is the capability, as for cancelling): 303
        back to the page with a notice, or the page again (400) with every error next to its
        field; 409 with the reason once the registration or event no longer allows it."""
        reg = await registrations.by_token(token)
        event = await events.get(reg["event"])
        form = await request.form()
        data = details_form(event, form)
        try:
            await registrations.update_details(token, data)
        except ValidationFailed as exc:
            view = await registrations.view(reg["id"])
            return self._page(token, reg, event, view, errors=exc.fields, values=_shown_back(data), status=400)
        return Redirect(f"/r/{token}?notice=saved", status_code=303)

    @get("/r/{token:str}/cancel")
    async def cancel_page(self, token: FromPath[str]) -> Template:
        """The confirmation step before cancelling: says what cancelling does, with a button that
        POSTs. Changes nothing (a mail scanner may open it)."""
        reg = await registrations.by_token(token)
        event = await events.get(reg["event"])
        view = await registrations.view(reg["id"])
        rule = registrations.may_cancel(reg, event)
        return Template(
            "registrant/cancel.html",
            context={**event_page(event), "registration": view, "token": token, "cancel": rule},
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
