"""The event editor's form, both ways: an event to form values, and posted fields to the data
`domain/events.py` takes (the same shape as the JSON API).

Times are `datetime-local` fields read in the event's own zone, which is what staff mean when
they type 12:00. Questions are numbered rows (`q-0-label`, `q-0-type`, ...) with one blank row
to fill in, so the builder works without JavaScript: "Add another question" re-shows the form
with one more blank row, and a ticked "Remove" drops a row on saving.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from ... import timefmt
from ...domain import questions

QUESTION_TYPES = [
    ("text", "Short text"),
    ("single", "One choice"),
    ("multiple", "Several choices"),
    ("yesno", "Yes or no"),
]
# Reminder offsets offered as boxes; any other number of minutes goes in the free field.
REMINDER_CHOICES = [(10080, "1 week before"), (1440, "1 day before"), (60, "1 hour before"), (15, "15 minutes before")]
COMMON_ZONES = [
    "America/Toronto",
    "America/Vancouver",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Europe/London",
    "Europe/Paris",
    "Europe/Berlin",
    "Africa/Nairobi",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Australia/Sydney",
    "UTC",
]
MAX_QUESTIONS = questions.MAX_QUESTIONS  # rows the builder reads back: no more than the domain takes


@lru_cache(maxsize=1)
def all_zones() -> list[str]:
    return sorted(z for z in available_timezones() | {"UTC"} if "/" in z or z == "UTC")


def local_input(moment: datetime | None, tz: str) -> str:
    """A `datetime-local` value in zone `tz` (seconds only when there are some, so that saving an
    untouched form changes nothing)."""
    if moment is None:
        return ""
    local = timefmt.in_zone(moment, ZoneInfo(tz))
    return local.strftime("%Y-%m-%dT%H:%M:%S" if local.second else "%Y-%m-%dT%H:%M")


def values_of(event: dict) -> dict[str, Any]:
    """Form values for an existing event."""
    tz = event["timezone"]
    reminders = list(event["reminders"])
    offered = {m for m, _ in REMINDER_CHOICES}
    return {
        "title": event["title"],
        "slug": event["slug"],
        "summary": event["summary"],
        "description": event["description"],
        "audience": event["audience"],
        "tags": ", ".join(event["tags"]),
        "timezone": tz,
        "starts_at": local_input(event["starts_at"], tz),
        "ends_at": local_input(event["ends_at"], tz),
        "registration_closes_at": local_input(event["registration_closes_at"], tz),
        "capacity": "" if event["capacity"] is None else str(event["capacity"]),
        "join_url": event["join_url"],
        "recording_url": event["recording_url"],
        "doors_open_minutes": str(event["doors_open_minutes"]),
        "follow_up_minutes": str(event["follow_up_minutes"]),
        "reminders": [m for m in reminders if m in offered],
        "reminder_other": ", ".join(str(m) for m in reminders if m not in offered),
        "questions": [dict(q, options="\n".join(q["options"])) for q in event["questions"]],
        "retention_days": "" if event.get("retention_days") is None else str(event["retention_days"]),
    }


def blank_values() -> dict[str, Any]:
    return {
        "title": "",
        "slug": "",
        "summary": "",
        "description": "",
        "audience": "",
        "tags": "",
        "timezone": "America/Toronto",
        "starts_at": "",
        "ends_at": "",
        "registration_closes_at": "",
        "capacity": "",
        "join_url": "",
        "recording_url": "",
        "doors_open_minutes": "15",
        "follow_up_minutes": "120",
        "reminders": [1440, 60],
        "reminder_other": "",
        "questions": [],
        "retention_days": "",
    }


def _text(form: Any, name: str) -> str:
    value = form.get(name)
    # Browsers send textarea line breaks as CRLF; stored text uses LF.
    return value.replace("\r\n", "\n").strip() if isinstance(value, str) else ""


def posted_values(form: Any, keep_blank: bool = False) -> dict[str, Any]:
    """What was typed, to show the form again (after an error, or with `keep_blank` for "add
    another question": the page always adds one blank row after the rows it is given)."""
    values: dict[str, Any] = {k: _text(form, k) for k in blank_values() if k not in ("reminders", "questions")}
    values["reminders"] = [int(m) for m in form.getall("reminders", []) if str(m).isdigit()]
    values["questions"] = _question_rows(form, keep_blank=keep_blank)
    return values


def _question_rows(form: Any, keep_blank: bool = False) -> list[dict]:
    try:
        count = min(int(form.get("question_count") or 0), MAX_QUESTIONS)
    except ValueError:
        count = 0
    rows = []
    for i in range(count):
        p = f"q-{i}-"
        row = {
            "label": _text(form, p + "label"),
            "key": _text(form, p + "key"),
            "type": _text(form, p + "type") or "text",
            "required": form.get(p + "required") == "yes",
            "options": _text(form, p + "options"),
            "remove": form.get(p + "remove") == "yes",
        }
        if row["remove"] or (not keep_blank and not row["label"] and not row["options"]):
            continue
        rows.append(row)
    return rows


def to_data(form: Any) -> dict[str, Any]:
    """The posted form as `events.create`/`events.update` data. Empty optional fields mean
    "none" (no capacity limit, no closing time)."""
    data: dict[str, Any] = {
        k: _text(form, k)
        for k in (
            "title",
            "summary",
            "description",
            "audience",
            "timezone",
            "starts_at",
            "ends_at",
            "join_url",
            "recording_url",
        )
    }
    if _text(form, "slug"):
        data["slug"] = _text(form, "slug")
    data["tags"] = [t for t in (x.strip() for x in _text(form, "tags").split(",")) if t]
    data["capacity"] = _text(form, "capacity") or None
    data["registration_closes_at"] = _text(form, "registration_closes_at") or None
    for field in ("doors_open_minutes", "follow_up_minutes"):
        data[field] = _text(form, field) or 0
    # Days after the event until registrants' details are deleted; empty: the installation's
    # default; a bad value goes on as typed, for the domain to name. A form without the field
    # (a page opened before the field existed) leaves the figure as it is.
    if form.get("retention_days") is not None:
        days = _text(form, "retention_days")
        data["retention_days"] = (int(days) if days.isascii() and days.isdigit() else days) if days else None
    reminders: list[Any] = [int(m) for m in form.getall("reminders", []) if str(m).isdigit()]
    for part in _text(form, "reminder_other").replace(";", ",").split(","):
        part = part.strip()
        if part:
            reminders.append(int(part) if part.isdigit() else part)  # a bad value is reported by the domain
    data["reminders"] = reminders
    data["questions"] = [
        {
            **({"key": q["key"]} if q["key"] else {}),
            "label": q["label"],
            "type": q["type"],
            "required": q["required"],
            "options": [o.strip() for o in q["options"].split("\n") if o.strip()],
        }
        for q in _question_rows(form)
    ]
    return data
