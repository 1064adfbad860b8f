"""A registration's links and calendar identity: the personal (/r/) and join (/j/) tokens, the
lookups by token, and the calendar UID its invites carry. Tokens are derived (HMAC of the row id
and a stored salt, tokens.py), never stored; each serves one purpose. Every use of a link ends
at `by_token` or `by_join_token`, which refuse a registration whose details were deleted after
the event (domain/retention.py)."""

from __future__ import annotations

from uuid import uuid4

from .. import db, settings, tokens
from ..clock import now
from ..timefmt import format_range
from . import outbox, retention
from .errors import Conflict, NotFound

PURPOSE = "registration"
JOIN_PURPOSE = "join"


def personal_token(row: dict) -> str:
    """The token in the registrant's `/r/` link (derived, never stored)."""
    return tokens.link(settings.get().secret_key, PURPOSE, row["id"], row["token_salt"])


def join_token(row: dict) -> str:
    """The token in the registrant's `/j/` join link: another purpose, another token."""
    return tokens.link(settings.get().secret_key, JOIN_PURPOSE, row["id"], row["token_salt"])


def new_calendar_uid(random_hex: str | None = None) -> str:
    """A calendar UID (RFC 5545 3.8.4.7) for a new registration or event: random, so that no
    other database or installation behind the same address ever makes it again. `random_hex`:
    a random UUID's hex already drawn (tokens.new_salt_and_uuid), else a new uuid4's."""
    return f"{random_hex or uuid4().hex}@{settings.get().host}"[:64]


async def calendar_uid(table: str, row: dict) -> str:
    """The stored calendar UID of `row` (a registration or event, `table` one of those names).

    A row from before UIDs were stored has "": it gets one the first time one is needed, once
    however many ask at the same moment (a conditional UPDATE, then the stored value is read).
    That value is the UID its invites (or public .ics) already carried, `reg-<id>@<host>` or
    `event-<id>@<host>`, so the entries people already hold keep following changes; every row
    made since has a random one (new_calendar_uid). Sets row["calendar_uid"]."""
    if row.get("calendar_uid"):
        return row["calendar_uid"]
    if table not in ("registration", "event"):
        raise ValueError(f"no calendar UID for {table!r}")
    legacy = f"{'reg' if table == 'registration' else 'event'}-{row['id']}@{settings.get().host}"[:64]
    await db.fetch(f"UPDATE {table} SET calendar_uid = {{}} WHERE id = {{}} AND calendar_uid = ''", legacy, row["id"])
    rows = await db.fetch(f"SELECT calendar_uid FROM {table} WHERE id = {{}}", row["id"])
    row["calendar_uid"] = rows[0]["calendar_uid"] if rows else legacy
    return row["calendar_uid"]


async def _by_link(token: str, purpose: str, message: str) -> dict:
    row_id = tokens.link_row_id(token)
    rows = await db.fetch("SELECT * FROM registration WHERE id = {}", row_id) if row_id else []
    if not rows or not tokens.link_matches(token, settings.get().secret_key, purpose, row_id, rows[0]["token_salt"]):
        raise NotFound(message)
    if retention.is_purged(rows[0]):  # every use of the link (page, .ics, join, cancel) ends here
        raise Conflict("This registration's details were deleted after the event.", "purged")
    return rows[0]


async def by_token(token: str) -> dict:
    """The full registration row for a personal (/r/) token, or NotFound."""
    return await _by_link(token, PURPOSE, "This link is not valid. It may have been mistyped or the event removed.")


async def by_join_token(token: str) -> dict:
    """The full registration row for a join (/j/) token, or NotFound."""
    return await _by_link(token, JOIN_PURPOSE, "This join link is not valid.")


# "Email me my registration link" -------------------------------------------------------------

LINKS_KIND = "registration_links"
# A registration whose link is worth sending: active (a seat or a waitlist place) for a published
# event that has not ended. Emails are stored lower-cased (validation.email).
_ACTIVE_SQL = (
    "SELECT r.id, r.name, r.status, r.token_salt, e.title, e.starts_at, e.ends_at, e.timezone "
    "FROM registration r JOIN event e ON e.id = r.event "
    "WHERE r.email = {} AND r.status IN ('registered', 'waitlisted') AND e.status = 'published' "
    "AND e.ends_at > {} ORDER BY e.starts_at, r.id"
)


async def send_links(email: str) -> None:
    """Queue one email to `email` listing the personal link of each of its active, upcoming
    registrations; nothing when there is none. Returns nothing on purpose: the web layer answers
    the same way whatever was found, and the work (one query) is the same for any address."""
    rows = await db.fetch(_ACTIVE_SQL, email.lower(), now())
    if rows:
        await outbox.enqueue(LINKS_KIND, email.lower(), {"registration_ids": [r["id"] for r in rows]})


async def link_items(registration_ids: list, email: str) -> list[dict]:
    """What the links email lists, read at send time: for each of `registration_ids` that still
    belongs to `email` and is still active and upcoming, {name, title, when (in the event's zone,
    with the zone), status, url}. [] when none is left (the message is then not worth sending)."""
    wanted = {i for i in registration_ids if isinstance(i, int)}
    base = settings.get().base_url.rstrip("/")
    return [
        {
            "name": r["name"],
            "title": r["title"],
            "when": format_range(r["starts_at"], r["ends_at"], r["timezone"]),
            "status": r["status"],
            "url": f"{base}/r/{personal_token(r)}",
        }
        for r in await db.fetch(_ACTIVE_SQL, (email or "").lower(), now())
        if r["id"] in wanted
    ]
