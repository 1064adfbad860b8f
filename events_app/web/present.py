"""How events and registrations look to each audience: JSON for the API, context for pages."""

from __future__ import annotations

from typing import Any

from .. import settings
from ..domain.events import seats_left
from ..domain.events import state as event_state
from ..markdown import to_html
from ..timefmt import format_range, iso

PUBLIC_FIELDS = (
    "id",
    "slug",
    "title",
    "summary",
    "description",
    "audience",
    "tags",
    "timezone",
    "capacity",
    "questions",
    "reminders",
    "recording_url",
    "status",
    "version",
    "doors_open_minutes",
    "follow_up_minutes",
)


def event_json(event: dict, *, staff: bool = False, counts: dict | None = None) -> dict[str, Any]:
    """The API shape of an event. `join_url` only for staff."""
    out: dict[str, Any] = {k: event[k] for k in PUBLIC_FIELDS}
    for k in ("starts_at", "ends_at", "registration_closes_at", "created_at", "updated_at"):
        out[k] = iso(event.get(k))
    out["seats_left"] = seats_left(event)
    out["registered"] = event["taken"]
    out["url"] = f"{settings.get().base_url}/events/{event['slug']}"
    out["when"] = format_range(event["starts_at"], event["ends_at"], event["timezone"])
    if staff:
        out["join_url"] = event["join_url"]
        # Days after the event its registrants' personal data is kept; None: the installation's
        # default (EVENTS_RETENTION_DAYS).
        out["retention_days"] = event.get("retention_days")
        if counts is not None:
            out.update(counts)
    return out


def registration_json(reg: dict) -> dict[str, Any]:
    out = dict(reg)
    for k in ("created_at", "cancelled_at", "promoted_at", "attended_at"):
        if k in out:
            out[k] = iso(out[k])
    return out


def event_page(event: dict) -> dict[str, Any]:
    """Template context for one event: times in its zone, rendered description, state."""
    state = event_state(event)  # the domain's one decision (domain/events.py)
    seats = seats_left(event)
    return {
        "event": event,
        "when": format_range(event["starts_at"], event["ends_at"], event["timezone"]),
        "starts_iso": event["starts_at"].isoformat(),
        "ends_iso": event["ends_at"].isoformat(),
        "utc_when": format_range(event["starts_at"], event["ends_at"], "UTC"),
        "description_html": to_html(event["description"]),
        "state": state,
        "seats_left": seats,
        "full": seats == 0,
    }
