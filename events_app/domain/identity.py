"""The organisation's identity: name, logo, accent colour, website, reply-to and postal address.

Staff set it in the workspace's Settings (and `PATCH /api/v1/settings`); it is one row of
`org_settings`, and an empty value falls back to the first default (EVENTS_ORG_NAME for the name,
DEFAULT_ACCENT for the colour). Pages and emails read it through `snapshot()` (synchronous, the
last loaded value in this process); `load()` reads the row. Templates see it as the Jinja global
`org` (`org.name`, `org.logo_url`, `org.accent_colour`, `org.website`, `org.reply_to`,
`org.postal_address`).

Freshness: `update()` replaces this process's snapshot at once. Other processes (a second server,
the mail worker) call `await fresh()`: at most once every FRESH_SECONDS it reads the row's
`version` (one tiny query) and reloads the row when it changed, so a change made anywhere shows
everywhere within about a second. The web calls it before every request (app.py), the worker
before each batch (mail/render.py). A database that cannot be reached keeps the last snapshot:
the identity never turns an outage into an error where the page would otherwise answer.
Cached pages (web/cache.py) add `snapshot().version` to their keys and ETags.

`update(fields, actor=...)` checks every field at once (ValidationFailed names each bad one in
plain words), writes the row, grows `version` and records an audit entry in the same transaction.
The accent colour must give white text on it, and it as text on the page's white, light-grey
and light-green backgrounds, a contrast of at least 4.5:1 (WCAG AA), since links and buttons are drawn with it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from .. import clock, db, settings
from ..tables import OrgSettings
from . import audit, images, validation
from .errors import ValidationFailed

log = logging.getLogger("events_app.identity")

DEFAULT_ACCENT = "#0b5cad"
# The backgrounds the accent colour is drawn on as text (links) or under white text (buttons):
# white, the header's and tables' light grey, and the green of success notices (templates/base.html).
PAGE_BACKGROUNDS = ("#ffffff", "#f3f6fa", "#e9f6ee")
MIN_CONTRAST = 4.5
FRESH_SECONDS = 1.0
NAME_MAX = 200
ADDRESS_MAX = 500
ADDRESS_LINES = 8
FIELDS = ("organisation_name", "logo_url", "accent_colour", "website", "reply_to", "postal_address")
# What each field is called where people read it (the workspace's form, audit summaries).
LABELS = {
    "organisation_name": "Organisation name",
    "logo_url": "Logo",
    "accent_colour": "Accent colour",
    "website": "Website",
    "reply_to": "Reply-to address",
    "postal_address": "Postal address",
}
_COLOUR = re.compile(r"^#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})$")
_MEDIA = re.compile(r"^/media/[0-9a-f]{64}\.(?:jpg|png|webp)$")

VERSION_SQL = "SELECT version FROM org_settings WHERE id = 1"
ENSURE_SQL = (
    "INSERT INTO org_settings (id, organisation_name, logo_url, accent_colour, website, reply_to, "
    "postal_address, version, updated_at) VALUES (1, '', '', '', '', '', '', 0, {}) ON CONFLICT (id) DO NOTHING"
)
CURRENT_SQL = (
    "SELECT organisation_name, logo_url, accent_colour, website, reply_to, postal_address, version "
    "FROM org_settings WHERE id = 1"
)


@dataclass(frozen=True)
class Identity:
    name: str
    logo_url: str = ""
    accent_colour: str = DEFAULT_ACCENT
    website: str = ""
    reply_to: str = ""
    postal_address: str = ""
    version: int = 0  # 0: nothing stored yet
    # The narrowest stored copy of an uploaded logo (images.variants), for the pages' header.
    logo_small_url: str = ""

    @cached_property
    def key(self) -> str:
        """A digest of every value, computed once per snapshot: what cached pages' keys and ETags
        hold (web/cache.py), instead of hashing the whole identity on every lookup."""
        return hashlib.sha256(repr(self).encode()).hexdigest()[:32]

    @property
    def initial(self) -> str:
        """The first letter or digit of the name (the favicon's letter)."""
        for char in self.name:
            if char.isalnum():
                return char.upper()
        return "E"

    @property
    def address_lines(self) -> list[str]:
        return [line.strip() for line in self.postal_address.splitlines() if line.strip()]


_default: Identity | None = None


def default() -> Identity:
    """The first defaults (EVENTS_ORG_NAME), one object while the setting stays."""
    global _default
    name = settings.get().org_name
    if _default is None or _default.name != name:
        _default = Identity(name=name)
    return _default


_current: Identity | None = None
_checked_at = float("-inf")


def snapshot() -> Identity:
    """The identity as this process last loaded it (the first defaults before any load)."""
    return _current if _current is not None else default()


def _from_row(row: dict) -> Identity:
    base = default()
    return replace(
        base,
        name=row.get("organisation_name") or base.name,
        logo_url=row.get("logo_url") or "",
        # Only a colour as `colour()` writes it reaches a page's CSS, whatever the row holds.
        accent_colour=accent
        if re.fullmatch(r"#[0-9a-f]{6}", accent := row.get("accent_colour") or "")
        else DEFAULT_ACCENT,
        website=row.get("website") or "",
        reply_to=row.get("reply_to") or "",
        postal_address=row.get("postal_address") or "",
        version=row.get("version") or 0,
    )


async def load() -> Identity:
    """Read the stored identity and make it this process's snapshot."""
    global _current, _checked_at
    row = await OrgSettings.select().where(OrgSettings.id == 1).first()
    _current = await _with_small_logo(_from_row(row) if row else default())
    _checked_at = time.monotonic()
    return _current


async def fresh() -> Identity:
    """The identity, current to within FRESH_SECONDS whichever process changed it: reads the
    stored `version` at most once a FRESH_SECONDS per process and reloads the row when it
    differs from the snapshot's. Never raises: when the database cannot be read, the last
    snapshot (or the first defaults) stays, and the next call past FRESH_SECONDS tries again."""
    global _checked_at
    now = time.monotonic()
    if _current is not None and now - _checked_at < FRESH_SECONDS:
        return _current
    _checked_at = now  # before the await: concurrent requests do not all ask
    try:
        rows = await db.fetch(VERSION_SQL)
        version = int(rows[0]["version"] or 0) if rows else 0
        if _current is None or version != _current.version:
            return await load()
    except Exception as exc:  # an outage, a database not migrated yet: keep what we have
        log.warning("organisation settings not read (%s); keeping the last ones", exc.__class__.__name__)
    return snapshot()


async def _with_small_logo(org: Identity) -> Identity:
    found = await images.variants(org.logo_url) if org.logo_url else []
    return replace(org, logo_small_url=found[0][0] if found else org.logo_url)


def forget() -> None:
    """Drop the snapshot (tests, and a settings change in this process)."""
    global _current, _checked_at
    _current = None
    _checked_at = float("-inf")


# -- checking and changing ----------------------------------------------------------------------


def _luminance(colour: str) -> float:
    """WCAG 2 relative luminance of #rrggbb."""

    def channel(hex_pair: str) -> float:
        c = int(hex_pair, 16) / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(colour[i : i + 2]) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(first: str, second: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours (1 to 21)."""
    a, b = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def colour(value: Any, field: str = "accent_colour") -> str:
    """A #rrggbb colour (lower case; #rgb and a missing # accepted) dark enough for AA: white
    text on it, and it as text on the page's backgrounds, at least MIN_CONTRAST:1."""
    if not isinstance(value, str) or not _COLOUR.match(value.strip()):
        raise validation.fail(field, "must be a colour written as # and six hexadecimal digits, such as #0b5cad")
    digits = value.strip().lstrip("#").lower()
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    chosen = f"#{digits}"
    worst = min(contrast(chosen, background) for background in PAGE_BACKGROUNDS)
    if worst < MIN_CONTRAST:
        raise validation.fail(
            field,
            f"is too light: links drawn in {chosen}, and white text on buttons of it, reach a contrast of only "
            f"{worst:.1f}:1, and at least {MIN_CONTRAST:g}:1 is needed to stay readable (WCAG AA). "
            "Choose a darker colour.",
        )
    return chosen


def logo(value: Any, field: str = "logo_url") -> str:
    """The /media/ path of a picture uploaded here (images.store), or an https:// address (the
    pages' Content-Security-Policy loads pictures from this site and https only)."""
    if isinstance(value, str) and _MEDIA.match(value.strip()):
        return value.strip()
    problem = "must be a picture uploaded here or an address starting with https://"
    if not isinstance(value, str) or not value.strip().lower().startswith("https://"):
        raise validation.fail(field, problem)
    try:
        return validation.url(value, field)
    except ValidationFailed:
        raise validation.fail(field, problem) from None


def postal_address(value: Any, field: str = "postal_address") -> str:
    found = validation.text({field: value}, field, max_len=ADDRESS_MAX, multiline=True) or ""
    lines = [line.strip() for line in found.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    lines = [line for line in lines if line]
    if len(lines) > ADDRESS_LINES:
        raise validation.fail(field, f"must be at most {ADDRESS_LINES} lines")
    return "\n".join(lines)


def check(fields: dict) -> dict:
    """The fields given (any of FIELDS; None or "" resets one to its default), cleaned; every
    bad field at once in one ValidationFailed."""
    clean: dict[str, str] = {}
    errors: dict[str, str] = {}
    unknown = [name for name in fields if name not in FIELDS]
    for name in unknown:
        errors[name] = "is not a setting"
    for name in FIELDS:
        if name not in fields:
            continue
        value = fields[name]
        if value is None or (isinstance(value, str) and not value.strip()):
            clean[name] = ""
            continue
        try:
            if not isinstance(value, str):
                raise validation.fail(name, "must be text")
            if name == "organisation_name":
                clean[name] = " ".join((validation.text(fields, name, max_len=NAME_MAX, multiline=False) or "").split())
            elif name == "logo_url":
                clean[name] = logo(value, name)
            elif name == "accent_colour":
                clean[name] = colour(value, name)
            elif name == "website":
                clean[name] = validation.url(value, name)
            elif name == "reply_to":
                clean[name] = validation.email(value, name)
            else:
                clean[name] = postal_address(value, name)
        except ValidationFailed as exc:
            errors.update(exc.fields)
    if errors:
        raise ValidationFailed(errors)
    return clean


def _shown(value: str) -> str:
    value = " / ".join(value.splitlines())
    return repr(value[:80] + ("…" if len(value) > 80 else "")) if value else "(default)"


async def stored() -> dict:
    """The values as stored ("" where the default applies), for the Settings form."""
    rows = await db.fetch(CURRENT_SQL)
    row = rows[0] if rows else {}
    return {name: row.get(name) or "" for name in FIELDS}


async def update(fields: dict, *, actor: int | None = None) -> Identity:
    """Check and store the fields given, grow `version`, record who changed what (audit), and
    make the result this process's snapshot. Nothing given, or nothing different: no change."""
    global _current, _checked_at
    clean = check(fields)

    async def work() -> Identity | None:
        await db.fetch(ENSURE_SQL, clock.now())
        rows = await db.fetch(CURRENT_SQL)
        before = {name: rows[0].get(name) or "" for name in FIELDS}
        changed = {name: value for name, value in clean.items() if before[name] != value}
        if not changed:
            return None
        sets = ", ".join(f"{name} = {{}}" for name in changed)
        done = await db.fetch(
            f"UPDATE org_settings SET {sets}, version = version + 1, updated_at = {{}} WHERE id = 1 "
            "RETURNING organisation_name, logo_url, accent_colour, website, reply_to, postal_address, version",
            *changed.values(),
            clock.now(),
        )
        summary = "; ".join(f"{LABELS[n]}: {_shown(before[n])} → {_shown(v)}" for n, v in changed.items())
        await audit.record(actor, "settings.change", "settings", 1, summary)
        return _from_row(done[0])

    result = await db.atomic(work)
    if result is not None:
        result = await _with_small_logo(result)
    if result is None:
        return await load()
    _current, _checked_at = result, time.monotonic()
    return result


class TemplateView:
    """The Jinja global `org`: each attribute read gives the current snapshot's value."""

    def __getattr__(self, name: str) -> object:
        return getattr(snapshot(), name)
