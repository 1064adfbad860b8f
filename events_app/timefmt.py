"""Human time formatting in an event's zone: "Tuesday 29 November 2022, 12:00–1:00 PM EST".
Pages, emails and the API all use these, so a time reads the same everywhere."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo


def _zone(tz: str | ZoneInfo) -> ZoneInfo:
    return tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)


def in_zone(moment: datetime, zone: ZoneInfo) -> datetime:
    """The moment in `zone`; in UTC where the zone's time would leave the calendar (a stored
    year 1 or 9999: new times are refused outside 1970-2100, older rows may hold anything)."""
    try:
        return moment.astimezone(zone)
    except (OverflowError, ValueError):
        return moment


def zone_abbreviation(moment: datetime) -> str:
    """'EST', 'CET'...; zones without a letter abbreviation (tzdata writes '+03') get 'UTC+03'."""
    name = moment.tzname() or ""
    return f"UTC{name}" if name[:1] in "+-" else name


def _clock(moment: datetime) -> str:
    return f"{moment.hour % 12 or 12}:{moment.minute:02d}"


def _meridiem(moment: datetime) -> str:
    return "AM" if moment.hour < 12 else "PM"


def _day(moment: datetime) -> str:
    return f"{moment:%A} {moment.day} {moment:%B %Y}"


def format_time(moment: datetime, tz: str | ZoneInfo) -> str:
    """One moment in zone `tz`: 'Tuesday 29 November 2022, 12:00 PM EST'."""
    local = in_zone(moment, _zone(tz))
    return f"{_day(local)}, {_clock(local)} {_meridiem(local)} {zone_abbreviation(local)}"


def format_range(starts_at: datetime, ends_at: datetime, tz: str | ZoneInfo) -> str:
    """An event's time in its zone, saying each thing once:
    'Tuesday 29 November 2022, 12:00–1:00 PM EST', '11:30 AM–12:30 PM EST' across noon,
    and both days in full when it ends on another day (or in another abbreviation, across a
    daylight-saving change)."""
    zone = _zone(tz)
    start, end = in_zone(starts_at, zone), in_zone(ends_at, zone)
    start_abbr, end_abbr = zone_abbreviation(start), zone_abbreviation(end)
    if start.date() != end.date():
        return f"{format_time(start, zone)} – {format_time(end, zone)}"
    if start_abbr != end_abbr:
        return (
            f"{_day(start)}, {_clock(start)} {_meridiem(start)} {start_abbr}–{_clock(end)} {_meridiem(end)} {end_abbr}"
        )
    if _meridiem(start) == _meridiem(end):
        hours = f"{_clock(start)}–{_clock(end)} {_meridiem(end)}"
    else:
        hours = f"{_clock(start)} {_meridiem(start)}–{_clock(end)} {_meridiem(end)}"
    return f"{_day(start)}, {hours} {start_abbr}"


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 with an explicit offset, as the API promises."""
    return moment.isoformat() if moment is not None else None


def iso_seconds(moment: datetime | None, tz: str | ZoneInfo | None = None) -> str:
    """ISO 8601 to the second with its offset, in zone `tz` when given, as spreadsheets read it:
    '2026-12-01T12:00:05-05:00' ('' for None)."""
    if moment is None:
        return ""
    local = in_zone(moment, _zone(tz)) if tz is not None else moment
    return local.replace(microsecond=0).isoformat()


def short_time(moment: datetime | None, tz: str | ZoneInfo, empty: str = "–") -> str:
    """One moment in zone `tz`, short enough for a table cell: 'Tue 1 Dec 2026, 12:00 PM EST'."""
    if moment is None:
        return empty
    local = in_zone(moment, _zone(tz))
    return f"{local:%a} {local.day} {local:%b %Y}, {_clock(local)} {_meridiem(local)} {zone_abbreviation(local)}"


def issue_day(iso_date: str) -> str:
    """A bulletin issue's date as people write it: '15 October 2019'."""
    from datetime import date

    try:
        day = date.fromisoformat(iso_date)
    except (TypeError, ValueError):
        return str(iso_date)
    return f"{day.day} {day:%B %Y}"


def issue_month(iso_date: str) -> str:
    """'October 2019', as in "originally appeared in the October 2019 issue"."""
    from datetime import date

    try:
        return f"{date.fromisoformat(iso_date):%B %Y}"
    except (TypeError, ValueError):
        return str(iso_date)


def time_of_day(moment: datetime, tz: str | ZoneInfo) -> str:
    """The clock time to the second in zone `tz`, for "figures as of 11:20:05 AM EST"."""
    local = in_zone(moment, _zone(tz))
    return f"{_clock(local)}:{local.second:02d} {_meridiem(local)} {zone_abbreviation(local)}"
