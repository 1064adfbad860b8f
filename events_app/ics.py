"""Calendars: personal invites (REQUEST/CANCEL), public feeds (PUBLISH), add-to-calendar links.

Pure functions on plain event and registration dicts: no database, no settings, no clock except
DTSTAMP (overridable). The rules real clients need (see DESIGN.md, "Calendar invites that real
clients honour"):

- a personal invite's UID is `reg-<registration id>@<host>` for the life of the registration and
  its SEQUENCE is the stored counter the domain raises on every change, so Gmail, Outlook and Apple
  Calendar update or remove the one entry instead of adding another;
- exactly one ATTENDEE (the recipient, RSVP=FALSE: nobody should answer a webinar invite) and an
  ORGANIZER that is the From address;
- times in the event's own zone with its VTIMEZONE, so the entry stays right if that zone's rules
  are looked up differently by the client;
- LOCATION is the personal join link (it records attendance and hides the meeting link until it is
  open), never the raw meeting URL; the body repeats the links because Outlook may show only it.

icalendar escapes text, folds lines at 75 octets without splitting a UTF-8 character, and writes
CRLF; we strip control characters first because some clients reject them even escaped.

Times outside the years 1970-2100 (validation refuses them now; older rows may hold them) are
written in UTC without a VTIMEZONE: moving them between zones can overflow, and a calendar file
must never fail to build.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from typing import Iterable, Literal
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import icalendar

PRODID = "-//events-app//Events and invites//EN"

# C0 and C1 controls and Unicode line/paragraph separators. Newlines are kept in multi-line text.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_ANY_BREAK = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACE_RUNS = re.compile(r" {2,}")


def clean_line(value: str | None) -> str:
    """One line of text: control characters (newlines included) become spaces, runs of spaces
    one space."""
    return _SPACE_RUNS.sub(" ", _ANY_BREAK.sub(" ", value or "")).strip()


def clean_text(value: str | None) -> str:
    """Multi-line text: newlines normalised to LF and kept, tabs become spaces, other controls go."""
    text = (value or "").replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    return _CONTROLS.sub("", text).strip()


def _zone(event: dict) -> ZoneInfo:
    return ZoneInfo(event.get("timezone") or "UTC")


_YEARS = (1970, 2100)


def _in_range(moment: datetime) -> bool:
    return _YEARS[0] <= moment.year <= _YEARS[1]


def _local(moment: datetime, tz: ZoneInfo) -> datetime:
    """`moment` in the event's zone; in UTC when it lies outside the years 1970-2100."""
    if _in_range(moment):
        return moment.astimezone(tz)
    try:
        return moment.astimezone(timezone.utc)
    except (OverflowError, ValueError):  # year 1 or 9999 with an offset: keep the clock reading
        return moment.replace(tzinfo=timezone.utc)


def _utc_stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _add_timezones(cal: icalendar.Calendar, events: Iterable[dict]) -> None:
    """Add the VTIMEZONEs the VEVENTs reference, covering a year either side of them (a shorter
    component than icalendar's 1970-2038 default, with the same meaning for these events)."""
    events = [e for e in events if _in_range(e["starts_at"]) and _in_range(e["ends_at"])]
    if not events:
        return  # nothing written in a local zone (see _local)
    first = min(e["starts_at"] for e in events).date() - timedelta(days=366)
    last = max(e["ends_at"] for e in events).date() + timedelta(days=366)
    cal.add_missing_timezones(first_date=max(first, date(_YEARS[0], 1, 1)), last_date=last)


def _address(email: str, name: str, **params) -> icalendar.vCalAddress:
    # Double quotes cannot be escaped in a parameter value except by RFC 6868, which Outlook
    # ignores; a name without them reads the same.
    cn = clean_line(name).replace('"', "'") or None
    return icalendar.vCalAddress.new(email, cn=cn, **params)


def _calendar(method: str) -> icalendar.Calendar:
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", method)
    return cal


def invite(
    event: dict,
    registration: dict,
    *,
    method: Literal["REQUEST", "CANCEL"],
    organizer_name: str,
    organizer_email: str,
    manage_url: str,
    join_url_personal: str,
    event_url: str,
    host: str | None = None,
    now: datetime | None = None,
) -> bytes:
    """The personal invite of one registration, as iCalendar bytes (CRLF, folded).

    `registration` needs id, name, email and sequence (used as stored: the domain raises it).
    `host` names the UID's domain; by default the host of `event_url` (the site's host)."""
    if method not in ("REQUEST", "CANCEL"):
        raise ValueError(f"method must be REQUEST or CANCEL, not {method!r}")
    host = host or urlsplit(event_url).hostname or "localhost"
    tz = _zone(event)
    cancelled = method == "CANCEL"
    title = clean_line(event["title"])

    lines = []
    if cancelled:
        lines.append("This registration or event has been cancelled.")
    summary = clean_text(event.get("summary"))
    if summary:
        lines += [summary, ""]
    if not cancelled:
        lines.append(f"Join (your personal link): {join_url_personal}")
    lines.append(f"Manage or cancel your registration: {manage_url}")
    lines.append(f"Event page: {event_url}")

    vevent = icalendar.Event()
    vevent.add("uid", f"reg-{registration['id']}@{host}")
    vevent.add("sequence", int(registration.get("sequence") or 0))
    vevent.add("dtstamp", (now or datetime.now(timezone.utc)).astimezone(timezone.utc))
    vevent.add("dtstart", _local(event["starts_at"], tz))
    vevent.add("dtend", _local(event["ends_at"], tz))
    vevent.add("summary", f"Cancelled: {title}" if cancelled else title)
    vevent.add("description", clean_text("\n".join(lines)))
    vevent.add("location", clean_line(join_url_personal))
    vevent.add("url", clean_line(event_url))
    vevent.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    vevent.add("transp", "OPAQUE")
    vevent.add("organizer", _address(organizer_email, organizer_name))
    vevent.add(
        "attendee",
        _address(
            registration["email"],
            registration.get("name") or "",
            role="REQ-PARTICIPANT",
            partstat="ACCEPTED",
            rsvp=False,
        ),
    )

    cal = _calendar(method)
    cal.add_component(vevent)
    _add_timezones(cal, [event])
    return cal.to_ical()


def event_feed(
    events: Iterable[dict],
    *,
    host: str,
    base_url: str,
    name: str = "Events",
) -> bytes:
    """A public METHOD:PUBLISH calendar of `events` (for /events/{slug}.ics and /calendar.ics).

    UID `event-<id>@<host>` and SEQUENCE = the event's version, so subscribed calendars update
    entries in place. DTSTAMP is the event's last change, not now: the same events give the same
    bytes, which keeps HTTP caching and ETags honest. The meeting join link is never included."""
    base_url = base_url.rstrip("/")
    events = list(events)
    cal = _calendar("PUBLISH")
    cal.add("x-wr-calname", clean_line(name))
    # RFC 7986 and its Apple/Google predecessor: how often subscribers should fetch again.
    cal.add("refresh-interval", timedelta(hours=6), parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", "PT6H")
    for event in events:
        tz = _zone(event)
        url = f"{base_url}/events/{event['slug']}"
        changed = event.get("updated_at") or event.get("created_at") or event["starts_at"]
        summary = clean_text(event.get("summary"))
        description = f"{summary}\n\nDetails and registration: {url}" if summary else (
            f"Details and registration: {url}"
        )
        vevent = icalendar.Event()
        vevent.add("uid", f"event-{event['id']}@{host}")
        vevent.add("sequence", int(event.get("version") or 0))
        vevent.add("dtstamp", changed.astimezone(timezone.utc))
        vevent.add("last-modified", changed.astimezone(timezone.utc))
        vevent.add("dtstart", _local(event["starts_at"], tz))
        vevent.add("dtend", _local(event["ends_at"], tz))
        vevent.add("summary", clean_line(event["title"]))
        vevent.add("description", clean_text(description))
        vevent.add("location", url)
        vevent.add("url", url)
        vevent.add("status", "CANCELLED" if event.get("status") == "cancelled" else "CONFIRMED")
        cal.add_component(vevent)
    _add_timezones(cal, events)
    return cal.to_ical()


def calendar_links(
    event: dict,
    *,
    base_url: str,
    location: str | None = None,
    details: str | None = None,
) -> dict[str, str]:
    """Add-to-calendar links: `google` (Calendar render?action=TEMPLATE), `outlook` (Outlook on
    the web compose deeplink) and `ics` (this site's public .ics of the event). Times are UTC.

    `location` defaults to the event page; a registrant's email passes their personal join link.
    """
    base_url = base_url.rstrip("/")
    page = f"{base_url}/events/{event['slug']}"
    title = clean_line(event["title"])
    where = clean_line(location) if location else page
    body = clean_text(details) if details is not None else clean_text(
        "\n\n".join(p for p in (event.get("summary") or "", f"Details: {page}") if p)
    )
    starts, ends = event["starts_at"], event["ends_at"]
    google = "https://calendar.google.com/calendar/render?" + urlencode(
        {
            "action": "TEMPLATE",
            "text": title,
            "dates": f"{_utc_stamp(starts)}/{_utc_stamp(ends)}",
            "details": body,
            "location": where,
            "ctz": event.get("timezone") or "UTC",
        }
    )
    iso = "%Y-%m-%dT%H:%M:%SZ"
    outlook = "https://outlook.live.com/calendar/0/deeplink/compose?" + urlencode(
        {
            "path": "/calendar/action/compose",
            "rru": "addevent",
            "subject": title,
            "startdt": starts.astimezone(timezone.utc).strftime(iso),
            "enddt": ends.astimezone(timezone.utc).strftime(iso),
            "body": body,
            "location": where,
        }
    )
    return {"google": google, "outlook": outlook, "ics": f"{page}.ics"}


