"""What staff send to create or change an event, checked: `clean_fields` turns the API's (and
the editor's) fields into the columns to write, or raises ValidationFailed naming the first bad
field. Pure functions (no database); domain/events.py calls them before writing."""

from __future__ import annotations

import json
from typing import Any

from . import questions
from . import validation as v
from .errors import ValidationFailed

# Caps on staff input where one slip would mass-mail people.
MAX_REMINDERS, MIN_REMINDER, MAX_REMINDER = 5, 5, 30 * 24 * 60  # minutes before the start
STATUSES = {"draft", "published"}


def _reminders(value: Any) -> list[int]:
    """At most MAX_REMINDERS distinct offsets, each MIN_REMINDER minutes to 30 days before the
    start, latest first. A slip here emails every registrant once per offset."""
    if value is None:
        return [1440, 60]
    if not isinstance(value, list) or not all(isinstance(m, int) and not isinstance(m, bool) for m in value):
        raise v.fail("reminders", "must be a list of minutes before the start, e.g. [1440, 60]")
    offsets = sorted(set(value), reverse=True)
    if len(offsets) > MAX_REMINDERS:
        raise v.fail("reminders", f"at most {MAX_REMINDERS} reminders")
    if any(not MIN_REMINDER <= m <= MAX_REMINDER for m in offsets):
        raise v.fail(
            "reminders", f"each must be between {MIN_REMINDER} and {MAX_REMINDER} minutes (30 days) before the start"
        )
    return offsets


def clean_fields(data: dict, current: dict | None = None) -> dict:
    """Check the given fields (all of them on create, any subset on change) and return the
    columns to write. Raises ValidationFailed naming the first bad field."""
    if not isinstance(data, dict):
        raise ValidationFailed({"body": "must be a JSON object"})
    creating = current is None
    current = current or {}
    known = {
        "title",
        "slug",
        "summary",
        "description",
        "audience",
        "tags",
        "starts_at",
        "ends_at",
        "timezone",
        "capacity",
        "join_url",
        "registration_closes_at",
        "questions",
        "reminders",
        "recording_url",
        "status",
        "doors_open_minutes",
        "follow_up_minutes",
        "retention_days",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise v.fail(unknown[0], "is not a field of an event")
    out: dict[str, Any] = {}
    if creating or "title" in data:
        out["title"] = v.text(data, "title", required=True, max_len=300)
    tz = v.zone(data["timezone"]) if (creating or "timezone" in data) else current["timezone"]
    if creating or "timezone" in data:
        out["timezone"] = tz
    for field in ("starts_at", "ends_at"):
        if creating or field in data:
            out[field] = v.timestamp(data.get(field), field, tz)
    starts = out.get("starts_at") or current["starts_at"]
    ends = out.get("ends_at") or current["ends_at"]
    if ends <= starts:
        raise v.fail("ends_at", "must be after starts_at")
    if "slug" in data and data["slug"] not in (None, ""):
        out["slug"] = v.slug(data["slug"])
    for field, limit in (("summary", 1000), ("description", 50_000), ("audience", 1000)):
        if field in data:
            out[field] = v.text(data, field, max_len=limit) or ""
    if "tags" in data:
        out["tags"] = json.dumps(v.string_list(data["tags"], "tags"))
    if "capacity" in data:
        out["capacity"] = v.optional_int(data["capacity"], "capacity", minimum=0)
    for field in ("join_url", "recording_url"):
        if field in data:
            out[field] = v.url(data[field], field)
    if "registration_closes_at" in data:
        value = data["registration_closes_at"]
        out["registration_closes_at"] = (
            None if value in (None, "") else v.timestamp(value, "registration_closes_at", tz)
        )
    if "questions" in data:
        out["questions"] = json.dumps(questions.clean_definitions(data["questions"]))
    if creating or "reminders" in data:
        out["reminders"] = json.dumps(_reminders(data.get("reminders")))
    if "doors_open_minutes" in data:
        out["doors_open_minutes"] = (
            v.optional_int(data["doors_open_minutes"], "doors_open_minutes", maximum=24 * 60) or 0
        )
    if "follow_up_minutes" in data:
        out["follow_up_minutes"] = (
            v.optional_int(data["follow_up_minutes"], "follow_up_minutes", maximum=14 * 24 * 60) or 0
        )
    if "retention_days" in data:
        # Days after the event its registrants' personal data is kept; None: the default setting.
        out["retention_days"] = v.optional_int(data["retention_days"], "retention_days", minimum=1, maximum=3650)
    if "status" in data:
        if not isinstance(data["status"], str) or data["status"] not in STATUSES:
            raise v.fail("status", "must be 'draft' or 'published' (cancel with /cancel)")
        out["status"] = data["status"]
    return out
