"""How events and registrations look to each audience: JSON for the API, context for pages."""

from __future__ import annotations

import html
import json
import re
import secrets
from typing import Any
from zoneinfo import ZoneInfo

from jinja2.utils import htmlsafe_json_dumps
from markupsafe import Markup

from .. import settings
from ..domain import events, identity, images
from ..domain.events import seats_left
from ..domain.events import state as event_state
from ..markdown import to_html
from ..timefmt import format_range, in_zone, iso

PUBLIC_FIELDS = (
    "id",
    "slug",
    "title",
    "summary",
    "description",
    "audience",
    "tags",
    "timezone",
    "capacity",
    "questions",
    "reminders",
    "recording_url",
    "status",
    "version",
    "doors_open_minutes",
    "follow_up_minutes",
    "cover_image_url",
    "cover_alt",
    "speakers",
    "show_registered_count",
    "cancellation_note",
)


def event_json(event: dict, *, staff: bool = False, counts: dict | None = None) -> dict[str, Any]:
    """The API shape of an event. `join_url` only for staff."""
    out: dict[str, Any] = {k: event[k] for k in PUBLIC_FIELDS}
    for k in ("starts_at", "ends_at", "registration_closes_at", "created_at", "updated_at"):
        out[k] = iso(event.get(k))
    out["seats_left"] = seats_left(event)
    out["registered"] = event["taken"]
    out["url"] = f"{settings.get().base_url}/events/{event['slug']}"
    out["when"] = format_range(event["starts_at"], event["ends_at"], event["timezone"])
    if staff:
        out["join_url"] = event["join_url"]
        # Days after the event its registrants' personal data is kept; None: the installation's
        # default (EVENTS_RETENTION_DAYS).
        out["retention_days"] = event.get("retention_days")
        if counts is not None:
            out.update(counts)
    return out


def registration_json(reg: dict) -> dict[str, Any]:
    out = dict(reg)
    for k in ("created_at", "cancelled_at", "promoted_at", "attended_at"):
        if k in out:
            out[k] = iso(out[k])
    return out


def event_page(event: dict) -> dict[str, Any]:
    """Template context for one event: times in its zone, rendered description, state."""
    state = event_state(event)  # the domain's one decision (domain/events.py)
    seats = seats_left(event)
    parts = _parts(event)
    return {
        "event": event,
        "when": parts["when"],
        "starts_iso": parts["starts_iso"],
        "ends_iso": parts["ends_iso"],
        "utc_when": parts["utc_when"],
        "description_html": parts["description_html"],
        "state": state,
        "seats_left": seats,
        "full": seats == 0,
    }


# What a page shows of an event that changes only with the event's `version` (every change of a
# shown column raises it), the organisation's identity and the base URL: built once per event
# version and process, not per request. Seats, state and the cover's stored sizes are not here.
PARTS_KEPT = 512
_PARTS: dict[tuple, dict[str, Any]] = {}


def _parts_key(event: dict) -> tuple:
    base = settings.get().base_url
    return (events.forgotten, event["id"], event["created_at"], event["version"], identity.snapshot().key, base)


def _parts(event: dict) -> dict[str, Any]:
    key = _parts_key(event)
    parts = _PARTS.get(key)
    if parts is None:
        if len(_PARTS) >= PARTS_KEPT:
            _PARTS.clear()
        parts = _PARTS[key] = {
            "when": format_range(event["starts_at"], event["ends_at"], event["timezone"]),
            "starts_iso": event["starts_at"].isoformat(),
            "ends_iso": event["ends_at"].isoformat(),
            "utc_when": format_range(event["starts_at"], event["ends_at"], "UTC"),
            "description_html": to_html(event["description"]),
            "json_ld": {},  # by (has_cover, sold out): built when first asked
        }
    return parts


# The cover is shown in a 1.91:1 frame (the shape link previews use), so the page reserves its
# place before the picture arrives whatever its own size; `object-fit: cover` fills the frame.
COVER_SIZE = (1200, 628)
# A free event still names a currency in its schema.org offer; the demo organisation is in Canada.
PRICE_CURRENCY = "CAD"
DESCRIPTION_LENGTH = 160  # what search results and link previews show of a description


def absolute(url: str) -> str:
    """An address as another site needs it: a /media/ path (an uploaded picture) gets the base URL."""
    return f"{settings.get().base_url.rstrip('/')}{url}" if url.startswith("/") else url


def plain_description(event: dict, limit: int = DESCRIPTION_LENGTH) -> str:
    """The page's description for search results and link previews: the summary, else the start
    of the description without its Markdown, cut at a word."""
    text = event.get("summary") or re.sub(r"<[^>]+>", " ", to_html(event.get("description") or ""))
    text = " ".join(html.unescape(text).split())
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:.") + "…"


def initials(name: str) -> str:
    """'Ada Lovelace' -> 'AL': what stands in for a speaker without a photo."""
    words = [w for w in re.split(r"[\s\-]+", name) if w[:1].isalpha()]
    return "".join(w[0].upper() for w in words[:2]) or name[:1].upper()


def _local_iso(moment: Any, tz: str) -> str:
    return in_zone(moment, ZoneInfo(tz)).isoformat()


def json_ld(event: dict, *, has_cover: bool) -> dict[str, Any]:
    """The schema.org `Event` for search engines (Google's event rich results): an online, free
    event with its status, organiser and speakers. The location is the event page, never the
    meeting link (which registrants get by email)."""
    org = identity.snapshot()
    base = settings.get().base_url.rstrip("/")
    page = f"{base}/events/{event['slug']}"
    tz = event["timezone"]
    seats = seats_left(event)
    data: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "Event",
        "name": event["title"],
        "description": plain_description(event, 5000),
        "startDate": _local_iso(event["starts_at"], tz),
        "endDate": _local_iso(event["ends_at"], tz),
        "eventAttendanceMode": "https://schema.org/OnlineEventAttendanceMode",
        "eventStatus": "https://schema.org/EventCancelled"
        if event["status"] == "cancelled"
        else "https://schema.org/EventScheduled",
        "location": {"@type": "VirtualLocation", "url": page},
        "url": page,
        "isAccessibleForFree": True,
        "organizer": {"@type": "Organization", "name": org.name, "url": org.website or f"{base}/"},
        "offers": {
            "@type": "Offer",
            "price": 0,
            "priceCurrency": PRICE_CURRENCY,
            "availability": "https://schema.org/SoldOut" if seats == 0 else "https://schema.org/InStock",
            "url": page,
            "validFrom": _local_iso(event["created_at"], tz),
        },
    }
    if event.get("audience"):
        data["audience"] = {"@type": "Audience", "audienceType": event["audience"]}
    if has_cover:
        data["image"] = [absolute(event["cover_image_url"])]
    elif org.logo_url:
        data["image"] = [absolute(org.logo_url)]
    people = []
    for person in event.get("speakers") or []:
        entry: dict[str, Any] = {"@type": "Person", "name": person["name"]}
        if person.get("role"):
            entry["jobTitle"] = person["role"]
        if person.get("bio"):
            entry["description"] = person["bio"]
        if person.get("photo_url"):
            entry["image"] = absolute(person["photo_url"])
        people.append(entry)
    if people:
        data["performer"] = people
    return data


async def event_detail(event: dict) -> dict[str, Any]:
    """`event_page` plus what the public page alone shows: the cover with its phone-width copy,
    speakers with initials, the meta description, link-preview tags and the JSON-LD."""
    context = event_page(event)
    parts_key = _parts_key(event)
    parts = _parts(event)
    cover = None
    if event.get("cover_image_url"):
        # Read per page: a picture's stored sizes may arrive after the event's last change.
        sizes = await images.variants(event["cover_image_url"])
        cover = {
            "src": event["cover_image_url"],
            "srcset": ", ".join(f"{url} {width}w" for url, width in sizes) if len(sizes) > 1 else "",
            "alt": event.get("cover_alt") or "",
            "width": COVER_SIZE[0],
            "height": COVER_SIZE[1],
        }
    if "page_url" not in parts:
        parts.update(
            speakers=[dict(p, initials=initials(p["name"])) for p in event.get("speakers") or []],
            meta_description=plain_description(event),
            page_url=f"{settings.get().base_url.rstrip('/')}/events/{event['slug']}",
        )
    ld_key = (cover is not None, seats_left(event) == 0)
    ld = parts["json_ld"].get(ld_key)
    if ld is None:
        data = json_ld(event, has_cover=cover is not None)
        # As the template's `tojson` filter writes it (Jinja's default policy), once.
        ld = parts["json_ld"][ld_key] = (data, Markup(htmlsafe_json_dumps(data, dumps=json.dumps, sort_keys=True)))
    context.update(
        cover=cover,
        speakers=parts["speakers"],
        meta_description=parts["meta_description"],
        page_url=parts["page_url"],
        og_image=absolute(event["cover_image_url"]) if cover else "",
        json_ld=ld[0],
        json_ld_script=ld[1],
        show_count=bool(event.get("show_registered_count")),
        registered=event["taken"],
        # What the pieces above were built for (render_event_page keeps frames by it).
        parts_key=parts_key,
    )
    return context


def calendar_links_of(event: dict, build: Any) -> Any:
    """The event's add-to-calendar links as `build(event)` makes them, once per event version."""
    parts = _parts(event)
    if "links" not in parts:
        parts["links"] = build(event)
    return parts["links"]


# --- The event page's frame ---------------------------------------------------------------------
# A GET of an event page (nothing typed: no errors, values or notice) depends on the seats taken
# only through the state badge ("12 seats left", "Full – waitlist open") and the registered
# count; all the rest is fixed by what `_parts` is keyed by (the event's version, the
# organisation's identity, the base URL), the template (one per app: its globals), the state,
# whether the event is full and the cover's stored sizes. So the whole template is rendered once
# per such combination with two stand-ins ("slots") where those two go, and kept as the bytes
# between them; a request renders the badge (the template's own macro) and the count and joins.
# A render after a registration (the usual cache miss: seats changed, the version did not) does
# only that; a new version, state or crossing to full renders the whole template again.
FRAMES_KEPT = 256
FRAMES = True  # bench/serve_uncached.py --whole turns frames off to measure the whole render
_FRAMES: dict[tuple, tuple[tuple[bytes, ...], tuple[str, ...], Any] | None] = {}
# Marks no typed text can hold by chance: a NUL and 128 random bits, new in every process.
_NONCE = secrets.token_hex(16)
_SLOT_NAMES = ("badge", "registered")
_SPLIT = re.compile("\x00" + _NONCE + ":(" + "|".join(_SLOT_NAMES) + ")\x00")


class SlotMisuse(Exception):
    """A template did more with a slot than print it: that page is rendered whole."""


class _Slot:
    """Stands where a per-request value is printed, and counts how often it is: a frame holds
    exactly as many marks as its slots were printed, or it is not used."""

    __slots__ = ("mark", "uses")

    def __init__(self, name: str) -> None:
        self.mark, self.uses = f"\x00{_NONCE}:{name}\x00", 0

    def __html__(self) -> str:
        self.uses += 1
        return self.mark

    def _misuse(self, *args: Any) -> Any:
        raise SlotMisuse(self.mark)

    __str__ = __bool__ = __eq__ = __ne__ = __lt__ = __gt__ = __int__ = __len__ = __iter__ = _misuse
    __hash__ = None  # type: ignore[assignment]


def _frame_key(template: Any, context: dict) -> tuple | None:
    """What the page's frame depends on besides the parts' key, or None when the page is not
    one a frame may stand for (a form shown again, a notice)."""
    if context["errors"] or context["notice"] is not None or context["values"] != {"answers": {}}:
        return None
    parts_key = context["parts_key"]
    if parts_key != _parts_key(context["event"]):
        return None  # the identity changed while the cover's sizes were read: this page is mixed
    cover = context["cover"]
    return (
        parts_key,
        template,
        context["state"],
        context["full"],
        None if cover is None else tuple(cover.items()),
        context["links"] is not None,
    )


def _build_frame(template: Any, context: dict) -> tuple[tuple[bytes, ...], tuple[str, ...], Any] | None:
    slots = {name: _Slot(name) for name in _SLOT_NAMES}
    try:
        text = template.render(**{**context, **slots}, request=None, csrf_input="")
    except SlotMisuse:
        return None
    pieces = _SPLIT.split(text)
    names = tuple(pieces[1::2])
    if any(names.count(name) != slot.uses for name, slot in slots.items()):
        return None  # a mark the slots did not print (cannot happen by chance): rendered whole
    badge = template.environment.get_template("_macros.html").module.state_badge
    return tuple(p.encode("utf-8") for p in pieces[::2]), names, badge


def render_event_page(template: Any, context: dict, request: Any = None) -> bytes:
    """The event page `template` (events/detail.html) gives for `context` (public.page_context's),
    as `template.render` gives it, from the kept frame when there is one for this page."""
    key = _frame_key(template, context) if FRAMES else None
    frame = None
    if key is not None:
        if key in _FRAMES:
            frame = _FRAMES[key]
        else:
            if len(_FRAMES) >= FRAMES_KEPT:
                _FRAMES.clear()
            # None kept too: a page that cannot have a frame is not tried again.
            frame = _FRAMES[key] = _build_frame(template, context)
    if frame is None:
        return template.render(**context, request=request, csrf_input="").encode("utf-8")
    segments, names, badge = frame
    values = {
        "badge": str(badge({"state": context["state"], "full": context["full"], "seats_left": context["seats_left"]})),
        "registered": str(context["registered"]),
    }
    out = [segments[0]]
    for name, segment in zip(names, segments[1:], strict=True):
        out.append(values[name].encode("utf-8"))
        out.append(segment)
    return b"".join(out)
