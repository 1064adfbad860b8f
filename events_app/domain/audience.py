"""Who receives list mail (an issue, an announcement): paused and suppressed, each defined once.

It is decided once, for the release's
audience (domain/mailings.py, in SQL) and again at send time (mail/bulk.py): a confirmed
subscriber with an address, not suppressed and not paused.
- Paused (`is_paused`): `paused_until` is still ahead; the pause ends at that instant. Pages and
  emails show the date only while it holds (`paused_until_shown`).
- Suppressed (`is_suppressed`): `bounced_at` is set, by a permanent refusal (5xx at sending, or a
  hard bounce report), or by SOFT_BOUNCE_LIMIT temporary failures in a row (`count_soft_bounce`).
  Transactional mail (a confirmation, a registration) still goes. A working link from one of our
  emails (confirming, saving preferences) or staff retrying with `include_bounced` lifts the mark
  and restarts the count (`LIFT_BOUNCE`). A spam complaint unsubscribes (status), so it needs no
  test of its own.
"""

from __future__ import annotations

from datetime import datetime

from .. import db
from ..clock import now

SOFT_BOUNCE_LIMIT = 5  # temporary failures in a row that suppress an address
# The SET clause that lifts a bounce mark and restarts the count of temporary failures.
LIFT_BOUNCE = "bounced_at = NULL, bounce_reason = '', soft_bounces = 0"


def is_paused(paused_until: datetime | None, at: datetime | None = None) -> bool:
    """Whether a subscriber whose pause runs to `paused_until` is paused at `at` (default now):
    while that time is still ahead. None: not paused."""
    return paused_until is not None and paused_until > (at or now())


def paused_until_shown(row: dict, at: datetime | None = None) -> datetime | None:
    """The end of the subscriber's pause as pages and emails show it; None once it has passed."""
    value = row.get("paused_until")
    return value if is_paused(value, at) else None


def paused_sql(column: str = "s.paused_until") -> str:
    """SQL true while paused at the moment given as its one `{}` parameter (as `is_paused`)."""
    return f"({column} IS NOT NULL AND {column} > {{}})"


def not_paused_sql(column: str = "s.paused_until") -> str:
    """SQL true when not paused at the moment given as its one `{}` parameter."""
    return f"({column} IS NULL OR {column} <= {{}})"


def is_suppressed(row: dict) -> bool:
    """Whether list mail must leave this subscriber's address out: its server refused it for good
    (or SOFT_BOUNCE_LIMIT times in a row for a while). Transactional mail still goes."""
    return row.get("bounced_at") is not None


def suppressed_sql(alias: str = "s") -> str:
    """SQL on a subscriber row `alias`: true when suppressed (as `is_suppressed`)."""
    return f"{alias}.bounced_at IS NOT NULL"


def not_suppressed_sql(alias: str = "s") -> str:
    return f"{alias}.bounced_at IS NULL"


def bulk_refusal(subscriber: dict | None, at: datetime | None = None) -> str | None:
    """Why list mail released earlier must not go to this subscriber at `at` (default now), or
    None when it goes: the subscriber erased their data, is no longer confirmed, is suppressed or
    paused. The audience at release (domain/mailings.py) applies the same rules in SQL."""
    if subscriber is None or subscriber["status"] == "erased" or not subscriber.get("email"):
        return "the subscriber erased their data"
    if subscriber["status"] != "confirmed":
        return f"the subscriber is {subscriber['status']} since the release"
    if is_suppressed(subscriber):
        return "the address was refused for good by its mail server"
    if is_paused(subscriber.get("paused_until"), at):
        return "the subscriber paused their mail since the release"
    return None


async def suppress(address: str, reason: str) -> None:
    """The address was refused for good (a 5xx at sending, a hard bounce report, or too many
    temporary failures): no more list mail to it. The subscriber is marked, not removed; staff see
    the reason. Only the first mark is kept."""
    if address:
        await db.fetch(
            "UPDATE subscriber SET bounced_at = {}, bounce_reason = {} WHERE email = {} AND bounced_at IS NULL",
            now(),
            reason[:2000],
            address.lower(),
        )


async def count_soft_bounce(address: str, reason: str) -> int | None:
    """Count one temporary failure reported for `address` (a subscriber's); at SOFT_BOUNCE_LIMIT in
    a row the address is suppressed. Returns the count, or None when no subscriber has it."""
    if not address:
        return None
    rows = await db.fetch(
        "UPDATE subscriber SET soft_bounces = soft_bounces + 1 WHERE email = {} RETURNING soft_bounces",
        address.lower(),
    )
    if not rows:
        return None
    count = rows[0]["soft_bounces"]
    if count >= SOFT_BOUNCE_LIMIT:
        await suppress(address, f"{count} temporary failures; last: {reason}")
    return count
