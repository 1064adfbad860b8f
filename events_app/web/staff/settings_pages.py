"""The workspace's Settings page: the organisation's identity (name, logo, accent colour,
website, reply-to and postal address), as `PATCH /api/v1/settings` sets it.

One form (multipart, for the logo), with the CSRF token every workspace form carries. Every
problem is shown at once: in a summary at the top that links to each field, and next to the
field, with the field's label. A logo that was accepted while another field was refused is
kept in the form (a hidden field), so it need not be chosen again. After saving: a redirect to
the page with a notice (POST, redirect, GET), so reloading does not post again.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from ... import settings
from ...domain import identity, images
from ...domain.errors import ValidationFailed
from .session import StaffController, me, page

TEXT_FIELDS = ("organisation_name", "accent_colour", "website", "reply_to", "postal_address")
LABELS = {**identity.LABELS, "logo": "Logo"}
LOGO_TYPES = "image/png,image/jpeg,image/webp,image/gif"
SAVED = "Settings saved. Pages show them now; emails from the next one sent."


def _page(request: Request, values: dict, *, errors: dict | None = None, status: int = 200, **extra: Any) -> Template:
    org = identity.snapshot()
    return page(
        request,
        "staff/settings.html",
        status,
        values=values,
        errors=errors or {},
        labels=LABELS,
        default_name=settings.get().org_name,
        default_accent=identity.DEFAULT_ACCENT,
        current=org,
        logo_types=LOGO_TYPES,
        **extra,
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


class SettingsPage(StaffController):
    path = "/staff/settings"

    @get("/")
    async def show(self, request: Request, done: FromQuery[str | None] = None) -> Template:
        await identity.load()
        return _page(request, await identity.stored(), flash=SAVED if done == "saved" else None)

    @post("/")
    async def save(self, request: Request) -> Response:
        form = await request.form()
        values = {name: _text(form.get(name)) for name in TEXT_FIELDS}
        before = await identity.stored()
        errors: dict[str, str] = {}
        # The logo: a new file, else one accepted on a refused try (hidden), else as it was.
        logo = before["logo_url"]
        pending = _text(form.get("pending_logo"))
        if pending and images.digest_of(pending):
            logo = pending
        upload = form.get("logo")
        if isinstance(upload, UploadFile) and upload.filename:
            try:
                logo = await images.store(await upload.read(), field="logo")
            except ValidationFailed as exc:
                errors.update(exc.fields)
        if form.get("remove_logo") == "yes" and "logo" not in errors:
            logo = ""
        changes = {**values, "logo_url": logo}
        try:
            identity.check(changes)
        except ValidationFailed as exc:
            errors.update({("logo" if k == "logo_url" else k): v for k, v in exc.fields.items()})
        if errors:
            shown = {**values, "logo_url": before["logo_url"]}
            return _page(
                request, shown, errors=errors, status=400, pending_logo=logo if logo != before["logo_url"] else ""
            )
        await identity.update(changes, actor=me(request)["id"])
        return Redirect("/staff/settings?done=saved", status_code=303)


SETTINGS_PAGE_HANDLERS = [SettingsPage]
