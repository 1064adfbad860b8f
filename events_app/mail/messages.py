"""Building the email for one claimed outbox row: what the registrant or subscriber receives.

The outbox row holds only ids and what changed; the message is rendered at send time from the
registration and event as they are now, so a retried or late row never carries stale links or
times. Its Message-ID is derived from the row id, so a retry is the same message to the receiving
side (and to anyone deduplicating on it).

The worker sends `build_raw`'s message: for the kinds about a registration it is assembled from
parts built once per event version, kind and identity (mail/transactional.py) and parses part by
part as `build`'s does; `build` (also `build_reference`) is today's builder, used for the other
kinds, staff previews and tests, and as the fallback.

Messages about a registration that carry a calendar invite are
  multipart/mixed
    multipart/alternative: text/plain, text/html, text/calendar; method=REQUEST|CANCEL
    application/ics attachment (invite.ics): the same calendar, for clients that ignore the part
and plain multipart/alternative (text, HTML) otherwise. Reminders and follow-ups (queued by
domain/schedule.py) never carry a calendar part: the invite is already in the calendar, and a
REQUEST that changes nothing would only make clients show the event as "updated".

Subscription messages (`subscription_confirm`, `subscription_known`, `subscription_link`,
queued by domain/subscriptions.py with payload {"subscriber_id"}) are transactional: plain
text and HTML, no List-Unsubscribe (they are answers to a request, not list mail), built from the
subscriber row as it is at send time. One for an erased or deleted subscriber is dropped, and so
is a confirmation request once the subscription is no longer pending (confirmed, or unsubscribed
since) and an "already subscribed" note once it is no longer confirmed.

Names and titles from people's input reach headers only through mail/headers.py (registry
Address objects, display names reduced to a safe phrase) and reach bodies on one line. A row whose
address cannot be written into a header raises `Unbuildable` (an `Undeliverable`): it fails once.

A row whose registration or event is gone raises `Undeliverable`, one of a kind not built here
`UnknownKind`; a row overtaken by a later change raises `Superseded`: a confirmation for a
registration since cancelled, a cancellation for one since renewed (sending it would put a wrong
entry in the person's calendar, and the message about the later change is already queued); a
reminder for a registration no longer registered, an event no longer published, a start time
that has since moved (schedule.py queues the one for the new time) or an event already over; a
follow-up for a cancelled registration or event, or once the recording link is removed. The
worker marks Undeliverable and Superseded rows failed with the reason, and retries UnknownKind
ones later (a newer process may have queued them during an upgrade).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Literal

from .. import clock, db, ics
from ..domain import audience, events, identity, registrations, retention, subscriptions
from ..domain.errors import NotFound
from ..settings import Settings
from ..timefmt import format_range
from . import headers, render

# Answers to a subscriber's own request (domain/subscriptions.py), built from the subscriber row.
SUBSCRIPTION_KINDS = {"subscription_confirm", "subscription_known", "subscription_link"}
# Kinds this module builds; other kinds (bulletin issues, announcements) are built elsewhere.
KINDS = SUBSCRIPTION_KINDS | {
    registrations.LINKS_KIND,
    "registration_confirmed",
    "registration_promoted",
    "registration_cancelled",
    "event_changed",
    "event_cancelled",
    "reminder",
    "follow_up_attended",
    "follow_up_missed",
}
# The iTIP method of an invite: it goes into the calendar, or comes out of it.
Method = Literal["REQUEST", "CANCEL"]
# Kinds that put (or keep) the event in the person's calendar.
REQUEST_KINDS = {"registration_confirmed", "registration_promoted", "event_changed"}
# Kinds whose email shows the personal join link.
JOIN_KINDS = REQUEST_KINDS | {"reminder"}
FOLLOW_UP_KINDS = {"follow_up_attended", "follow_up_missed"}

CHANGE_TEXT = {
    "starts_at": "The time has changed.",
    "ends_at": "The time has changed.",
    "timezone": "The time has changed.",
    "title": "The title has changed.",
    "join_url": "The meeting link has changed. Your personal join link stays the same and takes you to the new meeting.",
}
TIME_FIELDS = {"starts_at", "ends_at", "timezone"}


class Undeliverable(Exception):
    """The row cannot become a message (its registration or event is gone, or its kind is
    unknown). Retrying will not help."""


class Superseded(Undeliverable):
    """A later change made this message wrong; the message about that change is queued."""


class Unbuildable(Undeliverable):
    """The row's data cannot be written as a message (an address with control characters, or
    non-ASCII before the @): the same on every attempt, so it fails once with the reason."""


class UnknownKind(Exception):
    """No builder for this kind here, perhaps a newer process queued it during a rolling
    upgrade: the worker retries it later rather than failing it."""


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out


def message_id(row_id: int, settings: Settings, created_at: datetime | None = None) -> str:
    """The Message-ID of outbox row `row_id`: the same on every attempt. The row's creation time
    is part of it because ids restart with a new database, and Gmail silently drops a message
    whose Message-ID it has seen before."""
    if created_at is None:
        return f"<outbox-{row_id}@{settings.host}>"
    stamp = _base36(int(created_at.timestamp() * 1_000_000))
    return f"<outbox-{row_id}.{stamp}@{settings.host}>"


async def _created_at(row: dict) -> datetime:
    if row.get("created_at") is not None:
        return row["created_at"]
    rows = await db.fetch("SELECT created_at FROM outbox WHERE id = {}", row["id"])
    if not rows:
        raise Undeliverable(f"outbox row {row['id']} no longer exists")
    return rows[0]["created_at"]


async def _load(registration_id) -> tuple[dict, dict]:
    rows = await db.fetch("SELECT * FROM registration WHERE id = {}", registration_id)
    if not rows:
        raise Undeliverable(f"registration {registration_id} no longer exists")
    registration = rows[0]
    if retention.is_purged(registration):  # its details were deleted after the event
        raise Superseded("the registrant's details were deleted after the event")
    try:
        event = await events.get(registration["event"])
    except NotFound:
        raise Undeliverable(f"event {registration['event']} no longer exists") from None
    return registration, event


def in_words(minutes: int) -> str:
    """How far ahead a reminder is, as its subject says it: '30 minutes', '1 hour', '24 hours',
    '2 days'. A day is said as 24 hours (people read "tomorrow at this time"); whole days from
    two on; anything else in the largest unit that divides it."""

    def unit(n: int, word: str) -> str:
        return f"{n} {word}" if n == 1 else f"{n} {word}s"

    if minutes >= 2 * 1440 and minutes % 1440 == 0:
        return unit(minutes // 1440, "day")
    if minutes >= 60 and minutes % 60 == 0:
        return unit(minutes // 60, "hour")
    return unit(minutes, "minute")


def _same_moment(iso: str | None, moment: datetime) -> bool:
    try:
        return iso is not None and datetime.fromisoformat(iso) == moment
    except (TypeError, ValueError):
        return False


def _plan_scheduled(kind: str, payload: dict, registration: dict, event: dict) -> tuple[str, Method | None, dict]:
    """Reminders and follow-ups: what domain/schedule.py queued, checked against now."""
    status = registration["status"]
    if status != "registered":
        raise Superseded(f"the registration is {status}")
    if event["status"] != "published":
        raise Superseded(f"the event is {event['status']}")
    if kind == "reminder":
        if not _same_moment(payload.get("starts_at"), event["starts_at"]):
            # The event moved: schedule.py queues the reminder for the new time by itself.
            raise Superseded("the event was rescheduled; this reminder was for the old time")
        offset = payload.get("offset")
        if not isinstance(offset, int) or offset not in (event.get("reminders") or []):
            raise Superseded(f"the event no longer has a reminder {offset} minutes before")
        if event["ends_at"] <= clock.now():
            raise Superseded("the event is over")  # e.g. held back by a long SMTP outage
        return kind, None, {"starts_in": in_words(offset)}
    if not event.get("recording_url"):
        raise Superseded("the event no longer has a recording or resources link")
    # The row's kind was decided when it was queued; the message says what is true when it goes.
    template = "follow_up_attended" if registration.get("attended_at") else "follow_up_missed"
    return template, None, {"recording_url": event["recording_url"]}


def _plan(kind: str, payload: dict, registration: dict, event: dict) -> tuple[str, Method | None, dict]:
    """(template, invite method or None, extra context) for a row, or raise Superseded."""
    if kind == "reminder" or kind in FOLLOW_UP_KINDS:
        return _plan_scheduled(kind, payload, registration, event)
    status = registration["status"]
    if kind in REQUEST_KINDS:
        if status == "cancelled":
            raise Superseded("the registration was cancelled before this message was sent")
        if event["status"] == "cancelled":
            raise Superseded("the event was cancelled before this message was sent")
    if kind == "registration_confirmed":
        if status == "waitlisted":
            return "registration_waitlisted", None, {}
        return kind, "REQUEST", {"resend": bool(payload.get("resend"))}
    if kind == "registration_promoted":
        if status != "registered":
            raise Superseded(f"the registration is {status}, no longer promoted")
        return kind, "REQUEST", {}
    if kind == "registration_cancelled":
        # Registering again makes a new calendar entry (a new UID): the cancelled one must still
        # leave the calendar. Without a UID of its own (queued before UIDs were stored) the row
        # names the entry the new registration now holds, and sending it would remove that.
        if status != "cancelled" and payload.get("uid") in (None, "", registration.get("calendar_uid")):
            raise Superseded("the person registered again before this message was sent")
        was = payload.get("was", "registered")
        return kind, ("CANCEL" if was == "registered" else None), {"was": was}
    if kind == "event_changed":
        fields = payload.get("changes") or []
        changes = list(dict.fromkeys(CHANGE_TEXT[f] for f in fields if f in CHANGE_TEXT))
        # Only registered people hold an invite to update; the domain notifies no one else.
        method: Method | None = "REQUEST" if status == "registered" else None
        return (
            kind,
            method,
            {
                "changes": changes or ["The details have changed."],
                "time_changed": bool(TIME_FIELDS & set(fields)),
                # What it was before ({"when", "title"}, written by events.update): shown beside the new.
                "before": payload.get("before") or {},
            },
        )
    if kind == "event_cancelled":
        was = payload.get("status") or status
        return kind, ("CANCEL" if was == "registered" else None), {"status": was}
    raise UnknownKind(f"no message is defined for kind {kind!r}")


async def _message(
    row: dict, settings: Settings, rendered: tuple[str, str, str], name: str | None, address: str
) -> EmailMessage:
    """The headers every message has and its text and HTML parts (multipart/alternative)."""
    subject, text, html = rendered
    try:
        recipient = headers.address(name, address)
    except headers.BadAddress as exc:
        raise Unbuildable(f"the message cannot be built: {exc}") from None
    org = identity.snapshot()
    try:
        sender = headers.from_address(settings.mail_from, render.sender_name(org, settings.mail_from))
    except headers.BadAddress as exc:  # our configuration, not this row: retried once it is fixed
        raise RuntimeError(f"EVENTS_MAIL_FROM cannot be used: {exc}") from None
    message = EmailMessage()
    message["From"] = sender
    reply_to = headers.reply_to(org.reply_to)
    if reply_to is not None:
        message["Reply-To"] = reply_to
    message["To"] = recipient
    message["Subject"] = headers.subject(subject)
    message["Date"] = format_datetime(clock.now())
    message["Message-ID"] = message_id(row["id"], settings, await _created_at(row))
    # RFC 3834: a machine wrote this; autoresponders should not answer it.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "OOF, AutoReply"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


async def _subscriber(row: dict, payload: dict) -> dict:
    """The subscriber a subscription row is about, with `topics`; Undeliverable or Superseded
    when there is no one to write to any more."""
    if "subscriber_id" not in payload:
        raise Undeliverable("the row names no subscriber")
    try:
        subscriber = await subscriptions.get(payload["subscriber_id"])
    except NotFound:
        raise Undeliverable(f"subscriber {payload['subscriber_id']} no longer exists") from None
    # An erased address asked for again is written to only to confirm that request.
    if not subscriber["email"] or (subscriber["status"] == "erased" and row["kind"] != "subscription_confirm"):
        raise Superseded("the subscriber erased their data")
    if row["recipient"] and row["recipient"].lower() != subscriber["email"].lower():
        raise Undeliverable("the row's recipient is not the subscriber's address")
    return subscriber


def _plan_subscription(kind: str, subscriber: dict) -> None:
    """Raise Superseded when the subscriber's status makes the message wrong by now."""
    status = subscriber["status"]
    if kind == "subscription_confirm" and not subscriber["awaits_confirmation"]:
        # Confirmed: nothing left to confirm. Unsubscribed (or erased) since, with no new opt-in
        # asked for: asking would be wrong.
        raise Superseded(f"the subscription is {status}; there is nothing to confirm")
    if kind == "subscription_known" and status != "confirmed":
        raise Superseded(f"the subscription is {status}, no longer confirmed")


def _day(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return f"{moment.day} {moment:%B %Y}"


async def _build_subscription(row: dict, payload: dict, settings: Settings) -> EmailMessage:
    """A subscription message (see the module doc) for the subscriber as they are now."""
    kind = row["kind"]
    subscriber = await _subscriber(row, payload)
    _plan_subscription(kind, subscriber)
    base = settings.base_url.rstrip("/")
    links = {"site": base + "/"}
    if kind == "subscription_confirm":
        # Only the confirmation link: until the address is confirmed its owner may not be the
        # person who typed it, and needs nothing else from us.
        links["confirm"] = f"{base}/s/confirm/{subscriptions.confirm_token(subscriber)}"
    else:
        token = subscriptions.manage_token(subscriber)
        links["manage"] = f"{base}/s/{token}"
        links["unsubscribe"] = f"{base}/s/{token}/unsubscribe"
    # A confirmation lists what it would give (an opt-in asked for while opted out).
    chosen = set(subscriber["confirm_topics"] if kind == "subscription_confirm" else subscriber["topics"])
    paused = audience.paused_until_shown(subscriber)
    context = {
        "name": headers.single_line(subscriber["name"]),
        "status": subscriber["status"],
        "topics": [t for t in await subscriptions.all_topics() if t["slug"] in chosen],
        "paused_until": _day(paused) if paused is not None else None,
        "valid_days": subscriptions.CONFIRM_VALID.days,
        "links": links,
        "organizer_name": render.sender_name(identity.snapshot(), settings.mail_from),
        "site_host": settings.host,
    }
    return await _message(
        # To the address as stored (the one confirmed), however the request spelled it.
        row,
        settings,
        render.render(kind, context),
        subscriber["name"],
        subscriber["email"],
    )


async def _build_links(row: dict, payload: dict, settings: Settings) -> EmailMessage:
    """ "Email me my registration link" (queued by domain/registration_links.send_links with
    {"registration_ids"}): the personal link of each registration still active and upcoming for
    the row's address, read now; Superseded when none is left."""
    address = row["recipient"] or ""
    items = await registrations.link_items(list(payload.get("registration_ids") or []), address)
    if not items:
        raise Superseded("no registration of this address is active and upcoming any more")
    base = settings.base_url.rstrip("/")
    name = headers.single_line(items[0]["name"])
    context = {
        "name": name,
        "registrations": items,
        "organizer_name": render.sender_name(identity.snapshot(), settings.mail_from),
        "site_host": settings.host,
        "links": {"site": base + "/", "events": f"{base}/events", "request": f"{base}/r/link"},
    }
    return await _message(row, settings, render.render(registrations.LINKS_KIND, context), name, address)


def registration_context(
    template: str,
    method: Method | None,
    extra: dict,
    event: dict,
    settings: Settings,
    *,
    name: str,
    status: str,
    manage_token: str,
    join_token: str,
) -> dict:
    """The template context of a message about a registration (without `position`, which the
    waitlist message adds). mail/transactional.py renders it with placeholders for the personal
    values, once per event version."""
    base = settings.base_url.rstrip("/")
    links = {
        "site": base + "/",
        "events": f"{base}/events",
        "event": f"{base}/events/{event['slug']}",
        "manage": f"{base}/r/{manage_token}",
        "join": f"{base}/j/{join_token}",
    }
    # The only "add it yourself" link a registrant gets is their own invite as a file (same UID):
    # a Google or Outlook template link, or the public .ics, would make a second, unrelated copy.
    links["ics"] = f"{links['manage']}.ics"
    return {
        "name": name,
        "event": event,
        "when": format_range(event["starts_at"], event["ends_at"], event["timezone"]),
        "links": links,
        "organizer_name": render.sender_name(identity.snapshot(), settings.mail_from),
        "site_host": settings.host,
        "has_invite": method is not None,
        "show_join": template in JOIN_KINDS,
        "status": status,
        "resend": False,
        **extra,
    }


def parse_payload(row: dict) -> dict:
    """A row's payload as a dict (stored as JSON text on SQLite)."""
    payload = row["payload"]
    return json.loads(payload) if isinstance(payload, str) else (payload or {})


async def build_raw(row: dict, settings: Settings, batch=None):
    """The message for a claimed row as the worker sends it: a RawMessage assembled from parts
    built once per event version (mail/transactional.py) for the kinds about a registration,
    the EmailMessage of `build` for the others. `batch`: a transactional.Batch loaded for the
    claimed rows (no query per row)."""
    from . import transactional

    return await transactional.build(row, settings, batch)


async def build_many(rows: list[dict], settings: Settings) -> list:
    """`build_raw` for each of `rows`, their registrations, events and waitlist places read in a
    few queries for the whole batch: a RawMessage or EmailMessage per row, or the exception
    (Undeliverable, Superseded, UnknownKind, ...) that row raised, in the order of `rows`."""
    from . import transactional

    batch = await transactional.Batch.load(rows)
    out: list = []
    for row in rows:
        try:
            out.append(await transactional.build(row, settings, batch))
        except Exception as exc:  # handed back to the caller, one per row
            out.append(exc)
    return out


async def build(row: dict, settings: Settings) -> EmailMessage:
    """The email for a claimed outbox row (`id`, `kind`, `recipient`, `payload`).

    Reads the registration and event, or the subscriber; raises Undeliverable or Superseded (see
    the module doc). This is the reference: the worker sends `build_raw`'s message, assembled
    from shared parts, which tests/mail/test_fast_messages.py checks parses as this one does."""
    kind = row["kind"]
    if kind not in KINDS:
        raise UnknownKind(f"no message is defined for kind {kind!r}")
    payload = parse_payload(row)
    if kind in SUBSCRIPTION_KINDS:
        return await _build_subscription(row, payload, settings)
    if kind == registrations.LINKS_KIND:
        return await _build_links(row, payload, settings)
    if "registration_id" not in payload:
        raise Undeliverable("the row names no registration")
    registration, event = await _load(payload["registration_id"])
    template, method, extra = _plan(kind, payload, registration, event)
    organizer = events.organizer(settings)
    context = registration_context(
        template,
        method,
        extra,
        event,
        settings,
        name=headers.single_line(registration["name"]),  # a name cannot add lines
        status=registration["status"],
        manage_token=registrations.personal_token(registration),
        join_token=registrations.join_token(registration),
    )
    links = context["links"]
    if template == "registration_waitlisted":
        context["position"] = await registrations.waitlist_position(event["id"], registration["id"])
    message = await _message(
        row, settings, render.render(template, context), registration["name"], row["recipient"] or registration["email"]
    )
    return await _with_invite(message, method, event, registration, links, organizer, payload)


# The name tests and the fast path's fallback use for today's builder.
build_reference = build


async def _with_invite(
    message: EmailMessage,
    method: Method | None,
    event: dict,
    registration: dict,
    links: dict,
    organizer: events.Organizer,
    payload: dict,
) -> EmailMessage:
    """`message` with the personal invite (text/calendar part and invite.ics) when `method`."""
    if method is not None:
        if not registration.get("calendar_uid"):
            await registrations.calendar_uid("registration", registration)
        calendar = ics.invite(
            event,
            registration,
            method=method,
            organizer_name=organizer.name,
            organizer_email=organizer.email,
            manage_url=links["manage"],
            join_url_personal=links["join"],
            event_url=links["event"],
            # A cancellation removes the entry it was queued for, even if the person has
            # registered again since (a new entry with its own UID).
            uid=(payload.get("uid") or None) if method == "CANCEL" else None,
        )
        # The method parameter must equal METHOD: inside, or Outlook and Gmail ignore the part.
        message.add_alternative(
            calendar, maintype="text", subtype="calendar", params={"charset": "UTF-8", "method": method}
        )
        message.add_attachment(calendar, maintype="application", subtype="ics", filename="invite.ics")
    return message
