"""Field checks shared by every entry point (API, forms, CLI). Each returns the clean value or
raises `ValidationFailed` naming the field, so that messages read the same everywhere.

Text that reaches the database holds no control characters (NUL breaks PostgreSQL, the rest
breaks mail headers, calendars and terminals) and no lone surrogates (they cannot be encoded as
UTF-8). Names, titles and labels are one line; long-form fields (descriptions, bodies, answers)
may hold tabs and line breaks. Times fall in the years 1970 to 2100.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from ..tables import MAX_ID  # noqa: F401  (the one id range; the web edge checks ids against it)
from .errors import ValidationFailed

SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# One address, no display name or comments: local@domain.tld, without spaces, angle brackets,
# quotes, commas or semicolons (which would let a value smuggle a second recipient into headers).
EMAIL_RE = re.compile(
    r"^[^@\s<>()\[\],;:\"\\]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)


# C0 and C1 controls, DEL, the Unicode line and paragraph separators, and lone surrogates.
_NOT_IN_A_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# The same, less tab, CR and LF (which multi-line text may hold) and the Unicode separators.
_NOT_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LINE_BREAK = re.compile(r"[\n\r\u2028\u2029\x85\x0b\x0c]")
# Fields that are one line whatever the caller says: they end up in headers, subjects and lists.
_ONE_LINE_FIELDS = {"name", "title", "label"}
YEARS = (1970, 2100)


def fail(field: str, reason: str) -> ValidationFailed:
    return ValidationFailed({field: reason})


def is_one_line_field(field: str) -> bool:
    """Names (`name`, `*_name`), titles and labels: the fields read as one line by default."""
    last = field.rsplit(".", 1)[-1]
    return last in _ONE_LINE_FIELDS or last.endswith("_name")


def clean_chars(value: str, field: str, *, multiline: bool) -> str:
    """Return `value` unchanged, or raise naming `field` when it holds a character that must not
    reach the database: any control character or lone surrogate, and in a one-line field any line
    break or tab as well."""
    bad = (_NOT_IN_TEXT if multiline else _NOT_IN_A_LINE).search(value)
    if bad is None:
        return value
    if _SURROGATE.match(bad.group()):
        raise fail(field, "must be valid Unicode text (it holds a lone surrogate)")
    if not multiline and (_LINE_BREAK.match(bad.group()) or bad.group() == "\t"):
        raise fail(field, "must be a single line")
    raise fail(field, "must not contain control characters such as NUL")


def text(
    data: dict, field: str, *, required: bool = False, max_len: int = 10_000, multiline: bool | None = None
) -> str | None:
    """The trimmed string in `data[field]`, at most `max_len` characters and free of control
    characters. `multiline` None means: one line for names, titles and labels
    (`is_one_line_field`), several lines (tab, CR, LF allowed) for anything else."""
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
    if multiline is None:
        multiline = not is_one_line_field(field)
    return clean_chars(value, field, multiline=multiline)


def email(value: Any, field: str = "email") -> str:
    """One deliverable address, lower-cased. Control characters and non-ASCII addresses are
    refused with their own message: we do not speak SMTPUTF8 end to end, so a confirmation to
    such an address could never be built or sent."""
    if not isinstance(value, str) or not value.strip():
        raise fail(field, "is required")
    value = value.strip()
    if _CONTROL.search(value):
        raise fail(field, "must not contain control characters or line breaks")
    if not value.isascii():
        raise fail(
            field,
            "we can't send to addresses with non-ASCII characters yet "
            "(internationalised addresses are not supported); please use another address",
        )
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
    if not YEARS[0] <= moment.year <= YEARS[1]:
        # Years 1 and 9999 overflow when moved between zones (calendars, pages, reminders).
        raise fail(field, f"must be between the years {YEARS[0]} and {YEARS[1]}")
    if moment.tzinfo is None:
        if tz is None:
            raise fail(field, "needs an offset, or a valid timezone to read it in")
        moment = _in_zone(moment, field, tz)
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise fail(field, f"must be between the years {YEARS[0]} and {YEARS[1]}") from None


def _utcoffset(moment: datetime) -> timedelta:
    offset = moment.utcoffset()
    if offset is None:  # never: every time here carries a ZoneInfo or UTC
        raise ValueError(f"{moment.isoformat()} has no offset")
    return offset


def _offset_text(offset: timedelta) -> str:
    sign = "-" if offset.total_seconds() < 0 else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _clock(moment: datetime) -> str:
    return f"{moment.hour}:{moment.minute:02d}"


def _in_zone(local: datetime, field: str, tz: str) -> datetime:
    """A wall time read in zone `tz`; refused, naming `field`, when it happens twice (a
    fall-back's repeated hour: which one staff mean cannot be guessed, and calendars would
    place it differently) or not at all (a spring-forward's skipped hour)."""
    zone_info = ZoneInfo(tz)
    first, second = local.replace(tzinfo=zone_info, fold=0), local.replace(tzinfo=zone_info, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first
    shown = local.isoformat(timespec="minutes") if not local.second else local.isoformat()
    # Both readings as instants: a real wall time comes back from UTC unchanged, a skipped one doesn't.
    if first.astimezone(UTC).astimezone(zone_info).replace(tzinfo=None) == local:
        raise fail(
            field,
            f"{shown} happens twice in {tz}: add the offset, "
            f"{_offset_text(_utcoffset(first))} (the first) or {_offset_text(_utcoffset(second))} (the second)",
        )
    # Skipped: the clocks jump at the instant between the two readings where the offset changes.
    low, high = sorted((first.astimezone(UTC), second.astimezone(UTC)))
    before = _utcoffset(low.astimezone(zone_info))
    while high - low > timedelta(seconds=1):
        middle = low + timedelta(seconds=(high - low).total_seconds() // 2)
        low, high = (middle, high) if middle.astimezone(zone_info).utcoffset() == before else (low, middle)
    after = _utcoffset(high.astimezone(zone_info))
    jump = (high + before).replace(tzinfo=None)
    raise fail(
        field,
        f"{shown} doesn't exist in {tz} (the clocks jump from {_clock(jump)} to {_clock(jump + (after - before))})",
    )


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


def url(value: Any, field: str, *, max_len: int = 2000) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not re.match(r"^https?://[^\s/$.?#].[^\s]*$", value.strip()):
        raise fail(field, "must be an http:// or https:// address")
    if len(value.strip()) > max_len:
        raise fail(field, f"must be at most {max_len} characters")
    return clean_chars(value.strip(), field, multiline=False)


def slug(value: Any, field: str = "slug") -> str:
    if not isinstance(value, str) or not SLUG_RE.match(value) or len(value) > 120:
        raise fail(field, "must be lower-case letters, digits and single hyphens, e.g. career-webinar")
    return value


def slugify(title: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return base[:80].rstrip("-") or "event"


def string_list(value: Any, field: str, *, max_items: int = 20, max_len: int = 50) -> list[str]:
    """Short one-line words (tags): trimmed, lower-cased, deduplicated in order."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise fail(field, "must be a list of strings")
    items = list(dict.fromkeys(v.strip().lower() for v in value if v.strip()))
    if len(items) > max_items:
        raise fail(field, f"at most {max_items} {field}")
    for item in items:
        if len(item) > max_len:
            raise fail(field, f"each must be at most {max_len} characters")
        clean_chars(item, field, multiline=False)
    return items


def boolean(value: Any, field: str) -> bool:
    if value in (None, "", False, "false", "off", "0", 0, "no"):
        return False
    if value in (True, "true", "on", "1", 1, "yes"):
        return True
    raise fail(field, "must be true or false")
