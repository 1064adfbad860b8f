"""Subscribing and the subscriber's own pages, reached by the links in their emails.

The subscribe and "email me my link" answers are the same whatever the address, byte for byte:
they are built from what the caller sent, never from what is stored. The work is done before
answering (nothing runs after the response, where a failure would be lost and would drop the
connection), and the domain does comparable work for every address. GET never changes anything
(mail scanners follow links): confirming, changing preferences and unsubscribing are POSTs from the
page the link opens, except the RFC 8058 one-click POST that mail clients send themselves.
The tokens are capabilities only their owner received, so these forms need no session.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from ..domain import audience, subscriptions, validation
from ..domain.errors import ValidationFailed

ACCEPTED = (
    "If this address can be subscribed, a confirmation email is on its way. Please click the link in it to confirm."
)
LINK_SENT = "If this address is subscribed, we've emailed it a link to your preferences."
# What the preference page says after each action (`?saved=`).
NOTICES = {
    "save": "Saved. You receive the topics ticked below.",
    "leave": "You left that topic.",
    "pause": "Everything is paused.",
    "resume": "Emails are back on.",
    "resubscribe": "We've emailed you a link to confirm. Until you press the button in it, you stay unsubscribed "
    "and receive nothing.",
}


def _form_topics(form: Any) -> list[Any]:
    return [t for t in form.getall("topics", []) if t]


def _shown(values: dict) -> dict:
    """Form values to show again in the form: text only (an uploaded file in a text field is
    not echoed)."""
    shown: dict[str, Any] = {k: v for k, v in values.items() if isinstance(v, str)}
    if isinstance(values.get("topics"), list):
        shown["topics"] = [t for t in values["topics"] if isinstance(t, str)]
    return shown


class SubscriberPages(Controller):
    include_in_schema = False

    @get("/bulletin/subscribe")
    async def form(
        self,
        email: FromQuery[str | None] = None,
        name: FromQuery[str | None] = None,
        topics: FromQuery[list[str] | None] = None,
    ) -> Template:
        """The subscribe form; `email`, `name` and `topics` in the query fill it in (the "wrong
        address? correct it" link of the check-your-inbox page)."""
        values: dict[str, Any] = {"topics": [t for t in topics or [] if isinstance(t, str)] or ["bulletin"]}
        if email is not None:
            values["email"] = email[:320]
        if name is not None:
            values["name"] = name[:200]
        return await self._form(values=values)

    async def _form(self, *, errors: dict | None = None, values: dict | None = None, status: int = 200) -> Template:
        return Template(
            "subscriber/subscribe.html",
            context={
                "topics": await subscriptions.all_topics(),
                "errors": errors or {},
                "values": values or {"topics": ["bulletin"]},
                "recent": await subscriptions.recent_issues(),
                "cadence": await subscriptions.cadence(),
            },
            status_code=status,
        )

    @post("/bulletin/subscribe")
    async def submit(self, request: Request) -> Template:
        form = await request.form()
        values = {"email": form.get("email"), "name": form.get("name"), "topics": _form_topics(form)}
        errors: dict[str, str] = {}
        try:
            email, name, _ = subscriptions.clean_request({"email": values["email"], "name": values["name"]})
        except ValidationFailed as exc:
            errors.update(exc.fields)
        try:
            if not values["topics"]:
                raise ValidationFailed({"topics": "choose at least one"})
            ids = await subscriptions.topic_ids(values["topics"])
        except ValidationFailed as exc:
            errors.update(exc.fields)
        if errors:
            return await self._form(errors=errors, values=_shown(values), status=400)
        await subscriptions.subscribe(email, name, ids, source="form")
        # Built from what was sent (never from what is stored): the same for any address.
        chosen = list(ids)
        return Template(
            "subscriber/check_inbox.html",
            context={
                "message": ACCEPTED,
                "email": email,
                "name": name,
                "topics": chosen,
                "again": form.get("again") == "1",
                "correct": "/bulletin/subscribe?"
                # "@" kept as typed: the page repeats the address, and only the address, verbatim.
                + urlencode([("email", email), ("name", name)] + [("topics", t) for t in chosen], safe="@"),
                "resend_minutes": int(subscriptions.RESEND_EVERY.total_seconds() // 60),
            },
        )

    @get("/s/confirm/{token:str}")
    async def confirm_page(self, token: FromPath[str]) -> Template:
        row = await subscriptions.get((await subscriptions.by_confirm_token(token))["id"])
        return Template(
            "subscriber/confirm.html",
            context={"subscriber": row, "token": token, "topics": await subscriptions.all_topics()},
        )

    @post("/s/confirm/{token:str}", status_code=200)
    async def confirm(self, token: FromPath[str]) -> Template:
        row = await subscriptions.confirm(token)
        return Template(
            "subscriber/confirmed.html",
            context={
                "subscriber": row,
                "manage": subscriptions.manage_token(row),
                "topics": await subscriptions.all_topics(),
            },
        )

    @get("/s/link")
    async def link_form(self) -> Template:
        return Template("subscriber/link.html", context={"errors": {}, "values": {}})

    @post("/s/link")
    async def link_submit(self, request: Request) -> Template:
        form = await request.form()
        try:
            email = validation.email(form.get("email"))
        except ValidationFailed as exc:
            return Template(
                "subscriber/link.html",
                status_code=400,
                context={"errors": exc.fields, "values": _shown({"email": form.get("email")})},
            )
        await subscriptions.send_link(email)
        return Template("subscriber/message.html", context={"title": "Check your inbox", "message": LINK_SENT})

    @get("/s/{token:str}")
    async def preferences(self, token: FromPath[str], saved: FromQuery[str | None] = None) -> Template:
        row = await subscriptions.get((await subscriptions.by_manage_token(token))["id"])
        return self._preferences(row, token, await subscriptions.all_topics(), notice=NOTICES.get(saved or ""))

    @get("/s/{token:str}/delete")
    async def delete_page(self, token: FromPath[str]) -> Template:
        """The confirmation before "Delete me": says what goes, with the button that POSTs
        `action=erase`. Changes nothing."""
        row = await subscriptions.get((await subscriptions.by_manage_token(token))["id"])
        return Template("subscriber/delete.html", context={"subscriber": row, "token": token})

    def _preferences(
        self,
        row: dict,
        token: str,
        topics: list[dict],
        notice: str | None = None,
        errors: dict | None = None,
        status: int = 200,
    ) -> Template:
        return Template(
            "subscriber/preferences.html",
            status_code=status,
            context={
                "subscriber": row,
                "token": token,
                "topics": topics,
                "notice": notice,
                "errors": errors or {},
                "paused_until": audience.paused_until_shown(row),
            },
        )

    @post("/s/{token:str}", status_code=200)
    async def change(self, request: Request, token: FromPath[str]) -> Response | Template | Redirect:
        form = await request.form()
        action = form.get("action") or "save"
        try:
            if action == "save":
                row = await subscriptions.update_preferences(token, topics=_form_topics(form), name=form.get("name"))
                if row["status"] == "unsubscribed" and row["awaits_confirmation"]:
                    action = "resubscribe"  # nothing joined: a confirmation was asked for
            elif action == "resubscribe":
                await subscriptions.resubscribe(token, _form_topics(form))
            elif action == "leave":
                await subscriptions.leave_topic(token, form.get("topic") or "")
            elif action == "pause":
                await subscriptions.pause(token, form.get("weeks"))
            elif action == "resume":
                await subscriptions.pause(token, 0)
            elif action == "export":
                data = await subscriptions.export(token)
                return Response(
                    json.dumps(data, indent=2, ensure_ascii=False),
                    media_type="application/json",
                    headers={"Content-Disposition": 'attachment; filename="my-data.json"'},
                )
            elif action == "erase":
                await subscriptions.erase(token)
                return Template(
                    "subscriber/message.html",
                    context={
                        "title": "Your data is deleted",
                        "message": "We removed your name, your address and your choices. You will get no more email from us.",
                    },
                )
            else:
                raise ValidationFailed({"action": "must be save, resubscribe, leave, pause, resume, export or erase"})
        except ValidationFailed as exc:
            row = await subscriptions.get((await subscriptions.by_manage_token(token))["id"])
            return self._preferences(row, token, await subscriptions.all_topics(), errors=exc.fields, status=400)
        return Redirect(f"/s/{token}?saved={action}", status_code=303)

    @get("/s/{token:str}/unsubscribe")
    async def unsubscribe_page(self, token: FromPath[str], topic: FromQuery[list[str] | None] = None) -> Template:
        row = await subscriptions.get((await subscriptions.by_manage_token(token))["id"])
        chosen = await subscriptions.one_click_topics(topic)
        return Template(
            "subscriber/unsubscribe.html",
            context={
                "subscriber": row,
                "token": token,
                "leave": chosen,
                "leave_query": "&".join(f"topic={quote(t['slug'], safe='')}" for t in chosen),
            },
        )

    @post("/s/{token:str}/unsubscribe", status_code=200)
    async def unsubscribe(self, token: FromPath[str], topic: FromQuery[list[str] | None] = None) -> Template:
        """RFC 8058 one-click: no cookie or CSRF token needed, 200 without a redirect, repeatable.
        With `?topic=SLUG` (bulk mail's URL) only that list is left; without, everything, and
        the link is retired by the first POST. The answer is built from the request alone: the
        same for a current, a stale and an unknown well-formed token, with no stored data."""
        chosen = await subscriptions.one_click_topics(topic)
        await subscriptions.unsubscribe(token, chosen)
        if chosen:
            names = ", ".join(f"\u201c{t['name']}\u201d" for t in chosen)
            return Template(
                "subscriber/message.html",
                context={
                    "title": "You left this list",
                    "message": f"You will get no more emails from {names}. Other topics you chose are "
                    "unchanged; your preference page lists them.",
                },
            )
        return Template(
            "subscriber/message.html",
            context={
                "title": "You are unsubscribed",
                "message": "You will get no more bulletins or announcements from us, and the links in "
                "emails we sent before no longer work.",
                "new_link": True,
            },
        )
