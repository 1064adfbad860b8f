"""The bulletin in the workspace: issue list, editor with previews of the web page and of the
email, a test send, release (now or scheduled) after seeing the recipient count, live delivery
progress (figures as of a time with a Refresh link; with JavaScript the page fetches its live part every few seconds until done), pause, resume and retry failed.

The rules (the release time, who receives it) and the audit entries are the domain's
(domain/issues.py): these handlers read the forms, pass the signed-in member as `actor` and show
the outcome, exactly as the API does for the same request."""

from __future__ import annotations

from litestar import Request, Response, get, post
from litestar.datastructures import CacheControlHeader
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from ... import clock, settings, timefmt
from ...domain import issues, subscriptions
from ...domain import validation as v
from ...domain.errors import Conflict, ValidationFailed
from ...mail import bulk
from . import event_form
from .session import StaffController, me, page

EDITABLE = ("title", "slug", "issue_date", "summary", "body", "topic")
NO_STORE = CacheControlHeader(no_store=True)


def _posted(form) -> dict:
    data = {k: (form.get(k) or "").replace("\r\n", "\n") for k in EDITABLE if form.get(k) is not None}
    if not data.get("slug"):
        data.pop("slug", None)
    return data


async def _editor(
    request: Request,
    issue: dict | None,
    values: dict,
    *,
    errors: dict | None = None,
    status: int = 200,
    flash: str | None = None,
    previewing: dict | None = None,
) -> Template:
    """The editor; `previewing` (the issue with unsaved changes applied) replaces the saved
    issue in the previews."""
    shown = previewing or issue
    web = email = None
    if shown is not None:
        web = issues.body_html(shown)
        email = bulk.preview(shown, settings.get())
    return page(
        request,
        "staff/issue_edit.html",
        status,
        issue=issue,
        values=values,
        errors=errors or {},
        flash=flash,
        topics=await subscriptions.all_topics(),
        web=web,
        email=email,
        unsaved=previewing is not None,
        delivery=await issues.delivery(issue["id"]) if issue else None,
    )


def _values(issue: dict) -> dict:
    return {
        "title": issue["title"],
        "slug": issue["slug"],
        "issue_date": issue["issue_date"],
        "summary": issue["summary"],
        "body": issue["body"],
        "topic": issue["topic_slug"],
    }


class StaffBulletinPages(StaffController):
    path = "/staff/issues"

    @get("/")
    async def index(self, request: Request) -> Template:
        rows = [{"issue": i, "delivery": await issues.delivery(i["id"])} for i in await issues.listing()]
        return page(request, "staff/issues.html", rows=rows)

    @get("/new")
    async def new(self, request: Request) -> Template:
        values = {
            "title": "",
            "slug": "",
            "issue_date": clock.today().isoformat(),
            "summary": "",
            "body": "",
            "topic": "bulletin",
        }
        return await _editor(request, None, values)

    @post("/")
    async def create(self, request: Request) -> Response:
        form = await request.form()
        data = _posted(form)
        try:
            issue = await issues.create(data, actor=me(request)["id"])
        except ValidationFailed as exc:
            return await _editor(request, None, {**data, "slug": form.get("slug") or ""}, errors=exc.fields, status=400)
        return Redirect(f"/staff/issues/{issue['id']}?done=created", status_code=303)

    @get("/{issue_id:int}")
    async def edit(self, request: Request, issue_id: FromPath[int], done: FromQuery[str | None] = None) -> Template:
        issue = await issues.get(issue_id)
        flash = {
            "created": "Draft saved. Check both previews, send yourself a test, then release.",
            "saved": "Saved.",
            "tested": "Test email queued: it arrives marked [Test] within seconds.",
        }.get(done or "")
        return await _editor(request, issue, _values(issue), flash=flash)

    @post("/{issue_id:int}")
    async def save(self, request: Request, issue_id: FromPath[int]) -> Response:
        issue = await issues.get(issue_id)
        form = await request.form()
        data = _posted(form)
        if form.get("preview"):
            # Show the previews of what is typed, without saving it.
            merged = {**issue, **{k: val for k, val in data.items() if k in ("title", "summary", "body", "issue_date")}}
            return await _editor(
                request,
                issue,
                {**_values(issue), **data},
                previewing=merged,
                flash="Preview of your unsaved changes: save to keep them.",
            )
        try:
            await issues.update(issue_id, data, actor=me(request)["id"])
        except ValidationFailed as exc:
            return await _editor(request, issue, {**_values(issue), **data}, errors=exc.fields, status=400)
        return Redirect(f"/staff/issues/{issue_id}?done=saved", status_code=303)

    @post("/{issue_id:int}/test")
    async def test(self, request: Request, issue_id: FromPath[int]) -> Response:
        issue = await issues.get(issue_id)
        form = await request.form()
        address = (form.get("email") or "").strip() or me(request)["email"]
        try:
            await issues.send_test(issue_id, address, actor=me(request)["id"])
        except ValidationFailed as exc:
            return await _editor(
                request, issue, _values(issue), errors={"test_email": exc.fields.get("email", "is invalid")}, status=400
            )
        return Redirect(f"/staff/issues/{issue_id}?done=tested", status_code=303)

    @get("/{issue_id:int}/release")
    async def release_confirm(self, request: Request, issue_id: FromPath[int]) -> Template:
        issue = await issues.get(issue_id)
        return page(
            request,
            "staff/issue_release.html",
            issue=issue,
            recipients=await issues.recipient_count(issue_id),
            zones=event_form.all_zones(),
            zone=await issues.default_zone(),
            errors={},
        )

    @post("/{issue_id:int}/release")
    async def release(self, request: Request, issue_id: FromPath[int]) -> Response:
        issue = await issues.get(issue_id)
        form = await request.form()
        try:
            at = None
            if form.get("when") == "later":
                zone = v.zone(form.get("timezone"), "timezone")
                at = v.timestamp(form.get("release_at"), "release_at", zone)
            await issues.release(issue_id, at, actor=me(request)["id"])
        except ValidationFailed as exc:  # the time typed, or the release time rule (in the past)
            return page(
                request,
                "staff/issue_release.html",
                400,
                issue=issue,
                errors=_plain(exc.fields),
                recipients=await issues.recipient_count(issue_id),
                zones=event_form.all_zones(),
                zone=form.get("timezone") or "UTC",
                release_at=form.get("release_at") or "",
            )
        except Conflict as exc:
            return page(
                request,
                "staff/message.html",
                409,
                title="Not released",
                message=exc.message,
                back=f"/staff/issues/{issue_id}/progress",
                back_label="See its delivery",
            )
        return Redirect(f"/staff/issues/{issue_id}/progress", status_code=303)

    @get("/{issue_id:int}/progress")
    async def progress(self, request: Request, issue_id: FromPath[int], done: FromQuery[str | None] = None) -> Template:
        issue = await issues.get(issue_id)
        flash = {
            "retried": "The failed deliveries are queued again.",
            "paused": "Paused: nothing more goes out until you resume.",
            "resumed": "Resumed.",
        }.get(done or "")
        return page(request, "staff/issue_progress.html", issue=issue, flash=flash, **await _live(issue_id))

    @get("/{issue_id:int}/progress/live", cache_control=NO_STORE)
    async def progress_live(self, issue_id: FromPath[int]) -> Template:
        """The delivery figures alone, for the page's script to swap in (changes nothing)."""
        await issues.get(issue_id)
        return Template("staff/_delivery_live.html", context=await _live(issue_id))

    @post("/{issue_id:int}/{action:str}")
    async def delivery_action(self, request: Request, issue_id: FromPath[int], action: FromPath[str]) -> Response:
        await issues.get(issue_id)
        if action not in ("retry", "pause", "resume"):
            return Redirect(f"/staff/issues/{issue_id}/progress", status_code=303)
        actor = me(request)["id"]
        try:
            if action == "retry":
                await issues.retry_failed(issue_id, actor=actor)
            else:
                await (issues.pause if action == "pause" else issues.resume)(issue_id, actor=actor)
        except Conflict as exc:
            return page(
                request,
                "staff/message.html",
                409,
                title="Not done",
                message=exc.message,
                back=f"/staff/issues/{issue_id}",
                back_label="Back to the issue",
            )
        past = {"retry": "retried", "pause": "paused", "resume": "resumed"}[action]
        return Redirect(f"/staff/issues/{issue_id}/progress?done={past}", status_code=303)


def _plain(errors: dict) -> dict:
    """The domain's reasons as a person filling in the release form reads them."""
    out = dict(errors)
    reason = out.get("release_at", "")
    if reason.startswith("must be an ISO 8601 time"):
        out["release_at"] = "must be a date and a time, such as 1 December 2026 at 9:00 AM"
    elif reason.startswith("is required"):
        out["release_at"] = "is required for a later release: choose the date and time"
    return out


async def _live(issue_id: int) -> dict:
    """What the delivery page and its live part show: the figures as of their count (shared by
    the requests of this process while the mailing sends), in staff's zone."""
    delivery = await issues.delivery(issue_id, live=True)
    return delivery_context(delivery, await issues.default_zone())


def delivery_context(delivery: dict, zone: str) -> dict:
    """The context of staff/_delivery_live.html for a mailing's delivery figures (as of their
    `as_of`, the time of the count, when they have one; else now)."""
    moment = delivery.get("as_of") or clock.now()
    return {
        "d": delivery,
        "moving": delivery.get("mailing") is not None and delivery["status"] != "done",
        "release_local": timefmt.short_time(delivery.get("release_at"), zone, ""),
        "as_of": timefmt.time_of_day(moment, zone),
        "as_of_iso": timefmt.iso_seconds(moment, zone),
    }
