"""Event editor and registrants: list, create, edit (with the count of people a change will
email shown before saving), publish, cancel (count shown first), preview of the public page,
and the registrants of an event with search, CSV export, cancel, promote and resend. Both the
editor and the registrants page say when the registrants' details were or will be deleted
(domain/retention.py)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from ... import timefmt
from ...domain import events, images, registrant_admin, registrations, retention
from ...domain.errors import Conflict, ValidationFailed
from ...domain.event_input import clean_fields
from ...domain.reports import counts_by_event
from ...timefmt import format_range
from ..api import registrants_csv_response
from ..present import event_page
from . import event_form
from .session import StaffController, me, page

REGISTRANT_STATUSES = ("registered", "waitlisted", "cancelled")


def _form_page(
    request: Request,
    *,
    event: dict | None,
    values: dict,
    errors: dict | None = None,
    status: int = 200,
    flash: str | None = None,
) -> Template:
    common_zones, zones = event_form.zone_choices(values.get("timezone") or "")
    errors = event_form.plain_errors(errors or {})
    return page(
        request,
        "staff/event_edit.html",
        status,
        event=event,
        values=values,
        errors=errors,
        error_rows=[(event_form.field_id(f), event_form.label_of(f), reason) for f, reason in errors.items()],
        flash=flash,
        zones=zones,
        common_zones=common_zones,
        speaker_blanks=event_form.SPEAKER_BLANKS,
        max_speakers=event_form.MAX_SPEAKERS,
        saved_when=format_range(event["starts_at"], event["ends_at"], event["timezone"]) if event else "",
        question_types=event_form.QUESTION_TYPES,
        reminder_choices=event_form.REMINDER_CHOICES,
        retention=_retention(event) if event else None,
    )


async def _stored(upload: Any, field: str) -> tuple[str | None, dict[str, str]]:
    if not isinstance(upload, UploadFile) or not upload.filename:
        return None, {}
    try:
        return await images.store(await upload.read(), field=field), {}
    except ValidationFailed as exc:
        return None, exc.fields


async def _cover(form: Any, data: dict) -> dict[str, str]:
    """Store an uploaded cover and speakers' photos (each replaces the address typed); the
    errors for refused files, named like the fields they fill."""
    errors: dict[str, str] = {}
    url, refused = await _stored(form.get("cover_file"), "cover_image_url")
    errors.update(refused)
    if url:
        data["cover_image_url"] = url
    if "speakers" in data:
        for k, (i, _) in enumerate(event_form.speaker_rows_at(form)):
            url, refused = await _stored(form.get(f"s-{i}-photo_file"), f"speakers[{k}].photo_url")
            errors.update(refused)
            if url and k < len(data["speakers"]):
                data["speakers"][k]["photo_url"] = url
    return errors


def _shown_values(form: Any, data: dict) -> dict:
    """The form as typed, with pictures uploaded on this try kept (so they are not asked for again)."""
    values = event_form.posted_values(form)
    if data.get("cover_image_url"):
        values["cover_image_url"] = data["cover_image_url"]
    for shown, sent in zip(values["speakers"], data.get("speakers") or [], strict=False):
        shown["photo_url"] = sent.get("photo_url", shown["photo_url"])
    return values


def _retention(event: dict) -> dict:
    """retention.describe() with its days written in the event's zone, as staff think of it."""
    zone = ZoneInfo(event["timezone"])
    facts = retention.describe(event)
    return dict(facts, due_day=_day(facts["due_at"], zone), purged_day=_day(facts["purged_at"], zone))


def _day(moment, zone: ZoneInfo) -> str:
    if moment is None:
        return ""
    local = timefmt.in_zone(moment, zone)
    return f"{local.day} {local:%B %Y}"


class EventPages(StaffController):
    path = "/staff/events"

    @get("/")
    async def index(self, request: Request) -> Template:
        found = await events.listing(include_drafts=True)
        counts = await counts_by_event([e["id"] for e in found])
        rows = [
            {
                "event": e,
                "counts": counts[e["id"]],
                "when": format_range(e["starts_at"], e["ends_at"], e["timezone"]),
                "state": event_page(e)["state"],
            }
            for e in found
        ]
        return page(request, "staff/events.html", rows=rows)

    @get("/new")
    async def new(self, request: Request) -> Template:
        return _form_page(request, event=None, values=event_form.blank_values())

    @post("/")
    async def create(self, request: Request) -> Response:
        form = await request.form()
        if form.get("add_question"):
            return _form_page(request, event=None, values=event_form.posted_values(form, keep_blank=True))
        data = event_form.to_data(form)
        data.setdefault("speakers", [])
        if form.get("publish_now") == "yes":
            data["status"] = "published"
        upload_errors = await _cover(form, data)
        try:
            # Every field is checked, also when the picture was refused: all errors at once.
            clean_fields(data)
            if upload_errors:
                raise ValidationFailed({})
            event = await events.create(data, actor=me(request)["id"])
        except ValidationFailed as exc:
            return _form_page(
                request,
                event=None,
                values=_shown_values(form, data),
                errors={**upload_errors, **exc.fields},
                status=400,
            )
        return Redirect(f"/staff/events/{event['id']}?done=created", status_code=303)

    @get("/{event_id:int}")
    async def edit(
        self,
        request: Request,
        event_id: FromPath[int],
        done: FromQuery[str | None] = None,
        notified: FromQuery[int | None] = None,
    ) -> Template:
        event = await events.get(event_id)
        messages = {
            "created": "Event created."
            + (" It is a draft: publish it when it is ready." if event["status"] == "draft" else ""),
            "saved": f"Saved. {notified or 0} {'person was' if notified == 1 else 'people were'} emailed an updated invite.",
            "published": "Published: the event page is public and takes registrations.",
            "cancelled": f"Cancelled. {notified or 0} {'person was' if notified == 1 else 'people were'} told.",
        }
        return _form_page(request, event=event, values=event_form.values_of(event), flash=messages.get(done or ""))

    @post("/{event_id:int}")
    async def save(self, request: Request, event_id: FromPath[int]) -> Response:
        event = await events.get(event_id)
        form = await request.form()
        if form.get("add_question"):
            return _form_page(request, event=event, values=event_form.posted_values(form, keep_blank=True))
        data = event_form.to_data(form)
        upload_errors = await _cover(form, data)
        try:
            would_email = await events.count_affected(event_id, data)
            changed = events.changes(event, data)
            if upload_errors:
                raise ValidationFailed({})
        except ValidationFailed as exc:
            return _form_page(
                request,
                event=event,
                values=_shown_values(form, data),
                errors={**upload_errors, **exc.fields},
                status=400,
            )
        except Conflict as exc:
            return _form_page(
                request, event=event, values=event_form.posted_values(form), errors={"event": exc.message}, status=409
            )
        if would_email and form.get("confirmed") != "yes":
            # Saving would email people: say how many, and save only when confirmed.
            fields = [
                (k, v)
                for k, v in form.multi_items()
                if k not in ("csrf_token", "confirmed", "cover_file", "cover_image_url") and isinstance(v, str)
            ]
            fields.append(("cover_image_url", data.get("cover_image_url", event["cover_image_url"])))
            return page(
                request,
                "staff/event_confirm.html",
                event=event,
                would_email=would_email,
                fields=fields,
                changes=[c for c in changed if c in events.INVITE_FIELDS],
                rows=event_form.describe_changes(event, clean_fields(data, event), changed),
            )
        try:
            _, notified = await events.update(event_id, data, actor=me(request)["id"])
        except ValidationFailed as exc:
            return _form_page(request, event=event, values=_shown_values(form, data), errors=exc.fields, status=400)
        except Conflict as exc:
            return _form_page(
                request, event=event, values=_shown_values(form, data), errors={"event": exc.message}, status=409
            )
        return Redirect(f"/staff/events/{event_id}?done=saved&notified={notified}", status_code=303)

    @post("/{event_id:int}/publish")
    async def publish(self, request: Request, event_id: FromPath[int]) -> Response:
        await events.publish(event_id, actor=me(request)["id"])
        return Redirect(f"/staff/events/{event_id}?done=published", status_code=303)

    @get("/{event_id:int}/cancel")
    async def cancel_confirm(self, request: Request, event_id: FromPath[int]) -> Template:
        return await _cancel_page(request, event_id)

    @post("/{event_id:int}/cancel")
    async def cancel(self, request: Request, event_id: FromPath[int]) -> Response:
        form = await request.form()
        note = form.get("cancellation_note")
        note = note.replace("\r\n", "\n") if isinstance(note, str) else ""
        try:
            _, notified = await events.cancel(event_id, actor=me(request)["id"], note=note)
        except ValidationFailed as exc:
            return await _cancel_page(request, event_id, note=note, errors=exc.fields, status=400)
        return Redirect(f"/staff/events/{event_id}?done=cancelled&notified={notified}", status_code=303)

    @get("/{event_id:int}/preview")
    async def preview(self, request: Request, event_id: FromPath[int]) -> Template:
        """The public page as registrants will see it (drafts too), marked as a preview."""
        from ..public import page_context

        event = await events.get(event_id)
        context = await page_context(event, notice="Preview: this form does not register anyone.")
        if context["state"] == "draft":
            context["state"] = "open"  # show the form a published event would have
        context["preview"] = True
        return Template("staff/event_preview.html", context=context)

    @get("/{event_id:int}/registrants")
    async def registrants(
        self,
        request: Request,
        event_id: FromPath[int],
        q: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        done: FromQuery[str | None] = None,
    ) -> Template:
        event = await events.get(event_id)
        rows = await registrations.for_event(event_id)
        counts = {s: sum(1 for r in rows if r["status"] == s) for s in REGISTRANT_STATUSES}
        counts["attended"] = sum(1 for r in rows if r["attended_at"])
        if status in REGISTRANT_STATUSES:
            rows = [r for r in rows if r["status"] == status]
        needle = (q or "").strip().lower()[:200]
        if needle:
            rows = [
                r
                for r in rows
                if needle in r["email"]
                or needle in r["name"].lower()
                or any(needle in str(a).lower() for a in r["answers"].values())
            ]
        zone = ZoneInfo(event["timezone"])
        for r in rows:  # in the event's own zone, as staff think of it
            r["registered_local"] = _local(r["created_at"], zone)
            r["attended_local"] = _local(r["attended_at"], zone)
            r["purged"] = retention.is_purged(r)
        return page(
            request,
            "staff/registrants.html",
            event=event,
            rows=rows,
            counts=counts,
            q=q or "",
            status=status or "",
            statuses=REGISTRANT_STATUSES,
            flash=_REG_DONE.get(done or ""),
            when=format_range(event["starts_at"], event["ends_at"], event["timezone"]),
            retention=_retention(event),
        )

    @get("/{event_id:int}/registrants.csv")
    async def registrants_csv(self, event_id: FromPath[int]) -> Response:
        # The same file as GET /api/v1/events/{id}/registrations.csv: one definition of the export.
        return await registrants_csv_response(event_id)

    @get("/{event_id:int}/registrants/{reg_id:int}/confirm-cancel")
    async def registrant_cancel_confirm(
        self, request: Request, event_id: FromPath[int], reg_id: FromPath[int]
    ) -> Response | Template:
        """Cancelling someone emails them and may give their seat away: say so before it happens."""
        reg = await registrations.view(reg_id)
        if reg["event_id"] != event_id:
            return Redirect(f"/staff/events/{event_id}/registrants", status_code=303)
        event = await events.get(event_id)
        waiting = [r for r in await registrations.for_event(event_id) if r["status"] == "waitlisted"]
        return page(
            request,
            "staff/registrant_cancel.html",
            event=event,
            reg=reg,
            next_in_line=waiting[0] if waiting and reg["status"] == "registered" else None,
        )

    @post("/{event_id:int}/registrants/{reg_id:int}/{action:str}")
    async def registrant_action(
        self, request: Request, event_id: FromPath[int], reg_id: FromPath[int], action: FromPath[str]
    ) -> Response:
        actions: dict[str, Any] = {
            "cancel": registrant_admin.cancel_by_staff,
            "promote": registrant_admin.promote,
            "resend": registrant_admin.resend_confirmation,
        }
        if action not in actions:
            return Redirect(f"/staff/events/{event_id}/registrants", status_code=303)
        reg = await registrations.view(reg_id)
        if reg["event_id"] != event_id:
            return Redirect(f"/staff/events/{event_id}/registrants", status_code=303)
        try:
            await actions[action](reg_id, actor=me(request)["id"])
        except Conflict as exc:
            event = await events.get(event_id)
            return page(
                request,
                "staff/message.html",
                409,
                title="Not done",
                message=exc.message,
                back=f"/staff/events/{event_id}/registrants",
                back_label=f"Back to the registrants of {event['title']}",
            )
        return Redirect(f"/staff/events/{event_id}/registrants?done={action}", status_code=303)


async def _cancel_page(
    request: Request, event_id: int, *, note: str = "", errors: dict | None = None, status: int = 200
) -> Template:
    """Cancelling: who will be emailed, and the message to them."""
    event = await events.get(event_id)
    counts = (await counts_by_event([event_id]))[event_id]
    would = counts["registered"] + counts["waitlisted"] if event["status"] == "published" else 0
    return page(
        request,
        "staff/event_cancel.html",
        status,
        event=event,
        would_email=would,
        counts=counts,
        note=note,
        errors=errors or {},
        when=format_range(event["starts_at"], event["ends_at"], event["timezone"]),
    )


def _local(moment, zone: ZoneInfo) -> str:
    return timefmt.short_time(moment, zone) if moment else "–"


_REG_DONE = {
    "cancel": "Cancelled: they get an email with a calendar cancellation, and their seat went to the first person waiting.",
    "promote": "Promoted: they have a seat now and get an email with the calendar invite.",
    "resend": "The confirmation is on its way again, with the same personal links.",
}
