"""Where a calendar object puts an event's times: local time with an RRULE-based VTIMEZONE that
every reader applies the same way, or UTC.

Outlook (and Windows-based servers) read one STANDARD and one DAYLIGHT block of a VTIMEZONE and
apply each block's yearly rule; a component listing each year's change, or holding several blocks
of a kind, is read wrongly. So a zone's VTIMEZONE here is built from zoneinfo's transitions in
the event's year: one STANDARD (the smaller offset) and one DAYLIGHT (the larger: so Dublin's
"negative DST" comes out as Outlook expects), each `RRULE:FREQ=YEARLY;BYMONTH=m;BYDAY=nWD`, or a
single STANDARD for a zone without changes that year.

A time is written locally only when a reader applying those blocks gets exactly its instant, and
its wall time happens once: a time in a fall-back's repeated hour means its FIRST occurrence to
every parser (RFC 5545 3.3.5), so such instants (and any the rule cannot place: a zone whose
changes follow no weekday rule, or that changed its rules that year) are written in UTC, which
every reader places right. Pure functions on zoneinfo; results cached per zone and year.
"""

from __future__ import annotations

import calendar as gregorian
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import icalendar

UTC = UTC
_YEARS = (1970, 2100)
_DAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
_UTC_NAMES = {"UTC", "Etc/UTC", "Etc/UCT", "Etc/Zulu", "Zulu", "UCT", "Universal", "Etc/Universal", "Etc/GMT"}


@dataclass(frozen=True)
class Onset:
    """One yearly change: from `offset_from` to `offset_to` on the `nth` (or last, -1) `weekday`
    of `month` at wall time `at` (read in `offset_from`). A fixed zone has one Onset with
    month 0 (no rule)."""

    month: int
    nth: int
    weekday: int
    at: time
    offset_from: timedelta
    offset_to: timedelta
    name: str

    def in_year(self, year: int) -> datetime:
        """The onset's wall time in `year` (naive)."""
        days = gregorian.monthrange(year, self.month)[1]
        matching = [d for d in range(1, days + 1) if gregorian.weekday(year, self.month, d) == self.weekday]
        day = matching[self.nth - 1] if self.nth > 0 else matching[self.nth]
        return datetime.combine(datetime(year, self.month, day), self.at)


Rule = tuple[Onset, ...]


def _offset(tz: ZoneInfo, moment: datetime) -> timedelta:
    offset = moment.astimezone(tz).utcoffset()
    if offset is None:  # never: a ZoneInfo knows the offset of every instant
        raise ValueError(f"{tz.key} has no offset at {moment.isoformat()}")
    return offset


@lru_cache(maxsize=512)
def _transitions(key: str, year: int) -> tuple[tuple[datetime, timedelta, timedelta], ...]:
    """(instant, offset before, offset after) of every change of `key` during `year`."""
    tz = ZoneInfo(key)
    found = []
    moment = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    before = _offset(tz, moment)
    while moment < end:
        step = moment + timedelta(days=1)
        after = _offset(tz, step)
        if after != before:
            low, high = moment, step  # offset(low) == before, offset(high) != before
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                middle = middle.replace(microsecond=0)
                if _offset(tz, middle) == before:
                    low = middle
                else:
                    high = middle
            found.append((high, before, _offset(tz, high)))
            before = _offset(tz, high)
            moment = high
            continue
        moment = step
    return tuple(found)


def _onset(key: str, year: int, change: tuple[datetime, timedelta, timedelta]) -> Onset | None:
    """The change as a yearly onset that also gives the neighbouring years' changes, or None."""
    instant, before, after = change
    local = (instant + before).replace(tzinfo=None)
    days = gregorian.monthrange(year, local.month)[1]
    nth = (local.day - 1) // 7 + 1
    # "last Sunday" and "4th Sunday" agree this year; the neighbouring years tell which is meant.
    choices = ([nth] if nth <= 4 else []) + ([-1] if local.day + 7 > days else [])
    name = ZoneInfo(key).tzname(instant.astimezone(ZoneInfo(key))) or ""

    def onset(n: int) -> Onset:
        return Onset(local.month, n, local.weekday(), local.time(), before, after, name)

    def fits(candidate: Onset) -> bool:
        for other in (year - 2, year - 1, year + 1, year + 2):
            if not _YEARS[0] <= other <= _YEARS[1]:
                continue
            same = [c for c in _transitions(key, other) if (c[1], c[2]) == (before, after)]
            if len(same) != 1 or (same[0][0] + before).replace(tzinfo=None) != candidate.in_year(other):
                return False
        return True

    fitting = [onset(n) for n in sorted(choices, key=lambda n: n != -1) if fits(onset(n))]
    return fitting[0] if fitting else None


@lru_cache(maxsize=512)
def rule(key: str, year: int) -> Rule | None:
    """The zone's changes in `year` as a yearly rule: two onsets, one fixed offset, or None when
    that year's changes make no pair of yearly rules that also hold two years before and after.
    (A zone whose changes move, like Morocco's around Ramadan, would otherwise get another
    VTIMEZONE under the same TZID in each file, and readers that cache definitions by TZID,
    vobject among them, would apply one year's to another.)"""
    changes = _transitions(key, year)
    if not changes:
        moment = datetime(year, 7, 1, tzinfo=UTC).astimezone(ZoneInfo(key))
        offset = _offset(ZoneInfo(key), moment)
        return (Onset(0, 0, 0, time(0), offset, offset, moment.tzname() or ""),)
    if len(changes) != 2:
        return None
    (_, a_from, a_to), (_, b_from, b_to) = changes
    if a_to != b_from or b_to != a_from:
        return None
    onsets = tuple(onset for c in changes if (onset := _onset(key, year, c)) is not None)
    return onsets if len(onsets) == len(changes) else None


def offset_at(zone_rule: Rule, local: datetime) -> timedelta:
    """The offset a reader of the rule's blocks gives wall time `local` (naive): the TZOFFSETTO of
    the latest onset at or before it, as Outlook computes it."""
    if len(zone_rule) == 1:
        return zone_rule[0].offset_to
    latest = None
    for onset in zone_rule:
        for year in (local.year, local.year - 1):
            at = onset.in_year(year)
            if at <= local:
                if latest is None or at > latest[0]:
                    latest = (at, onset.offset_to)
                break
    return latest[1] if latest else zone_rule[0].offset_from


def _happens_once(local: datetime) -> bool:
    naive = local.replace(tzinfo=None)
    return (
        naive.replace(tzinfo=local.tzinfo, fold=0).utcoffset() == naive.replace(tzinfo=local.tzinfo, fold=1).utcoffset()
    )


def _utc(moment: datetime) -> datetime:
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):  # year 1 or 9999 with an offset: keep the clock reading
        return moment.replace(tzinfo=UTC)


class Placer:
    """Decides, event by event, how one calendar object writes times, and collects the
    VTIMEZONEs it then needs (one per zone, the first rule that fits: a later event in a year
    with other rules is written in UTC)."""

    def __init__(self) -> None:
        self.rules: dict[str, Rule] = {}

    def place(self, key: str | None, *moments: datetime) -> list[datetime]:
        """`moments` (aware) as the calendar should write them: local in zone `key`, or UTC."""
        key = key or "UTC"
        if key in _UTC_NAMES or not all(_YEARS[0] <= m.year <= _YEARS[1] for m in moments):
            return [_utc(m) for m in moments]
        tz = ZoneInfo(key)
        local = [m.astimezone(tz) for m in moments]
        if not all(_happens_once(m) for m in local):
            return [_utc(m) for m in moments]
        candidates = [self.rules[key]] if key in self.rules else [rule(key, m.year) for m in local]
        for candidate in candidates:
            if candidate and all(offset_at(candidate, m.replace(tzinfo=None)) == m.utcoffset() for m in local):
                self.rules.setdefault(key, candidate)
                return local
        return [_utc(m) for m in moments]

    def components(self) -> list[icalendar.Timezone]:
        return [_component(key, zone_rule) for key, zone_rule in self.rules.items()]


def _component(key: str, zone_rule: Rule) -> icalendar.Timezone:
    component = icalendar.Timezone()
    component.add("tzid", key)
    if len(zone_rule) == 1:
        [fixed] = zone_rule
        block: icalendar.Component = icalendar.TimezoneStandard()
        block.add("dtstart", datetime(1970, 1, 1))
        block.add("tzoffsetfrom", fixed.offset_to)
        block.add("tzoffsetto", fixed.offset_to)
        if fixed.name:
            block.add("tzname", fixed.name)
        component.add_component(block)
        return component
    for onset in sorted(zone_rule, key=lambda o: o.offset_to):
        block = icalendar.TimezoneStandard() if onset.offset_to < onset.offset_from else icalendar.TimezoneDaylight()
        block.add("dtstart", onset.in_year(1970))
        block.add("tzoffsetfrom", onset.offset_from)
        block.add("tzoffsetto", onset.offset_to)
        if onset.name:
            block.add("tzname", onset.name)
        block.add("rrule", {"FREQ": "YEARLY", "BYMONTH": onset.month, "BYDAY": f"{onset.nth}{_DAYS[onset.weekday]}"})
        component.add_component(block)
    return component
