"""Calendars: personal invites (REQUEST/CANCEL), public feeds (PUBLISH), add-to-calendar links.

Pure functions on plain event and registration dicts: no database, no settings, no clock except
DTSTAMP (overridable). The rules real clients need (see DESIGN.md, "Calendar invites that real
clients honour"):

- a personal invite's UID is the registration's stored random `calendar_uid` (never derived from
  a row id: a restored or second database would reuse UIDs calendars hold) and its SEQUENCE is
  the stored counter the domain raises on every change, so Gmail, Outlook and Apple Calendar
  update or remove the one entry instead of adding another;
- exactly one ATTENDEE (the recipient, RSVP=FALSE: nobody should answer a webinar invite) and an
  ORGANIZER that is the From address;
- times in the event's own zone with an RRULE-based VTIMEZONE (one STANDARD, one DAYLIGHT, as
  Outlook reads them), or in UTC when the local time is ambiguous or non-existent (events_app/
  vtimezone.py decides);
- LOCATION is the personal join link (it records attendance and hides the meeting link until it is
  open), never the raw meeting URL; the body repeats the links because Outlook may show only it.

icalendar escapes text, folds lines at 75 octets without splitting a UTF-8 character, and writes
CRLF; we strip control characters first because some clients reject them even escaped.

Times outside the years 1970-2100 (validation refuses them now; older rows may hold them) are
written in UTC without a VTIMEZONE: moving them between zones can overflow, and a calendar file
must never fail to build.

Public calendars (METHOD:PUBLISH) carry ORGANIZER, as RFC 5546 asks; a feed has a NAME (RFC 7986)
and X-WR-CALNAME, a single event neither (Outlook imports a file with X-WR-CALNAME into a new
calendar).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import urlencode

import icalendar

from . import clock, vtimezone

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


def _utc_stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _add_times(vevent: icalendar.Event, event: dict, placer: vtimezone.Placer) -> None:
    """DTSTART and DTEND as `placer` decides: the event's zone with its rule, or UTC."""
    starts, ends = placer.place(event.get("timezone"), event["starts_at"], event["ends_at"])
    vevent.add("dtstart", starts)
    vevent.add("dtend", ends)


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
    uid: str | None = None,
    now: datetime | None = None,
) -> bytes:
    """The personal invite of one registration, as iCalendar bytes (CRLF, folded).

    `registration` needs name, email, sequence (used as stored: the domain raises it) and
    calendar_uid; `uid` overrides it (a CANCEL for an earlier entry of the same row)."""
    if method not in ("REQUEST", "CANCEL"):
        raise ValueError(f"method must be REQUEST or CANCEL, not {method!r}")
    uid = uid or registration.get("calendar_uid")
    if not uid:
        raise ValueError("the registration has no calendar_uid")
    cancelled = method == "CANCEL"
    title = clean_line(event["title"])

    vevent = icalendar.Event()
    placer = vtimezone.Placer()
    vevent.add("uid", uid)
    vevent.add("sequence", int(registration.get("sequence") or 0))
    vevent.add("dtstamp", (now or clock.now()).astimezone(UTC))
    _add_times(vevent, event, placer)
    vevent.add("summary", f"Cancelled: {title}" if cancelled else title)
    vevent.add("description", _description(event, cancelled, join_url_personal, manage_url, event_url))
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

    return _finish(_calendar(method), [vevent], placer)


def _description(event: dict, cancelled: bool, join_url: str, manage_url: str, event_url: str) -> str:
    """An invite's DESCRIPTION: the summary and the person's links (Outlook may show only it)."""
    lines = []
    if cancelled:
        lines.append("This registration or event has been cancelled.")
    summary = clean_text(event.get("summary"))
    if summary:
        lines += [summary, ""]
    if not cancelled:
        lines.append(f"Join (your personal link): {join_url}")
    lines.append(f"Manage or cancel your registration: {manage_url}")
    lines.append(f"Event page: {event_url}")
    return clean_text("\n".join(lines))


def fold(line: str) -> str:
    """One content line folded as icalendar folds it (lines of at most 75 octets, CRLF and a
    space between; an escape's backslash or caret never ends a line): plain ASCII lines by
    slicing, anything else by icalendar itself."""
    if not line.isascii():
        return _fold_octets(line)
    if len(line) < 75:
        return line
    out = []
    start, end = 0, len(line)
    while end - start >= 75:
        stop = start + 74
        if line[stop - 1] in "\\^" and stop - start > 1:
            stop -= 1
        out.append(line[start:stop])
        start = stop
    if start < end:
        out.append(line[start:])
    return "\r\n ".join(out)


def _fold_octets(line: str) -> str:
    """`fold` for a line with non-ASCII characters: counted in UTF-8 octets, never split."""
    lines: list[str] = []
    current: list[str] = []
    count = 0
    for char in line:
        size = len(char.encode("utf-8"))
        if current and count + size >= 75:
            if len(current) > 1 and current[-1] in "\\^":
                moved = current.pop()
                lines.append("".join(current))
                current, count = [moved], len(moved.encode("utf-8"))
            else:
                lines.append("".join(current))
                current, count = [], 0
        current.append(char)
        count += size
    if current:
        lines.append("".join(current))
    return "\r\n ".join(lines)


def _escape(text: str) -> str:
    """TEXT escaping (RFC 5545 3.3.11) exactly as icalendar's vText writes it."""
    return (
        text.replace(r"\N", "\n")
        .replace("\\", "\\\\")
        .replace(";", r"\;")
        .replace(",", r"\,")
        .replace("\r\n", r"\n")
        .replace("\n", r"\n")
        .replace("\r", r"\n")
    )


def _text_line(name: str, value: str) -> str:
    """`NAME:value` for a TEXT property (escaped as icalendar's vText escapes), folded."""
    return fold(f"{name}:{_escape(value)}")


# The ATTENDEE parameters after CN, as icalendar sorts and writes them for `invite()`.
_ATTENDEE_PARAMS = "PARTSTAT=ACCEPTED;ROLE=REQ-PARTICIPANT;RSVP=FALSE"


def _attendee_line(email: str, name: str) -> str:
    """The ATTENDEE line `invite()` writes (see `_address`): CN quoted as icalendar quotes it
    (always when it holds a space or an apostrophe, RFC 6868 escapes), a mailto: value."""
    cn = clean_line(name).replace('"', "'")
    params = _ATTENDEE_PARAMS
    if cn:
        params = f"CN={icalendar.parser.param_value(cn, always_quote=' ' in cn or chr(39) in cn)};{params}"
    value = email if email.lower().startswith("mailto:") else f"mailto:{email}"
    return fold(f"ATTENDEE;{params}:{value}")


# The personal properties of an invite, in the order icalendar writes them (canonical first, then
# alphabetical): each is a slot in an InviteTemplate.
_PERSONAL = ("DTSTAMP", "UID", "SEQUENCE", "ATTENDEE", "DESCRIPTION", "LOCATION")
_SLOT_UID = "personal-slot-uid@invalid"


class InviteTemplate:
    """The invite of one event for one method and organizer, written once, with the personal
    properties (DTSTAMP, UID, SEQUENCE, ATTENDEE, DESCRIPTION, LOCATION) left as slots that
    `render` fills for a registration: the same bytes `invite()` writes for it (tests/mail/
    test_fast_messages.py compares them), at a fraction of the cost."""

    def __init__(
        self,
        event: dict,
        *,
        method: Literal["REQUEST", "CANCEL"],
        organizer_name: str,
        organizer_email: str,
        event_url: str,
    ) -> None:
        self.event = event
        self.cancelled = method == "CANCEL"
        self.event_url = event_url
        sample = invite(
            event,
            {"name": "", "email": "slot@invalid", "sequence": 0, "calendar_uid": _SLOT_UID},
            method=method,
            organizer_name=organizer_name,
            organizer_email=organizer_email,
            manage_url="https://invalid/manage",
            join_url_personal="https://invalid/join",
            event_url=event_url,
            now=datetime(2000, 1, 1, tzinfo=UTC),
        ).decode()
        # The calendar as text between the personal lines: `pieces[0]`, slot `order[0]`,
        # `pieces[1]`, ... (each piece holds its own line ends).
        self.pieces: list[str] = [""]
        self.order: list[int] = []
        in_event = False
        for line in re.split(r"\r\n(?! )", sample.rstrip("\r\n")):
            name = re.split(r"[;:]", line, maxsplit=1)[0]
            if line == "BEGIN:VEVENT":
                in_event = True
            elif line == "END:VEVENT":
                in_event = False
            if in_event and name in _PERSONAL:
                self.order.append(_PERSONAL.index(name))
                self.pieces.append("\r\n")
            else:
                self.pieces[-1] += line + "\r\n"
        if sorted(self.order) != list(range(len(_PERSONAL))):
            raise ValueError("the invite's personal properties were not found where expected")

    def render(
        self,
        registration: dict,
        *,
        manage_url: str,
        join_url_personal: str,
        uid: str | None = None,
        now: datetime | None = None,
    ) -> bytes:
        """`invite()` of this event for `registration` (the same arguments)."""
        uid = uid or registration.get("calendar_uid")
        if not uid:
            raise ValueError("the registration has no calendar_uid")
        values = (
            "DTSTAMP:" + _utc_stamp(now or clock.now()),
            _text_line("UID", uid),
            f"SEQUENCE:{int(registration.get('sequence') or 0)}",
            _attendee_line(registration["email"], registration.get("name") or ""),
            _text_line(
                "DESCRIPTION",
                _description(self.event, self.cancelled, join_url_personal, manage_url, self.event_url),
            ),
            _text_line("LOCATION", clean_line(join_url_personal)),
        )
        out = [self.pieces[0]]
        for slot, piece in zip(self.order, self.pieces[1:], strict=True):
            out.append(values[slot])
            out.append(piece)
        return "".join(out).encode()


def _finish(cal: icalendar.Calendar, vevents: list, placer: vtimezone.Placer) -> bytes:
    for component in placer.components():  # VTIMEZONEs first: some readers want them before use
        cal.add_component(component)
    for vevent in vevents:
        cal.add_component(vevent)
    return cal.to_ical()


def event_feed(
    events: Iterable[dict],
    *,
    base_url: str,
    organizer_name: str,
    organizer_email: str,
    name: str | None = None,
) -> bytes:
    """A public METHOD:PUBLISH calendar of `events` (for /events/{slug}.ics and /calendar.ics).

    UID the event's stored `calendar_uid` and SEQUENCE its version, so subscribed calendars
    update entries in place. `name` (a feed's NAME and X-WR-CALNAME) is None for a single event.
    DTSTAMP is the event's last change, not now: the same events give the same bytes, which
    keeps HTTP caching and ETags honest. The meeting join link is never included."""
    base_url = base_url.rstrip("/")
    cal = _calendar("PUBLISH")
    if name is not None:
        cal.add("name", clean_line(name))
        cal.add("x-wr-calname", clean_line(name))
        # RFC 7986 and its Apple/Google predecessor: how often subscribers should fetch again.
        cal.add("refresh-interval", timedelta(hours=6), parameters={"VALUE": "DURATION"})
        cal.add("x-published-ttl", "PT6H")
    placer = vtimezone.Placer()
    vevents = []
    for event in events:
        url = f"{base_url}/events/{event['slug']}"
        changed = event.get("updated_at") or event.get("created_at") or event["starts_at"]
        summary = clean_text(event.get("summary"))
        description = (
            f"{summary}\n\nDetails and registration: {url}" if summary else (f"Details and registration: {url}")
        )
        vevent = icalendar.Event()
        vevent.add("uid", event["calendar_uid"])
        vevent.add("sequence", int(event.get("version") or 0))
        vevent.add("dtstamp", changed.astimezone(UTC))
        vevent.add("last-modified", changed.astimezone(UTC))
        _add_times(vevent, event, placer)
        vevent.add("summary", clean_line(event["title"]))
        vevent.add("description", clean_text(description))
        vevent.add("location", url)
        vevent.add("url", url)
        vevent.add("status", "CANCELLED" if event.get("status") == "cancelled" else "CONFIRMED")
        vevent.add("organizer", _address(organizer_email, organizer_name))
        vevents.append(vevent)
    return _finish(cal, vevents, placer)


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
    body = (
        clean_text(details)
        if details is not None
        else clean_text("\n\n".join(p for p in (event.get("summary") or "", f"Details: {page}") if p))
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
            "startdt": starts.astimezone(UTC).strftime(iso),
            "enddt": ends.astimezone(UTC).strftime(iso),
            "body": body,
            "location": where,
        }
    )
    return {"google": google, "outlook": outlook, "ics": f"{page}.ics"}
