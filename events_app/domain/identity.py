"""The organisation's identity: name, logo, accent colour, website, reply-to and postal address.

Staff set it in the workspace's Settings (and `PATCH /api/v1/settings`); it is one row of
`org_settings`, and an empty value falls back to the first default (EVENTS_ORG_NAME for the name).
Pages and emails read it through `snapshot()` (synchronous, the last loaded value in this
process); `load()` reads the row. Templates see it as the Jinja global `org` (`org.name`,
`org.logo_url`, `org.accent_colour`, `org.website`, `org.reply_to`, `org.postal_address`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .. import settings
from ..tables import OrgSettings

DEFAULT_ACCENT = "#0b5cad"


@dataclass(frozen=True)
class Identity:
    name: str
    logo_url: str = ""
    accent_colour: str = DEFAULT_ACCENT
    website: str = ""
    reply_to: str = ""
    postal_address: str = ""
    version: int = 0  # 0: nothing stored yet


def default() -> Identity:
    return Identity(name=settings.get().org_name)


_current: Identity | None = None


def snapshot() -> Identity:
    """The identity as this process last loaded it (the first defaults before any load)."""
    return _current if _current is not None else default()


def _from_row(row: dict) -> Identity:
    base = default()
    return replace(
        base,
        name=row.get("organisation_name") or base.name,
        logo_url=row.get("logo_url") or "",
        accent_colour=row.get("accent_colour") or DEFAULT_ACCENT,
        website=row.get("website") or "",
        reply_to=row.get("reply_to") or "",
        postal_address=row.get("postal_address") or "",
        version=row.get("version") or 0,
    )


async def load() -> Identity:
    """Read the stored identity and make it this process's snapshot."""
    global _current
    row = await OrgSettings.select().where(OrgSettings.id == 1).first()
    _current = _from_row(row) if row else default()
    return _current


def forget() -> None:
    """Drop the snapshot (tests, and a settings change in this process)."""
    global _current
    _current = None


class TemplateView:
    """The Jinja global `org`: each attribute read gives the current snapshot's value."""

    def __getattr__(self, name: str) -> object:
        return getattr(snapshot(), name)
