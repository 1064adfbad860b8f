"""Three readers of a calendar object, for the calendar tests: icalendar, vobject, and a small
Outlook-like reader written here that takes only the first STANDARD and the first DAYLIGHT block
of each VTIMEZONE and applies their TZOFFSETTO from the onset their DTSTART/RRULE give (no
dateutil, no zoneinfo: nothing shared with the code under test).

Each returns, per VEVENT, (UID, DTSTART, DTEND) with the times as aware UTC datetimes."""

from __future__ import annotations

import calendar as gregorian
import re
from datetime import datetime, timedelta, timezone

import icalendar
import vobject

UTC = timezone.utc
WEEKDAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]


def by_icalendar(data: bytes) -> list[tuple[str, datetime, datetime]]:
    cal = icalendar.Calendar.from_ical(data)
    return [(str(v["UID"]), v.decoded("DTSTART").astimezone(UTC), v.decoded("DTEND").astimezone(UTC))
            for v in cal.walk("VEVENT")]


def by_vobject(data: bytes) -> list[tuple[str, datetime, datetime]]:
    # vobject keeps one definition per TZID for the whole process, the first it read: a client
    # reads each file's own VTIMEZONE, so each file is read afresh.
    getattr(vobject.icalendar, "__tzidMap").clear()
    cal = vobject.readOne(data.decode("utf-8"))
    return [(v.uid.value, v.dtstart.value.astimezone(UTC), v.dtend.value.astimezone(UTC))
            for v in cal.contents.get("vevent", [])]


def _nth_weekday(year: int, month: int, nth: int, weekday: int) -> int:
    days = gregorian.monthrange(year, month)[1]
    matching = [d for d in range(1, days + 1) if gregorian.weekday(year, month, d) == weekday]
    return matching[nth - 1] if nth > 0 else matching[nth]


def _onset(block, year: int) -> datetime | None:
    """The block's onset (local wall time) in `year`, from its DTSTART and RRULE."""
    start = block.decoded("DTSTART").replace(tzinfo=None)
    rule = block.get("RRULE")
    if rule is None:
        return start if start.year == year else None
    assert rule["FREQ"] == ["YEARLY"], rule
    assert set(rule) <= {"FREQ", "BYMONTH", "BYDAY"}, f"an Outlook-like reader knows no {set(rule)}"
    month = int(rule["BYMONTH"][0])
    match = re.fullmatch(r"([+-]?\d)?(MO|TU|WE|TH|FR|SA|SU)", str(rule["BYDAY"][0]))
    nth, weekday = int(match.group(1) or 1), WEEKDAYS.index(match.group(2))
    day = _nth_weekday(year, month, nth, weekday)
    onset = datetime(year, month, day, start.hour, start.minute, start.second)
    return onset if onset >= start else None


def outlook_offset(vtimezone, local: datetime) -> timedelta:
    """The UTC offset at wall time `local` as a reader of one STANDARD and one DAYLIGHT gets it."""
    blocks = [b for kind in ("STANDARD", "DAYLIGHT")
              for b in [next((c for c in vtimezone.subcomponents if c.name == kind), None)] if b is not None]
    assert blocks, "a VTIMEZONE needs a STANDARD or DAYLIGHT block"
    if len(blocks) == 1:
        return blocks[0].decoded("TZOFFSETTO")
    latest = None
    for block in blocks:
        for year in (local.year, local.year - 1):
            onset = _onset(block, year)
            if onset is not None and onset <= local:
                if latest is None or onset > latest[0]:
                    latest = (onset, block)
                break
    assert latest is not None, f"no onset before {local}"
    return latest[1].decoded("TZOFFSETTO")


def _instant(prop, zones: dict) -> datetime:
    raw = prop.to_ical().decode()
    if raw.endswith("Z"):
        return datetime.strptime(raw, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    local = datetime.strptime(raw, "%Y%m%dT%H%M%S")
    tzid = prop.params.get("TZID")
    assert tzid, f"a floating time {raw} names no instant"
    return (local - outlook_offset(zones[tzid], local)).replace(tzinfo=UTC)


def by_outlook(data: bytes) -> list[tuple[str, datetime, datetime]]:
    cal = icalendar.Calendar.from_ical(data)
    zones = {str(z["TZID"]): z for z in cal.walk("VTIMEZONE")}
    return [(str(v["UID"]), _instant(v["DTSTART"], zones), _instant(v["DTEND"], zones))
            for v in cal.walk("VEVENT")]


def every_reader(data: bytes) -> list[list[tuple[str, datetime, datetime]]]:
    """What the three readers see; the caller compares each with what staff entered."""
    return [by_icalendar(data), by_vobject(data), by_outlook(data)]


def check_vtimezones(data: bytes) -> None:
    """One STANDARD and at most one DAYLIGHT per VTIMEZONE, rule-based when there are two; the
    DAYLIGHT block is the one with the larger offset (as Outlook and Windows expect)."""
    cal = icalendar.Calendar.from_ical(data)
    for zone in cal.walk("VTIMEZONE"):
        kinds = [c.name for c in zone.subcomponents]
        assert kinds.count("STANDARD") == 1 and kinds.count("DAYLIGHT") <= 1, (zone["TZID"], kinds)
        if "DAYLIGHT" in kinds:
            std = next(c for c in zone.subcomponents if c.name == "STANDARD")
            dst = next(c for c in zone.subcomponents if c.name == "DAYLIGHT")
            assert "RRULE" in std and "RRULE" in dst, zone["TZID"]
            assert dst.decoded("TZOFFSETTO") > std.decoded("TZOFFSETTO"), zone["TZID"]
