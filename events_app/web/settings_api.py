"""GET and PATCH /api/v1/settings: the organisation's identity (staff only).

The answer gives the values in use (the organisation's name falls back to EVENTS_ORG_NAME, the
accent colour to the default) with `version`, which grows on every change. PATCH takes any of
the fields; one sent as "" or null goes back to its default. The shapes are checked here
(msgspec, strictly), the meanings by domain/identity.py (a colour dark enough for white text,
an address, a web address), every bad field at once, 400 naming each.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, patch
from msgspec import UNSET, Meta, Struct, UnsetType

from ..domain import identity
from .auth import require_staff
from .responses import STAFF, answer
from .schemas import EMAIL, ONE_LINE, TEXT, URL, checked, example, fields

MEDIA = r"/media/[0-9a-f]{64}\.(?:jpg|png|webp)"
# Pictures load from this site or over https only (the pages' Content-Security-Policy).
HTTPS_URL = URL.replace("https?://", "https://")
COLOUR = r"^\s*#?(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{3})\s*$"


def _doc(description: str, **schema: Any) -> Any:
    return Meta(description=description, extra_json_schema={"extra": schema})


OrganisationName = Annotated[
    str,
    Meta(max_length=200),
    _doc("One line; empty: EVENTS_ORG_NAME", pattern=ONE_LINE, examples=["Implementation Science Centre"]),
]
LogoUrl = Annotated[
    str,
    Meta(max_length=2000),
    _doc(
        "An https:// address, the /media/ path of a picture uploaded in the workspace, or empty",
        pattern=HTTPS_URL.replace(")?\\s*$", f"|{MEDIA})?\\s*$"),
    ),
]
AccentColour = Annotated[
    str,
    Meta(max_length=16),
    _doc(
        "#rrggbb (or #rgb), dark enough that white text on it has a contrast of at least 4.5:1; empty: the default",
        pattern=f"^(?:{COLOUR[1:-1]})?$",
        examples=["#0b5cad"],
    ),
]
Website = Annotated[str, Meta(max_length=2000), _doc("An http:// or https:// address, or empty", pattern=URL)]
ReplyTo = Annotated[str, Meta(max_length=320), _doc("One address, or empty", pattern=f"^(?:{EMAIL[1:-1]})?$")]
PostalAddress = Annotated[
    str,
    Meta(max_length=500),
    _doc("Several lines (at most 8): the bulk-mail footer's postal address (CASL, CAN-SPAM)", pattern=TEXT),
]


class OrganisationChange(Struct, kw_only=True, forbid_unknown_fields=True):
    """Any of the identity's fields; those not sent stay as they are, "" or null restores the default."""

    organisation_name: OrganisationName | None | UnsetType = UNSET
    logo_url: LogoUrl | None | UnsetType = UNSET
    accent_colour: AccentColour | None | UnsetType = UNSET
    website: Website | None | UnsetType = UNSET
    reply_to: ReplyTo | None | UnsetType = UNSET
    postal_address: PostalAddress | None | UnsetType = UNSET


class Organisation(Struct, kw_only=True):
    """The organisation's identity as pages and emails show it (defaults filled in)."""

    organisation_name: str
    logo_url: str
    accent_colour: str
    website: str
    reply_to: str
    postal_address: str
    version: int


CHANGE_EXAMPLE = {
    "organisation_name": "Implementation Science Centre",
    "accent_colour": "#0b5cad",
    "website": "https://example.org",
    "postal_address": "100 College Street\nToronto ON M5G 1L5\nCanada",
}


def organisation_json(org: identity.Identity) -> dict:
    return {
        "organisation_name": org.name,
        "logo_url": org.logo_url,
        "accent_colour": org.accent_colour,
        "website": org.website,
        "reply_to": org.reply_to,
        "postal_address": org.postal_address,
        "version": org.version,
    }


class SettingsApi(Controller):
    path = "/api/v1/settings"
    tags = ["settings"]
    guards = [require_staff]
    security = STAFF

    @get("/", responses=answer(Organisation), summary="The organisation's identity (staff)")
    async def show(self) -> dict:
        return organisation_json(await identity.load())

    @patch("/", responses=answer(Organisation), summary="Change the organisation's identity (staff)")
    async def change(self, request: Request, data: Annotated[OrganisationChange, example(CHANGE_EXAMPLE)]) -> dict:
        changes = fields(await checked(request, OrganisationChange, data))
        return organisation_json(await identity.update(changes, actor=request.state.staff["id"]))


def tighten(openapi: Any) -> None:
    """The change body refuses unknown fields: say so in the document (as api_docs.tighten does
    for web/schemas.py's bodies)."""
    components = getattr(getattr(openapi, "components", None), "schemas", None) or {}
    schema = components.get("OrganisationChange")
    if schema is not None:
        schema.additional_properties = False


SETTINGS_API_HANDLERS = [SettingsApi]
