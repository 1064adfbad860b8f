"""Announcing an event to the subscribers from the workspace: a page that says how many confirmed
subscribers will get the email (the `events` topic, plus `careers` for an event tagged career:
the rule of POST /api/v1/events/{id}/announce, domain/mailings.py) and asks to confirm; the POST
does it and shows the announcement's delivery. A second announcement of the same event reaches
everyone twice, so it needs its own tick box, and the page lists the earlier ones."""

from __future__ import annotations

from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from ...domain import events, issues, mailings, subscriptions
from ...domain.errors import Conflict
from ...timefmt import format_range, short_time
from .bulletin_pages import NO_STORE, delivery_context
from .session import StaffController, me, page


async def _confirm_page(request: Request, event_id: int, *, status: int = 200, error: str | None = None) -> Template:
    preview = await mailings.announce_preview(event_id)
    event = preview["event"]
    names = {t["slug"]: t["name"] for t in await subscriptions.all_topics()}
    previous = [{"mailing": m, "when": short_time(m["created_at"], event["timezone"])} for m in preview["previous"]]
    return page(
        request,
        "staff/announce.html",
        status,
        event=event,
        when=format_range(event["starts_at"], event["ends_at"], event["timezone"]),
        recipients=preview["recipients"],
        topics=[names.get(slug, slug) for slug in preview["topics"]],
        previous=previous,
        refusal=preview["refusal"],
        errors={"again": error} if error else {},
    )


class AnnouncePages(StaffController):
    path = "/staff/events"

    @get("/{event_id:int}/announce")
    async def confirm(self, request: Request, event_id: FromPath[int]) -> Template:
        return await _confirm_page(request, event_id)

    @post("/{event_id:int}/announce")
    async def announce(self, request: Request, event_id: FromPath[int]) -> Response:
        form = await request.form()
        again = form.get("again") == "yes"
        try:
            mailing = await mailings.announce(event_id, actor=me(request)["id"], again=again)
        except Conflict as exc:
            if exc.reason == "already_announced":
                error = "This event was announced already. Tick the box to send it to everyone a second time."
                return await _confirm_page(request, event_id, status=409, error=error)
            return await _confirm_page(request, event_id, status=409)
        return Redirect(f"/staff/mailings/{mailing['id']}?done=announced", status_code=303)


class MailingPages(StaffController):
    """The delivery of an announcement (issues have theirs under /staff/issues)."""

    path = "/staff/mailings"

    @get("/{mailing_id:int}")
    async def delivery(
        self, request: Request, mailing_id: FromPath[int], done: FromQuery[str | None] = None
    ) -> Response:
        mailing = await mailings.get(mailing_id)
        if mailing["kind"] == "issue" and mailing["issue"] is not None:
            return Redirect(f"/staff/issues/{mailing['issue']}/progress", status_code=303)
        event = await events.get(mailing["event"])
        flash = "Announced: the emails are on their way." if done == "announced" else None
        return page(
            request,
            "staff/mailing_progress.html",
            event=event,
            mailing=mailing,
            flash=flash,
            **await _live(mailing_id),
        )

    @get("/{mailing_id:int}/live", cache_control=NO_STORE)
    async def live(self, mailing_id: FromPath[int]) -> Template:
        """The delivery figures alone, for the page's script to swap in (changes nothing)."""
        return Template("staff/_delivery_live.html", context=await _live(mailing_id))


async def _live(mailing_id: int) -> dict:
    # Shared counts while sending (a ledger of a million rows is not counted per poll).
    return delivery_context(await mailings.delivery_live(mailing_id), await issues.default_zone())
