"""The event editor's form, both ways: an event to form values, and posted fields to the data
`domain/events.py` takes (the same shape as the JSON API).

Times are `datetime-local` fields read in the event's own zone, which is what staff mean when
they type 12:00. Questions are numbered rows (`q-0-label`, `q-0-type`, ...) with one blank row
to fill in, so the builder works without JavaScript: "Add another question" re-shows the form
with one more blank row, and a ticked "Remove" drops a row on saving. Speakers are numbered
rows the same way (`s-0-name`, `s-0-role`, `s-0-bio`, `s-0-photo_url`), the existing ones and
SPEAKER_BLANKS empty ones; an empty row is no speaker.

The time-zone list is the common zones first, then every canonical IANA name (tzdata's zones,
not its links such as US/Eastern). Errors are shown with the field's label in plain words
(`LABELS`, `plain_errors`), never the field's name.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
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
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Vancouver",
    "America/Halifax",
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


SPEAKER_BLANKS = 3  # empty speaker rows offered below the existing ones
MAX_SPEAKERS = 12


def _tzdata_zi() -> str:
    """tzdata's compact source (Z lines are zones, L lines links), from the tzdata package or
    the system's zoneinfo; "" when neither has it."""
    try:
        return resources.files("tzdata").joinpath("zoneinfo/tzdata.zi").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        pass
    for folder in ("/usr/share/zoneinfo", "/usr/lib/zoneinfo"):
        path = Path(folder) / "tzdata.zi"
        if path.exists():
            return path.read_text(encoding="utf-8")
    return ""


@lru_cache(maxsize=1)
def all_zones() -> list[str]:
    """Every canonical IANA zone name (Area/Location, not the links kept for old names such as
    US/Eastern or Asia/Calcutta), and UTC."""
    source = _tzdata_zi()
    zones = {line.split()[1] for line in source.splitlines() if line.startswith("Z ")}
    known = available_timezones()
    if zones:
        canonical = {z for z in zones if "/" in z and not z.startswith("Etc/") and z in known}
    else:  # no tzdata source: the names with an area, without the old country links
        canonical = {z for z in known if "/" in z and z.split("/")[0] not in _LINK_AREAS}
    return sorted(canonical | {"UTC"})


_LINK_AREAS = {"US", "Canada", "Mexico", "Brazil", "Chile", "Etc", "SystemV"}

# What staff read for a field, in place of its name (the error summary, and each message).
LABELS = {
    "title": "Title",
    "slug": "Address of the page",
    "tags": "Tags",
    "summary": "Summary",
    "audience": "Who it is for",
    "description": "Description",
    "timezone": "Time zone",
    "starts_at": "Starts",
    "ends_at": "Ends",
    "registration_closes_at": "Registration closes",
    "capacity": "Seats",
    "doors_open_minutes": "Join link opens",
    "join_url": "Meeting link",
    "recording_url": "Recording or resources link",
    "follow_up_minutes": "Follow-up goes",
    "reminders": "Reminders",
    "questions": "Questions",
    "retention_days": "Days registrants' details are kept",
    "cover_image_url": "Cover picture",
    "cover_alt": "Description of the cover picture",
    "speakers": "Speakers",
    "show_registered_count": "Show the number registered",
    "status": "Status",
    "event": "Event",
}
_SUB_LABELS = {
    "name": "name",
    "role": "role",
    "bio": "short bio",
    "photo_url": "photo",
    "label": "question",
    "type": "answer type",
    "key": "column",
    "options": "choices",
}
# Field names that some reasons mention, in words.
_IN_WORDS = {
    "starts_at": "the start",
    "ends_at": "the end",
    "registration_closes_at": "the closing time",
    "join_url": "the meeting link",
}


def label_of(field: str) -> str:
    """'speakers[1].name' -> 'Speaker 2: name'; 'questions[0].options' -> 'Question 1: choices'."""
    found = re.match(r"^(speakers|questions)\[(\d+)\](?:\.(\w+))?$", field)
    if found:
        kind = "Speaker" if found.group(1) == "speakers" else "Question"
        head = f"{kind} {int(found.group(2)) + 1}"
        sub = found.group(3)
        return f"{head}: {_SUB_LABELS.get(sub, sub)}" if sub else head
    if field.startswith("answers."):
        return field.split(".", 1)[1]
    return LABELS.get(field, field.replace("_", " ").capitalize())


def plain_errors(errors: dict[str, str]) -> dict[str, str]:
    """The domain's reasons with any field name in them said in words ("must be after the start")."""
    out = {}
    for field, reason in errors.items():
        for name, words in _IN_WORDS.items():
            reason = re.sub(rf"\b{name}\b", words, reason)
        out[field] = reason
    return out


def field_id(field: str) -> str:
    """The id of the input an error belongs to, for the summary's links."""
    found = re.match(r"^(speakers|questions)\[(\d+)\](?:\.(\w+))?$", field)
    if found:
        prefix = "s" if found.group(1) == "speakers" else "q"
        return f"{prefix}-{found.group(2)}-{found.group(3) or ('name' if prefix == 's' else 'label')}"
    return {"reminders": "reminder_other", "cover_image_url": "cover_file"}.get(field, field)


def zone_choices(current: str) -> tuple[list[str], list[str]]:
    """(common zones, every other canonical zone), with `current` kept among them even when it
    is an old link name stored before (so saving does not change it)."""
    rest = [z for z in all_zones() if z not in COMMON_ZONES]
    if current and current not in COMMON_ZONES and current not in rest:
        rest = sorted([*rest, current])
    return COMMON_ZONES, rest


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
        "cover_image_url": event.get("cover_image_url") or "",
        "cover_alt": event.get("cover_alt") or "",
        "speakers": [dict(p) for p in event.get("speakers") or []],
        "show_registered_count": bool(event.get("show_registered_count")),
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
        "cover_image_url": "",
        "cover_alt": "",
        "speakers": [],
        "show_registered_count": False,
    }


def _text(form: Any, name: str) -> str:
    value = form.get(name)
    # Browsers send textarea line breaks as CRLF; stored text uses LF.
    return value.replace("\r\n", "\n").strip() if isinstance(value, str) else ""


def posted_values(form: Any, keep_blank: bool = False) -> dict[str, Any]:
    """What was typed, to show the form again (after an error, or with `keep_blank` for "add
    another question": the page always adds one blank row after the rows it is given)."""
    lists = ("reminders", "questions", "speakers", "show_registered_count")
    values: dict[str, Any] = {k: _text(form, k) for k in blank_values() if k not in lists}
    values["reminders"] = [int(m) for m in form.getall("reminders", []) if str(m).isdigit()]
    values["questions"] = _question_rows(form, keep_blank=keep_blank)
    # Rows as typed, blank ones dropped as to_data drops them, so that an error about
    # "speakers[1]" stays next to the row it is about (the page adds its blank rows after them).
    values["speakers"] = _speaker_rows(form)
    values["show_registered_count"] = form.get("show_registered_count") == "yes"
    return values


def _speaker_rows(form: Any, keep_blank: bool = False) -> list[dict[str, str]]:
    return [row for _, row in speaker_rows_at(form, keep_blank=keep_blank)]


def _has_file(form: Any, name: str) -> bool:
    upload = form.get(name)
    return bool(getattr(upload, "filename", None))


def speaker_rows_at(form: Any, keep_blank: bool = False) -> list[tuple[int, dict[str, str]]]:
    """(row number in the form, speaker) for each speaker kept: removed rows and empty ones (no
    text and no photo chosen) are left out, so the list's positions are the data's."""
    try:
        count = min(int(form.get("speaker_count") or 0), MAX_SPEAKERS + SPEAKER_BLANKS)
    except ValueError:
        count = 0
    rows = []
    for i in range(count):
        p = f"s-{i}-"
        row = {k: _text(form, p + k) for k in ("name", "role", "bio", "photo_url")}
        empty = not any(row.values()) and not _has_file(form, p + "photo_file")
        if form.get(p + "remove") == "yes" or (not keep_blank and empty):
            continue
        rows.append((i, row))
    return rows


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
    if form.get("speaker_count") is not None:  # a page opened before the field existed leaves them
        data["speakers"] = _speaker_rows(form)
        data["cover_image_url"] = _text(form, "cover_image_url")
        data["cover_alt"] = _text(form, "cover_alt")
        data["show_registered_count"] = form.get("show_registered_count") == "yes"
        if form.get("remove_cover") == "yes":
            data["cover_image_url"] = ""
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


def _shown(field: str, value: Any, tz: str) -> str:
    """A column's value as staff read it on the confirmation page."""
    import json

    if value is None or value == "":
        return "(none)"
    if isinstance(value, datetime):
        return timefmt.format_time(value, tz)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if field in ("speakers", "questions", "tags", "reminders") and isinstance(value, str):
        value = json.loads(value)
    if field == "speakers":
        return "; ".join(p["name"] + (f" ({p['role']})" if p.get("role") else "") for p in value) or "(none)"
    if field == "questions":
        return "; ".join(q["label"] for q in value) or "(none)"
    if field == "reminders":
        return ", ".join(f"{m} minutes before" for m in value) or "(none)"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    text = str(value)
    return text if len(text) <= 200 else text[:199] + "…"


def describe_changes(current: dict, cleaned: dict, changed: list[str]) -> list[dict[str, str]]:
    """For each changed field: its label and the old and new values, times in their zones."""
    old_tz = current["timezone"]
    new_tz = cleaned.get("timezone", old_tz)
    rows = []
    for field in changed:
        rows.append(
            {
                "field": field,
                "label": LABELS.get(field, field),
                "old": _shown(field, current.get(field), old_tz),
                "new": _shown(field, cleaned.get(field), new_tz),
            }
        )
    return rows
