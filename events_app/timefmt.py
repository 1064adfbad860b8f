"""Human time formatting in an event's zone: "Tuesday 29 November 2022, 12:00–1:00 PM EST"."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo


def _clock(moment: datetime) -> str:
    return f"{moment.hour % 12 or 12}:{moment.minute:02d}"


def _day(moment: datetime) -> str:
    return f"{moment:%A} {moment.day} {moment:%B %Y}"


def format_range(starts_at: datetime, ends_at: datetime, tz: str) -> str:
    """The span in zone `tz`, with the zone's abbreviation, the way people write it."""
    zone = ZoneInfo(tz)
    start, end = starts_at.astimezone(zone), ends_at.astimezone(zone)
    start_ampm, end_ampm = f"{start:%p}", f"{end:%p}"
    if start.date() == end.date():
        if start_ampm == end_ampm:
            return f"{_day(start)}, {_clock(start)}–{_clock(end)} {end_ampm} {end:%Z}"
        return f"{_day(start)}, {_clock(start)} {start_ampm}–{_clock(end)} {end_ampm} {end:%Z}"
    return (
        f"{_day(start)}, {_clock(start)} {start_ampm} {start:%Z} – "
        f"{_day(end)}, {_clock(end)} {end_ampm} {end:%Z}"
    )


def format_moment(moment: datetime, tz: str) -> str:
    local = moment.astimezone(ZoneInfo(tz))
    return f"{_day(local)}, {_clock(local)} {local:%p} {local:%Z}"


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 with an explicit offset, as the API promises."""
    return moment.isoformat() if moment is not None else None
