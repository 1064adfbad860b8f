"""Joining an event through the personal join link, and the attendance it records.

`join_phase()` is the one rule of the join window: "inactive" for a registration that holds no
seat or an event that was cancelled, "early" before the doors open (`doors_open_minutes` before
the start), "over" after the end, "no-link" while open but without a meeting link yet, and
"open" otherwise. Attendance is recorded only by `join()`, which the web calls from a POST that
the join page makes itself: link scanners fetch links by GET, and a GET must change nothing
(else a scanner reading the 1-hour reminder would earn the person a "thanks for attending").
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from .. import clock, db
from . import events, registrations

JoinPhase = Literal["inactive", "early", "open", "no-link", "over"]


def doors_open_at(event: dict) -> datetime:
    """When the join link starts taking people to the meeting."""
    return event["starts_at"] - timedelta(minutes=event["doors_open_minutes"])


def join_phase(reg: dict, event: dict, at: datetime | None = None) -> JoinPhase:
    """Where the join link takes `reg` at `at` (default now); see the module's docstring."""
    at = at or clock.now()
    if reg["status"] != "registered" or event["status"] == "cancelled":
        return "inactive"
    if at < doors_open_at(event):
        return "early"
    if at > event["ends_at"]:
        return "over"
    return "open" if event["join_url"] else "no-link"


async def record(reg_id: int, at: datetime | None = None) -> bool:
    """Record that `reg_id` joined, once: the first time counts and later ones change nothing.
    True when this call recorded it."""
    rows = await db.fetch(
        "UPDATE registration SET attended_at = {} WHERE id = {} AND attended_at IS NULL RETURNING id",
        at or clock.now(),
        reg_id,
    )
    return bool(rows)


async def opening(token: str) -> tuple[dict, dict, JoinPhase]:
    """(registration, event, phase) for a join token, changing nothing (the GET's view).
    NotFound for an unknown token, Conflict once the registration's details were deleted."""
    reg = await registrations.by_join_token(token)
    event = await events.get(reg["event"])
    return reg, event, join_phase(reg, event)


async def join(token: str) -> tuple[dict, dict, JoinPhase]:
    """The person asks to join (a POST): while the phase is "open" their attendance is recorded
    (once, however often they join) and the caller sends them to `event["join_url"]`; in any
    other phase nothing changes. Returns (registration, event, phase)."""
    moment = clock.now()
    reg, event, phase = await opening(token)
    if phase == "open":
        await record(reg["id"], moment)
    return reg, event, phase
