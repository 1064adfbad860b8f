"""Subscribers in the workspace: counts per topic, the list's size over time, search, CSV export
(the staff API's, streamed) and CSV import with its report (the `subscribers import` command's
importer: consented lists only)."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC

from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.params import FromQuery
from litestar.response import Stream, Template

from ... import clock
from ...domain import importer, reports
from ...domain.errors import ValidationFailed
from .. import staff_subscribers as api
from . import chart
from .session import StaffController, me, page, workspace_zone

PAGE_SIZE = 50
MAX_UPLOAD = 50 * 1024 * 1024


async def list_size_over_time() -> dict:
    """Confirmed subscribers over time: +1 on the day each was confirmed, -1 on the day an
    unsubscribed one left (erased people keep neither date). Days, or weeks for long spans."""
    joined, left = await reports.subscriber_joins_and_leaves()
    if not joined:
        return {"items": [], "svg": chart.bar_chart([], title="Confirmed subscribers over time", unit="subscribers")}
    today = clock.today()
    first = min(m.astimezone(UTC).date() for m in joined)
    ins = chart.buckets(joined, "UTC", first, today)
    outs = chart.buckets(left, "UTC", first, today)
    net = [{**a, "count": a["count"] - b["count"]} for a, b in zip(ins, outs, strict=True)]
    items = chart.cumulative(net)
    return {
        "items": items,
        "svg": chart.bar_chart(
            items,
            title="Confirmed subscribers over time",
            unit="subscribers",
            chart_id="subscribers-chart",
            y_label="Confirmed subscribers",
            zone="UTC",
        ),
    }


class StaffSubscriberPages(StaffController):
    path = "/staff/subscribers"

    @get("/")
    async def index(
        self,
        request: Request,
        topic: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        q: FromQuery[str | None] = None,
        after: FromQuery[int | None] = None,
    ) -> Template:
        return await _index(request, topic, status, q, after)

    @get("/export.csv")
    async def export(
        self, topic: FromQuery[str | None] = None, status: FromQuery[str | None] = None, q: FromQuery[str | None] = None
    ) -> Stream:
        # The same streamed file as GET /api/v1/subscribers.csv.
        return await api.csv_response(topic, status, q)

    @post("/import")
    async def import_file(self, request: Request) -> Response:
        form = await request.form()
        upload = form.get("file")
        topics = [t for t in form.getall("topics", []) if isinstance(t, str) and t]
        problems: dict[str, str] = {}  # every problem with the form at once, next to its field
        if not isinstance(upload, UploadFile) or not upload.filename:
            problems["file"] = "is missing: choose the CSV file to import"
        if not topics:
            problems["topics"] = "needs at least one topic ticked"
        content = await upload.read() if isinstance(upload, UploadFile) and not problems.get("file") else b""
        if len(content) > MAX_UPLOAD:
            problems["file"] = "is over 50 MB: import it with `events-app subscribers import` on the server"
        if problems:
            return await _index(request, import_errors=problems, chosen=topics)
        assert isinstance(upload, UploadFile)
        context = {"topics": await api.topic_counts(), "chosen": topics}
        fd, path = tempfile.mkstemp(suffix=".csv")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
            try:
                report = await importer.import_csv(path, topics, actor=me(request)["id"], file_name=upload.filename)
            except ValidationFailed as exc:
                named = {
                    "topics" if k in ("topic", "topics") else "file": str(r).replace(path, upload.filename)
                    for k, r in exc.fields.items()
                }
                return await _index(request, import_errors=named, chosen=topics)
        finally:
            os.unlink(path)
        return page(request, "staff/import_report.html", 200, report=report, filename=upload.filename, **context)


async def _index(
    request: Request,
    topic: str | None = None,
    status: str | None = None,
    q: str | None = None,
    after: int | None = None,
    *,
    import_errors: dict[str, str] | None = None,
    chosen: list[str] | None = None,
) -> Template:
    """The subscribers page; with `import_errors` (a refused import: 400) shown at the import form."""
    errors: dict[str, str] = {}
    try:
        flt = await api.SubscriberFilter.parse(topic, status, q)
    except ValidationFailed as exc:
        errors, flt = exc.fields, await api.SubscriberFilter.parse(None, None, None)
    rows = await api.page(flt, max(after or 0, 0), PAGE_SIZE + 1)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return page(
        request,
        "staff/subscribers.html",
        400 if errors or import_errors else 200,
        errors=errors,
        import_errors=import_errors or {},
        chosen=chosen if chosen is not None else ["bulletin"],
        topics=await api.topic_counts(),
        statuses=api.STATUSES,
        growth=await list_size_over_time(),
        rows=rows,
        next_after=rows[-1]["id"] if more else None,
        filters={"topic": topic or "", "status": status or "", "q": q or ""},
        zone=await workspace_zone(),  # confirmed times with their zone, as everywhere in the workspace
    )
