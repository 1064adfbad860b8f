"""Messages about a registration assembled from parts built once, as bulk mail is (mail/bulk.py).

A rush of registrations means thousands of confirmations for one event that differ only in a
few personal values. Building each with the `email` package around a freshly rendered,
CSS-inlined template and a fresh icalendar object costs milliseconds; a bare Jinja render of the
same templates costs some 75 us. So `Parts` holds, per (template, invite method, what the row
says, event and its version, organisation identity, settings, templates on disk):

- the subject, text and HTML rendered and inlined once with placeholders (`NAME`, `MANAGE`,
  `JOIN`, `POSITION`: the greeting's name, the two link tokens, the waitlist place), each body
  cut at the placeholders and its pieces quoted-printable encoded once;
- the From, Reply-To and Subject lines folded once;
- the invite written once (events_app/ics.py `InviteTemplate`) with slots for the personal
  properties (UID, SEQUENCE, DTSTAMP, ATTENDEE, DESCRIPTION, LOCATION).

`compose()` fills in one registration's values and writes the MIME by hand: the same tree,
headers (in the same order), parameters and transfer encodings that `messages.build` (the
reference, still used by staff previews and as the fallback) writes through the `email`
package, and the same decoded text, HTML and calendar. Only the boundaries and the line breaks
inside quoted-printable differ. The transfer encoding of each body is chosen by the `email`
package's own rule (7bit when ASCII with short lines; else quoted-printable or base64, whichever
is shorter on the first ten lines), worked out from per-line figures computed once.

The placeholders survive Jinja and the CSS inliner unchanged; a name goes into the HTML escaped
as the inliner's serializer writes text (`&`, `<`, `>` and no-break space), into the text as
it is. A placeholder holds a random per-process part, so no title or name can contain one.

Invalidation: the key holds the event's version and a fingerprint of its fields (every change
raises the version; the fingerprint also catches a row changed behind the domain's back, or ids
that start again in a fresh database), the identity snapshot (`identity.snapshot()`, a frozen
value: any change of name, logo, colour, reply-to or address gives another), the settings that
reach a message, and the email templates' modification times (looked at once a second). The
cache is an LRU of `CACHE_SIZE` entries.

Reading: `Batch.load(rows)` reads what a claimed batch's rows need (their registrations, their
events, every waitlisted one's place) in three queries at most, whatever the batch's size; the
worker's Delivery keeps one per claimed run (`Delivery.prepare`). Without a batch, a row reads its
registration and event as `messages.build` does (two queries, three for a waitlist notice).
Rows read with the batch are as they were when it was claimed, seconds before sending: a
confirmation for a registration cancelled in between still goes, followed by the cancellation
(queued after it, sent after it on the same connection).
"""

from __future__ import annotations

import binascii
import json
import logging
import os
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from email import quoprimime
from email.message import EmailMessage
from email.utils import format_datetime

from .. import clock, db, ics
from ..domain import events, identity, registrations, retention
from ..settings import Settings
from . import headers, messages, render, verp
from .bulk import RawMessage, qp_piece

log = logging.getLogger(__name__)

CACHE_SIZE = 64  # shared parts kept (event, kind, content version, identity)

_MARK = "@@" + secrets.token_hex(6)
NAME, MANAGE, JOIN, POSITION = (f"{_MARK}{n}@@" for n in "nmjp")
_MARKS = (NAME, MANAGE, JOIN, POSITION)
_SPLIT = re.compile("(" + "|".join(re.escape(m) for m in _MARKS) + ")")
_LINE_LIMIT = 78  # the email package's max_line_length (policy.default), for its 7bit rule

# How often the fast path was taken, and how often shared parts were rendered (tests, bench).
stats = {"fast": 0, "parts": 0, "reference": 0}


def _pieces(text: str) -> list[str | int]:
    """`text` as literal pieces and placeholder numbers (indexes into _MARKS)."""
    out: list[str | int] = []
    for part in _SPLIT.split(text):
        if part in _MARKS:
            out.append(_MARKS.index(part))
        elif part:
            out.append(part)
    return out


def _fill(pieces: list[str | int], values: tuple[str, ...]) -> str:
    return "".join(values[p] if isinstance(p, int) else p for p in pieces)


def _qp_length(line: bytes) -> int:
    """The length the email package's quoted-printable encoder gives one line (no line end)."""
    return len(quoprimime.body_encode(line.decode("latin-1"), _LINE_LIMIT)) if line else 0


def html_text(value: str) -> str:
    """`value` as text in the inlined HTML: escaped by Jinja, then parsed and written again by
    the CSS inliner (html5ever), which escapes only these."""
    return value.replace("&", "&amp;").replace("\xa0", "&nbsp;").replace("<", "&lt;").replace(">", "&gt;")


class Body:
    """One text or HTML body with placeholders, cut and encoded once; `encode(values)` gives one
    message's (Content-Transfer-Encoding, payload) as the email package would choose it."""

    def __init__(self, content: str) -> None:
        # The email package's normal form: lines split at CR or LF, joined with LF, one at the end.
        text = "\n".join(line.decode("utf-8") for line in content.encode("utf-8").splitlines()) + "\n"
        self.raw = _pieces(text)
        self.qp = [p if isinstance(p, int) else qp_piece(p) for p in self.raw]
        self.static_ascii = True
        self.static_max = 0
        self.dynamic: list[list[str | int]] = []  # the lines with a placeholder
        # The first ten lines (the email package's sample): (bytes, QP length) or pieces.
        self.first: list[tuple[int, int] | list[str | int]] = []
        for number, line in enumerate(text.split("\n")[:-1]):
            entry: tuple[int, int] | list[str | int]
            if _SPLIT.search(line):
                entry = _pieces(line)
                self.dynamic.append(entry)
            else:
                data = line.encode("utf-8")
                self.static_ascii = self.static_ascii and data.isascii()
                self.static_max = max(self.static_max, len(data))
                entry = (len(data), _qp_length(data) if number < 10 else 0)
            if number < 10:
                self.first.append(entry)

    def encode(self, values: tuple[str, ...]) -> tuple[str, bytes]:
        if self.static_ascii and self.static_max <= _LINE_LIMIT:
            for pieces in self.dynamic:
                line = _fill(pieces, values).encode("utf-8")
                if not line.isascii() or len(line) > _LINE_LIMIT:
                    break
            else:
                return "7bit", _fill(self.raw, values).replace("\n", "\r\n").encode("ascii")
        # email.contentmanager's sniff: quoted-printable unless base64 is shorter on ten lines.
        size = qp_size = len(self.first)  # the line ends
        for entry in self.first:
            if isinstance(entry, tuple):
                size += entry[0]
                qp_size += entry[1]
            else:
                line = _fill(entry, values).encode("utf-8")
                size += len(line)
                qp_size += _qp_length(line)
        if qp_size > 4 * ((size + 2) // 3) + 1:
            return "base64", _base64_lines(_fill(self.raw, values).encode("utf-8"))
        encoded = [qp_piece(v) for v in values]
        return "quoted-printable", b"=\r\n".join(encoded[p] if isinstance(p, int) else p for p in self.qp)


def _base64_lines(data: bytes) -> bytes:
    """`data` in base64 as the email package writes it (lines of 76 characters, from 57 bytes
    each), CRLF after every line."""
    encoded = binascii.b2a_base64(data, newline=False)
    return b"".join(encoded[i : i + 76] + b"\r\n" for i in range(0, len(encoded), 76))


def _boundary() -> str:
    # As the email package makes them (15 "=", 19 digits, "=="): never inside QP or base64.
    return "=" * 15 + f"{secrets.randbelow(10**19):019d}" + "=="


@dataclass
class Parts:
    """What every message of one key shares (see the module doc)."""

    key: tuple
    subject: list[str | int]  # pieces; a subject without placeholders is folded once
    subject_line: str | None
    text: Body
    html: Body
    sender: str  # From (and Reply-To) lines, folded
    method: str | None
    invite: ics.InviteTemplate | None
    outer: str = field(default_factory=_boundary)
    inner: str = field(default_factory=_boundary)


def _sender_lines(settings: Settings) -> str:
    org = identity.snapshot()
    try:
        line = headers.fold_address(
            "From", headers.from_address(settings.mail_from, render.sender_name(org, settings.mail_from))
        )
    except headers.BadAddress as exc:  # our configuration, not this row: retried once it is fixed
        raise RuntimeError(f"EVENTS_MAIL_FROM cannot be used: {exc}") from None
    reply_to = headers.reply_to(org.reply_to)
    if reply_to is not None:
        line += "\r\n" + headers.fold_address("Reply-To", reply_to)
    return line


def _make_parts(key: tuple, template: str, method, extra: dict, event: dict, status: str, settings: Settings) -> Parts:
    context = messages.registration_context(
        template, method, extra, event, settings, name=NAME, status=status, manage_token=MANAGE, join_token=JOIN
    )
    if template == "registration_waitlisted":
        context["position"] = POSITION
    subject, text, html = render.render(template, context)
    subject_pieces = _pieces(subject)
    invite = None
    if method is not None:
        organizer = events.organizer(settings)
        invite = ics.InviteTemplate(
            event,
            method=method,
            organizer_name=organizer.name,
            organizer_email=organizer.email,
            event_url=context["links"]["event"],
        )
    stats["parts"] += 1
    return Parts(
        key=key,
        subject=subject_pieces,
        subject_line=None
        if any(isinstance(p, int) for p in subject_pieces)
        else headers.fold_text("Subject", headers.subject(subject)),
        text=Body(text),
        html=Body(html),
        sender=_sender_lines(settings),
        method=method,
        invite=invite,
    )


# -- the caches ----------------------------------------------------------------------------------

_parts: OrderedDict[tuple, Parts] = OrderedDict()
_templates: list = [float("-inf"), None]  # [checked at (monotonic), stamp]


def forget() -> None:
    """Drop every cached part (tests; nothing else needs it)."""
    _parts.clear()
    _templates[0] = float("-inf")


def templates_stamp() -> tuple:
    """The email templates' directory and the modification times of its files, read at most once
    a second: a changed template renders anew."""
    now = time.monotonic()
    if now - _templates[0] >= 1.0:
        root = str(render.emails_dir())
        found = []
        for folder, _dirs, files in os.walk(root):
            for name in files:
                try:
                    found.append(os.stat(os.path.join(folder, name)).st_mtime_ns)
                except OSError:
                    found.append(0)
        _templates[0], _templates[1] = now, (root, hash(tuple(found)), len(found))
    return _templates[1]


def parts_for(template: str, method, extra: dict, event: dict, status: str, settings: Settings) -> Parts:
    """The shared parts for this message, from the cache or rendered now."""
    org = identity.snapshot()
    key = (
        template,
        method,
        status,
        json.dumps(extra, sort_keys=True, default=str) if extra else "",
        event["id"],
        event["version"],
        fingerprint(event),
        org,
        render._logo_sizes.get(org.logo_url),
        settings.base_url,
        settings.host,
        settings.mail_from,
        templates_stamp(),
        id(render.environment()),
    )
    found = _parts.get(key)
    if found is None:
        found = _parts[key] = _make_parts(key, template, method, extra, event, status, settings)
        while len(_parts) > CACHE_SIZE:
            _parts.popitem(last=False)
    else:
        _parts.move_to_end(key)
    return found


def fingerprint(event: dict) -> int:
    """What the event's messages are made of, as one number: every field but the seat count
    (which moves with each registration). Normally the version says as much (every change raises
    it); this also holds when a row is changed behind the domain's back, or ids start again in a
    fresh database."""
    found = event.get("_fingerprint")
    if found is None:
        found = event["_fingerprint"] = hash(repr(sorted((k, v) for k, v in event.items() if k != "taken")))
    return found


@dataclass
class Batch:
    """What a claimed batch's registration rows need, read in a few queries."""

    registrations: dict = field(default_factory=dict)  # id -> registration row
    events: dict = field(default_factory=dict)  # id -> event
    positions: dict = field(default_factory=dict)  # registration id -> waitlist place

    @classmethod
    async def load(cls, rows: list[dict]) -> Batch:
        batch = cls()
        ids = set()
        for row in rows:
            if row["kind"] in REGISTRATION_KINDS:
                try:
                    ids.add(int(messages.parse_payload(row)["registration_id"]))
                except (KeyError, TypeError, ValueError):
                    continue
        if not ids:
            return batch
        where, args = db.sql_in("id", sorted(ids))
        waiting: dict[int, list[int]] = {}
        for registration in await db.fetch(f"SELECT * FROM registration WHERE {where}", *args):
            batch.registrations[registration["id"]] = registration
            if registration["status"] == "waitlisted":
                waiting.setdefault(registration["event"], []).append(registration["id"])
        event_ids = sorted({r["event"] for r in batch.registrations.values()})
        if event_ids:
            where, args = db.sql_in("id", event_ids)
            for event in await db.fetch(f"SELECT * FROM event WHERE {where}", *args):
                batch.events[event["id"]] = events.decode(event)
        for event_id, members in waiting.items():
            # Each one's place as registrations.waitlist_position counts it, for all in one query.
            where, args = db.sql_in("id", members)
            for found in await db.fetch(
                "SELECT id, place FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS place FROM registration "
                f"WHERE event = {{}} AND status = 'waitlisted') AS w WHERE {where}",
                event_id,
                *args,
            ):
                batch.positions[found["id"]] = int(found["place"])
        return batch


# Kinds built here; the others (subscriptions, registration links) go through messages.build.
REGISTRATION_KINDS = messages.KINDS - messages.SUBSCRIPTION_KINDS - {registrations.LINKS_KIND}


async def _load(registration_id, batch: Batch | None) -> tuple[dict, dict]:
    """(registration, event) as messages._load reads them (from `batch` when it has them),
    raising the same."""
    registration = batch.registrations.get(registration_id) if batch is not None else None
    if registration is None:
        return await messages._load(registration_id)
    if retention.is_purged(registration):  # its details were deleted after the event
        raise messages.Superseded("the registrant's details were deleted after the event")
    event = batch.events.get(registration["event"]) if batch is not None else None
    if event is None:
        raise messages.Undeliverable(f"event {registration['event']} no longer exists")
    return registration, event


async def build(row: dict, settings: Settings, batch: Batch | None = None) -> RawMessage | EmailMessage:
    """The message for a claimed row: assembled from shared parts for a row about a registration,
    else `messages.build` (the reference). Raises what `messages.build` raises."""
    kind = row["kind"]
    if kind not in REGISTRATION_KINDS:
        stats["reference"] += 1
        return await messages.build(row, settings)
    payload = messages.parse_payload(row)
    if "registration_id" not in payload:
        raise messages.Undeliverable("the row names no registration")
    registration_id = payload["registration_id"]
    registration, event = await _load(registration_id, batch)
    template, method, extra = messages._plan(kind, payload, registration, event)
    position = None
    if template == "registration_waitlisted":
        position = batch.positions.get(registration["id"]) if batch is not None else None
        if position is None:
            position = await registrations.waitlist_position(event["id"], registration["id"])
    if method is not None and not registration.get("calendar_uid"):
        await registrations.calendar_uid("registration", registration)
    try:
        parts = parts_for(template, method, extra, event, registration["status"], settings)
    except Exception:
        # A template that fails to render fails the reference the same way (and is retried);
        # anything else the shared parts cannot hold is sent as the reference builds it.
        log.warning("outbox row %s: shared parts failed; building it the reference way", row["id"], exc_info=True)
        stats["reference"] += 1
        return await messages.build(row, settings)
    message = compose(parts, row, registration, settings, payload, position, await messages._created_at(row))
    stats["fast"] += 1
    return message


_date: list = [None, ""]


def _date_line(moment) -> str:
    """The Date header as the email package writes it, formatted once per second."""
    second = moment.replace(microsecond=0)
    if _date[0] != second:
        _date[0], _date[1] = second, "Date: " + format_datetime(second)
    return _date[1]


def _message_id_line(value: str) -> str:
    line = f"Message-ID: {value}"
    if len(line) <= _LINE_LIMIT:
        return line
    policy = headers.MAIL_POLICY
    return policy.fold("Message-ID", policy.header_store_parse("Message-ID", value)[1]).rstrip("\r\n")


def compose(
    parts: Parts,
    row: dict,
    registration: dict,
    settings: Settings,
    payload: dict,
    position: int | None,
    created_at,
) -> RawMessage:
    """One registration's message from `parts` (see the module doc)."""
    name = headers.single_line(registration["name"])
    manage, join = registrations.personal_token(registration), registrations.join_token(registration)
    place = "" if position is None else str(position)
    try:
        to_line, envelope = headers.to_line(registration["name"], row["recipient"] or registration["email"])
    except headers.BadAddress as exc:
        raise messages.Unbuildable(f"the message cannot be built: {exc}") from None
    subject = parts.subject_line
    if subject is None:
        subject = headers.fold_text("Subject", headers.subject(_fill(parts.subject, (name, manage, join, place))))
    text_cte, text = parts.text.encode((name, manage, join, place))
    html_cte, html = parts.html.encode((html_text(name), manage, join, place))
    inner = parts.inner
    head = "\r\n".join(
        (
            parts.sender,
            to_line,
            subject,
            _date_line(clock.now()),
            _message_id_line(messages.message_id(row["id"], settings, created_at)),
            "Auto-Submitted: auto-generated",
            "X-Auto-Response-Suppress: OOF, AutoReply",
            "MIME-Version: 1.0",
            "",
        )
    )
    alternative = (
        f'Content-Type: multipart/alternative;\r\n boundary="{inner}"\r\n\r\n'
        f'--{inner}\r\nContent-Type: text/plain; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {text_cte}\r\n\r\n"
    ).encode()
    middle = (
        f'\r\n--{inner}\r\nContent-Type: text/html; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {html_cte}\r\nMIME-Version: 1.0\r\n\r\n"
    ).encode()
    if parts.invite is None:
        data = b"".join((head.encode(), alternative, text, middle, html, f"\r\n--{inner}--\r\n".encode()))
    else:
        base = settings.base_url.rstrip("/")
        calendar = parts.invite.render(
            registration,
            manage_url=f"{base}/r/{manage}",
            join_url_personal=f"{base}/j/{join}",
            # A cancellation removes the entry it was queued for (see messages.build).
            uid=(payload.get("uid") or None) if parts.method == "CANCEL" else None,
        )
        encoded = _base64_lines(calendar)
        outer = parts.outer
        data = b"".join(
            (
                head.encode(),
                f'Content-Type: multipart/mixed; boundary="{outer}"\r\n\r\n--{outer}\r\n'.encode(),
                alternative,
                text,
                middle,
                html,
                (
                    f"\r\n--{inner}\r\nContent-Transfer-Encoding: base64\r\n"
                    f'Content-Type: text/calendar; charset="UTF-8"; method="{parts.method}"\r\n'
                    "MIME-Version: 1.0\r\n\r\n"
                ).encode(),
                encoded,
                (
                    f"\r\n--{inner}--\r\n\r\n--{outer}\r\nContent-Type: application/ics\r\n"
                    "Content-Transfer-Encoding: base64\r\n"
                    'Content-Disposition: attachment; filename="invite.ics"\r\nMIME-Version: 1.0\r\n\r\n'
                ).encode(),
                encoded,
                f"\r\n--{outer}--\r\n".encode(),
            )
        )
    # The envelope sender names this row, so a bounce can be matched to it (mail/verp.py).
    return RawMessage(verp.bounce_address(row["id"]), envelope, data)
