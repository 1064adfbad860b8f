"""What staff send to create or change an event, checked: `clean_fields` turns the API's (and
the editor's) fields into the columns to write, or raises ValidationFailed naming every bad field
at once (the editor shows each next to its field). Pure functions (no database);
domain/events.py calls them before writing.

The page's cover is an http(s) URL or a /media/ path of an image uploaded in the workspace, with
its alternative text; speakers (hosts and panelists) are at most MAX_SPEAKERS of {name, role,
bio, photo_url}, a bad one named by its place (`speakers[1].name`)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from . import questions
from . import validation as v
from .errors import ValidationFailed

# Caps on staff input where one slip would mass-mail people.
MAX_REMINDERS, MIN_REMINDER, MAX_REMINDER = 5, 5, 30 * 24 * 60  # minutes before the start
STATUSES = {"draft", "published"}
MAX_SPEAKERS = 12
SPEAKER_LIMITS = {"name": 200, "role": 200, "bio": 600}
# An uploaded image's address (domain/images.py stores it as /media/<digest>.<ext>).
MEDIA_PATH = re.compile(r"^/media/[A-Za-z0-9_-]{1,128}\.(?:jpg|jpeg|png|webp|gif)$")


def image_url(value: Any, field: str) -> str:
    """An image address: empty, an http(s) URL, or the /media/ path of an uploaded image."""
    if value is None or value == "":
        return ""
    if isinstance(value, str) and MEDIA_PATH.match(value.strip()):
        return value.strip()
    try:
        return v.url(value, field)
    except ValidationFailed:
        raise v.fail(field, "must be an http:// or https:// address, or an uploaded image") from None


def speakers(value: Any, field: str = "speakers") -> list[dict[str, str]]:
    """Hosts and speakers, in the order given: each a name (required), role, a short bio and a
    photo address. Every bad entry is named at once (`speakers[1].name`)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise v.fail(field, "must be a list of speakers")
    if len(value) > MAX_SPEAKERS:
        raise v.fail(field, f"at most {MAX_SPEAKERS} speakers")
    out: list[dict[str, str]] = []
    errors: dict[str, str] = {}
    for i, item in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(item, dict):
            errors[where] = "must be an object with a name"
            continue
        unknown = sorted(set(item) - {*SPEAKER_LIMITS, "photo_url"})
        if unknown:
            errors[f"{where}.{unknown[0]}"] = "is not a field of a speaker"
            continue
        person: dict[str, str] = {}
        for key, limit in SPEAKER_LIMITS.items():
            try:
                person[key] = v.text(item, key, required=key == "name", max_len=limit, multiline=key == "bio") or ""
            except ValidationFailed as exc:
                errors.update({f"{where}.{k}": r for k, r in exc.fields.items()})
        try:
            person["photo_url"] = image_url(item.get("photo_url"), "photo_url")
        except ValidationFailed as exc:
            errors.update({f"{where}.{k}": r for k, r in exc.fields.items()})
        out.append(person)
    if errors:
        raise ValidationFailed(errors)
    return out


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


KNOWN = {
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
    "cover_image_url",
    "cover_alt",
    "speakers",
    "show_registered_count",
}


def _status(value: Any) -> str:
    if not isinstance(value, str) or value not in STATUSES:
        raise v.fail("status", "must be 'draft' or 'published' (cancel with /cancel)")
    return value


def _text_or_empty(data: dict, field: str, limit: int) -> str:
    return v.text(data, field, max_len=limit) or ""


def _flag(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        return v.boolean(value, field)
    return value


def clean_fields(data: dict, current: dict | None = None) -> dict:
    """Check the given fields (all of them on create, any subset on change) and return the
    columns to write. Raises ValidationFailed naming every bad field (an unknown field alone)."""
    if not isinstance(data, dict):
        raise ValidationFailed({"body": "must be a JSON object"})
    creating = current is None
    current = current or {}
    unknown = sorted(set(data) - KNOWN)
    if unknown:
        raise v.fail(unknown[0], "is not a field of an event")
    out: dict[str, Any] = {}
    errors: dict[str, str] = {}

    def put(column: str, check: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            out[column] = check(*args, **kwargs)
        except ValidationFailed as exc:
            for k, reason in exc.fields.items():
                errors.setdefault(k, reason)

    if creating or "title" in data:
        put("title", lambda: v.text(data, "title", required=True, max_len=300))
    tz: str | None = current.get("timezone")
    if creating or "timezone" in data:
        put("timezone", lambda: v.zone(data.get("timezone")))
        tz = out.get("timezone")
    if tz is not None:
        for field in ("starts_at", "ends_at"):
            if creating or field in data:
                put(field, v.timestamp, data.get(field), field, tz)
        starts = out.get("starts_at") or current.get("starts_at")
        ends = out.get("ends_at") or current.get("ends_at")
        if starts is not None and ends is not None and ends <= starts and "ends_at" not in errors:
            errors["ends_at"] = "must be after starts_at"
        if "registration_closes_at" in data:
            value = data["registration_closes_at"]
            put(
                "registration_closes_at",
                lambda: None if value in (None, "") else v.timestamp(value, "registration_closes_at", tz),
            )
    if "slug" in data and data["slug"] not in (None, ""):
        put("slug", lambda: v.slug(data["slug"]))
    for field, limit in (("summary", 1000), ("description", 50_000), ("audience", 1000)):
        if field in data:
            put(field, _text_or_empty, data, field, limit)
    if "tags" in data:
        put("tags", lambda: json.dumps(v.string_list(data["tags"], "tags")))
    if "capacity" in data:
        put("capacity", lambda: v.optional_int(data["capacity"], "capacity", minimum=0))
    for field in ("join_url", "recording_url"):
        if field in data:
            put(field, v.url, data[field], field)
    if "questions" in data:
        put("questions", lambda: json.dumps(questions.clean_definitions(data["questions"])))
    if creating or "reminders" in data:
        put("reminders", lambda: json.dumps(_reminders(data.get("reminders"))))
    if "doors_open_minutes" in data:
        put(
            "doors_open_minutes",
            lambda: v.optional_int(data["doors_open_minutes"], "doors_open_minutes", maximum=24 * 60) or 0,
        )
    if "follow_up_minutes" in data:
        put(
            "follow_up_minutes",
            lambda: v.optional_int(data["follow_up_minutes"], "follow_up_minutes", maximum=14 * 24 * 60) or 0,
        )
    if "retention_days" in data:
        # Days after the event its registrants' personal data is kept; None: the default setting.
        put(
            "retention_days",
            lambda: v.optional_int(data["retention_days"], "retention_days", minimum=1, maximum=3650),
        )
    if "cover_image_url" in data:
        put("cover_image_url", lambda: image_url(data["cover_image_url"], "cover_image_url"))
    if "cover_alt" in data:
        put("cover_alt", lambda: v.text(data, "cover_alt", max_len=300, multiline=False) or "")
    if "speakers" in data:
        put("speakers", lambda: json.dumps(speakers(data["speakers"])))
    if "show_registered_count" in data:
        put("show_registered_count", lambda: _flag(data["show_registered_count"], "show_registered_count"))
    if "status" in data:
        put("status", lambda: _status(data["status"]))
    if errors:
        raise ValidationFailed(errors)
    return out
