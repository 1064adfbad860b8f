"""Field checks shared by every entry point (API, forms, CLI). Each returns the clean value or
raises `ValidationFailed` naming the field, so that messages read the same everywhere."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from .errors import ValidationFailed

SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# One address, no display name or comments: local@domain.tld, without spaces, angle brackets,
# quotes, commas or semicolons (which would let a value smuggle a second recipient into headers).
EMAIL_RE = re.compile(r"^[^@\s<>()\[\],;:\"\\]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")


def fail(field: str, reason: str) -> ValidationFailed:
    return ValidationFailed({field: reason})


def text(data: dict, field: str, *, required: bool = False, max_len: int = 10_000) -> str | None:
    value = data.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise fail(field, "is required")
        return None if value is None else ""
    if not isinstance(value, str):
        raise fail(field, "must be a string")
    value = value.strip()
    if len(value) > max_len:
        raise fail(field, f"must be at most {max_len} characters")
    return value


def email(value: Any, field: str = "email") -> str:
    if not isinstance(value, str) or not value.strip():
        raise fail(field, "is required")
    value = value.strip()
    if len(value) > 320 or not EMAIL_RE.match(value):
        raise fail(field, "must be an email address like name@example.org")
    local, _, domain = value.rpartition("@")
    # Domains are case-insensitive; local parts practically are too, and one seat per person
    # matters more than RFC 5321's letter.
    return f"{local}@{domain}".lower()


def zone(value: Any, field: str = "timezone") -> str:
    if not isinstance(value, str) or not value.strip():
        raise fail(field, "is required (an IANA name such as America/Toronto)")
    value = value.strip()
    if value not in _zones():
        raise fail(field, f"{value!r} is not an IANA time zone name such as America/Toronto")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise fail(field, f"{value!r} is not a known time zone") from None
    return value


_ZONES: set[str] | None = None


def _zones() -> set[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = available_timezones() | {"UTC"}
    return _ZONES


def timestamp(value: Any, field: str, tz: str | None) -> datetime:
    """An ISO 8601 time. With an offset it is taken as is; without one it is read in the
    event's own zone (what staff mean when they type 12:00). Returned in UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value.strip():
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise fail(field, "must be an ISO 8601 time such as 2022-11-29T12:00:00-05:00") from None
    else:
        raise fail(field, "is required (ISO 8601, e.g. 2022-11-29T12:00:00-05:00)")
    if moment.tzinfo is None:
        if tz is None:
            raise fail(field, "needs an offset, or a valid timezone to read it in")
        moment = moment.replace(tzinfo=ZoneInfo(tz))
    return moment.astimezone(timezone.utc)


def optional_int(value: Any, field: str, *, minimum: int = 0, maximum: int = 1_000_000) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise fail(field, "must be a whole number or null")
    try:
        number = int(value)
    except ValueError:
        raise fail(field, "must be a whole number") from None
    if not minimum <= number <= maximum:
        raise fail(field, f"must be between {minimum} and {maximum}")
    return number


def url(value: Any, field: str) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not re.match(r"^https?://[^\s/$.?#].[^\s]*$", value.strip()):
        raise fail(field, "must be an http:// or https:// address")
    return value.strip()


def slug(value: Any, field: str = "slug") -> str:
    if not isinstance(value, str) or not SLUG_RE.match(value) or len(value) > 120:
        raise fail(field, "must be lower-case letters, digits and single hyphens, e.g. career-webinar")
    return value


def slugify(title: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return base[:80].rstrip("-") or "event"


def string_list(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise fail(field, "must be a list of strings")
    return [v.strip().lower() for v in value if v.strip()]


def boolean(value: Any, field: str) -> bool:
    if value in (None, "", False, "false", "off", "0", 0, "no"):
        return False
    if value in (True, "true", "on", "1", 1, "yes"):
        return True
    raise fail(field, "must be true or false")
