"""The outbox (recent and failed messages, their errors, retry) and the audit log."""

from __future__ import annotations

from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from ...domain import audit
from ...domain import outbox_admin as admin
from .session import StaffController, me, page, workspace_zone

PAGE_SIZE = 50


class MailPages(StaffController):
    path = "/staff/mail"

    @get("/")
    async def index(
        self,
        request: Request,
        status: FromQuery[str | None] = None,
        q: FromQuery[str | None] = None,
        before: FromQuery[int | None] = None,
        done: FromQuery[str | None] = None,
    ) -> Template:
        rows = await admin.recent(status, (q or "").strip()[:200] or None, PAGE_SIZE + 1, before)
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        flash = {
            "retried": "Queued again: the worker sends it within seconds.",
            "not-failed": "That message is no longer failed: nothing to retry.",
        }.get(done or "")
        return page(
            request,
            "staff/mail.html",
            counts=await admin.counts(),
            rows=rows,
            statuses=admin.STATUSES,
            status=status or "",
            q=q or "",
            next_before=rows[-1]["id"] if more else None,
            flash=flash,
            zone=await workspace_zone(),
        )

    @post("/{row_id:int}/retry")
    async def retry(self, request: Request, row_id: FromPath[int]) -> Response:
        done = await admin.retry(row_id)
        if done:
            await audit.record(me(request)["id"], "mail.retry", "outbox", row_id, "sent a failed message again")
        return Redirect(f"/staff/mail?status=failed&done={'retried' if done else 'not-failed'}", status_code=303)


class AuditPage(StaffController):
    path = "/staff/audit"

    @get("/")
    async def index(self, request: Request, before: FromQuery[int | None] = None) -> Template:
        rows = await audit.recent(PAGE_SIZE + 1, before)
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        return page(
            request,
            "staff/audit.html",
            rows=rows,
            next_before=rows[-1]["id"] if more else None,
            zone=await workspace_zone(),
        )
