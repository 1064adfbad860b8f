"""Building bulk messages (issues, announcements): the shared parts once per mailing, then a few
string replacements and one encoding per recipient.

Rendering the templates and inlining the CSS for every one of 100,000 recipients would cost
more than sending. Instead `Shared` holds the subject and both bodies rendered once, with
placeholders where the greeting and the personal links go; `compose()` fills them in and writes
the MIME message by hand: multipart/alternative with a text and an HTML part in
quoted-printable (binascii's C encoder), CRLF line ends throughout, and the bulk headers of
RFC 2369 and RFC 8058, per topic:

    List-Id: "Implementation in Action" <bulletin.example.org>
    List-Unsubscribe: <https://example.org/s/TOKEN/unsubscribe?topic=bulletin>,
     <mailto:events+u-TOKEN-MAC@example.org>
    List-Unsubscribe-Post: List-Unsubscribe=One-Click

Each topic is its own list: the List-Id and the one-click URL name the topic (or topics) this
recipient gets the mailing through, so leaving the events announcements keeps the bulletin. The
`mailto:` is the subscriber's tagged address (mail/verp.py: the token is in the address, since
some clients strip a subject). The envelope sender is the row's VERP bounce address, so a bounce
names its row. No header line is over 78 characters except one holding a single URL longer than
that (a URL is never split), and no quoted-printable line over 76.

Headers go through the header registry (mail/headers.py): From, Subject and List-Id folded once
per mailing, the To line per message (a safe phrase and a checked address; plain ones on a fast
path that is byte for byte what the registry writes). An address that cannot be written fails its
row once (`Unbuildable`). The greeting's name is one line.

The Message-ID comes from the outbox row (messages.message_id), so a retry is the same message.
The shared parts are cached per mailing and content version: an edit to the issue reaches the
emails not yet sent. `preview()` renders what one subscriber would see, for staff.
"""

from __future__ import annotations

import binascii
import html as html_lib
import json
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import cached_property
from urllib.parse import quote

from .. import clock, db, markdown
from ..domain import events, issues, subscriptions
from ..domain.errors import NotFound
from ..settings import Settings
from ..timefmt import format_range, issue_day
from . import headers, render, verp
from .messages import Superseded, Unbuildable, Undeliverable, message_id

GREETING, MANAGE, UNSUBSCRIBE = "@@greeting@@", "@@manage@@", "@@unsubscribe@@"
KINDS = {"issue", "announcement", "issue_test"}


@dataclass(frozen=True)
class Shared:
    """One mailing's message, rendered once, with placeholders for the personal parts."""

    key: tuple
    subject: str
    text: str
    html: str
    list_id: str
    test: bool = False
    # (slug, name) of the mailing's topics, in order; a recipient's List-Id is their first.
    topics: tuple = ()

    @cached_property
    def encoded(self) -> _Encoded:
        return _Encoded(self)


class _Encoded:
    """The shared parts already in their wire form: both bodies cut at the placeholders, each
    piece quoted-printable encoded once. A recipient's message joins the pieces with its own few
    encoded values between soft line breaks ("=" at the end of a line, which decoders remove), so
    per message only the greeting and two links are encoded, never the whole body."""

    def __init__(self, shared: Shared) -> None:
        self.text = _pieces(shared.text)
        self.html = _pieces(shared.html)
        # Whole header lines, folded by the registry once per mailing.
        self.subject = headers.fold_text("Subject", headers.subject(shared.subject))
        self.list_id = shared.list_id
        self.list_ids: dict[str, str] = {}  # topic slug -> folded List-Id line
        self.topic_ids: dict[str, int] = {}  # topic slug -> id (announcements)
        self.senders: dict[str, tuple[str, str]] = {}  # mail_from -> (From line, envelope address)
        self.boundary = "=_" + secrets.token_hex(12)  # "=_" never occurs in quoted-printable


_MARKS = (GREETING, MANAGE, UNSUBSCRIBE)
_SPLIT = re.compile("(" + "|".join(re.escape(m) for m in _MARKS) + ")")


def _pieces(body: str) -> list[bytes | int]:
    """`body` as encoded literal pieces (bytes) and placeholder numbers (0, 1, 2)."""
    out: list[bytes | int] = []
    for part in _SPLIT.split(body):
        if part in _MARKS:
            out.append(_MARKS.index(part))
        elif part:
            out.append(_qp(part))
    return out


def _join(pieces: list[bytes | int], values: tuple[bytes, bytes, bytes]) -> bytes:
    # Each piece's last line leaves room for the "=" of the soft break (see _qp).
    return b"=\r\n".join(values[p] if isinstance(p, int) else p for p in pieces)


@dataclass(frozen=True)
class RawMessage:
    """A built message ready for SMTP: envelope and bytes."""

    sender: str
    recipient: str
    data: bytes


def _context(settings: Settings, topic_name: str) -> dict:
    base = settings.base_url.rstrip("/")
    from .messages import _display_name

    return {
        "greeting": GREETING,
        "topic_name": topic_name,
        "organizer_name": _display_name(settings),
        "site_host": settings.host,
        "links": {"site": base + "/", "manage": MANAGE, "unsubscribe": UNSUBSCRIBE, "archive": base + "/bulletin"},
    }


def render_issue(issue: dict, settings: Settings, *, test: bool = False) -> Shared:
    """The shared parts of an issue's email."""
    context = _context(settings, issue["topic_name"])
    context["links"]["issue"] = f"{settings.base_url.rstrip('/')}/bulletin/{issue['slug']}"
    context.update(
        issue={**issue, "date": issue_day(issue["issue_date"])},
        body_html=markdown.to_html(
            issue["body"], context["links"]["issue"]
        ),  # links absolute: no page in a mail client
        body_text=markdown.to_text(issue["body"], context["links"]["issue"]),
    )
    subject, text, html = render.render("issue", context)
    return Shared(
        key=("issue", issue["id"], issue["version"]),
        subject=("[Test] " if test else "") + subject,
        text=text,
        html=html,
        list_id=_list_id(issue["topic_name"], issue["topic_slug"], settings),
        test=test,
        topics=((issue["topic_slug"], issue["topic_name"]),),
    )


def render_announcement(event: dict, topics: list[dict], settings: Settings) -> Shared:
    """The shared parts of an event announcement to `topics`."""
    context = _context(settings, " or ".join(t["name"] for t in topics))
    context["links"]["event"] = f"{settings.base_url.rstrip('/')}/events/{event['slug']}"
    context.update(
        event={**event, "description": markdown.to_text(event["description"], context["links"]["event"])},
        when=format_range(event["starts_at"], event["ends_at"], event["timezone"]),
        description_html=markdown.to_html(event["description"], context["links"]["event"]),
    )
    subject, text, html = render.render("announcement", context)
    return Shared(
        key=("announcement", event["id"], event["version"]),
        subject=subject,
        text=text,
        html=html,
        list_id=_list_id(topics[0]["name"], topics[0]["slug"], settings),
        topics=tuple((t["slug"], t["name"]) for t in topics),
    )


def _list_id(name: str, slug: str, settings: Settings) -> str:
    """The folded RFC 2919 line `List-Id: "Topic name" <slug.host>`. The name is reduced to a
    safe phrase (nothing to escape inside the quotes); a non-ASCII one goes unquoted, as encoded
    words (RFC 2047 words are not decoded inside quotes). The label keeps only characters a
    dot-atom allows."""
    label = re.sub(r"[^A-Za-z0-9-]+", "-", slug or "list").strip("-") + "." + settings.host
    return headers.fold_list_id(headers.safe_phrase(name), label)


def _qp(text: str) -> bytes:
    """`text` quoted-printable with CRLF line ends. binascii keeps lines within 76 characters,
    but a piece is followed by a soft break ("=" at the end of its last line): a last line of 76
    would become 77, so it is cut at 75, before any "=XX" escape it would split."""
    data = binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")
    start = data.rfind(b"\n") + 1
    if len(data) - start > 75:
        tail = data[start:]
        cut = 75
        escape = tail.rfind(b"=", cut - 2, cut)
        if escape != -1:
            cut = escape
        data = data[:start] + tail[:cut] + b"=\r\n" + tail[cut:]
    return data


_clock: list = [0, ""]


def _date_now() -> str:
    """The Date header, formatted once per second (it has whole seconds)."""
    second = int(time.time())
    if _clock[0] != second:
        _clock[0], _clock[1] = second, format_datetime(datetime.fromtimestamp(second, UTC))
    return _clock[1]


def _topics_query(slugs: tuple[str, ...]) -> str:
    return "?" + "&".join(f"topic={quote(slug, safe='')}" for slug in slugs)


def compose(
    shared: Shared,
    row: dict,
    subscriber: dict | None,
    address: str,
    settings: Settings,
    topics: tuple[str, ...] | None = None,
) -> RawMessage:
    """The message of one ledger row: the greeting and links of `subscriber` (None: a staff
    test with sample links) filled into `shared`. `topics`: the slugs of the mailing's topics
    this subscriber receives it through (None: all of them); the List-Id is the first's and the
    one-click URL leaves exactly these."""
    base = settings.base_url.rstrip("/")
    name = headers.single_line(subscriber["name"]) if subscriber else ""
    greeting = f"Hello {name}," if name else "Hello,"
    wire = shared.encoded
    slugs = topics or tuple(slug for slug, _ in shared.topics)
    if subscriber is not None:
        token = subscriptions.manage_token(subscriber)
        query = _topics_query(slugs) if slugs else ""
        manage, unsubscribe = f"{base}/s/{token}", f"{base}/s/{token}/unsubscribe{query}"
    else:
        token = None
        manage = unsubscribe = f"{base}/s/link"
    list_id = wire.list_id
    if slugs and slugs[0] != (shared.topics[0][0] if shared.topics else None):
        list_id = wire.list_ids.get(slugs[0])
        if list_id is None:
            names = dict(shared.topics)
            list_id = wire.list_ids[slugs[0]] = _list_id(names.get(slugs[0], slugs[0]), slugs[0], settings)
    sender = wire.senders.get(settings.mail_from)
    if sender is None:  # parsing the From setting once per mailing, not per message
        try:
            line = headers.fold_address("From", headers.sender(settings.mail_from))
        except headers.BadAddress as exc:  # our configuration, not this row: retried once fixed
            raise RuntimeError(f"EVENTS_MAIL_FROM cannot be used: {exc}") from None
        sender = wire.senders[settings.mail_from] = (line, settings.mail_from_address)
    try:
        to_line, envelope = headers.to_line(name, address)
    except headers.BadAddress as exc:
        raise Unbuildable(f"the message cannot be built: {exc}") from None
    plain = (_qp(greeting), _qp(manage), _qp(unsubscribe))
    marked = tuple(_qp(html_lib.escape(value)) for value in (greeting, manage, unsubscribe))
    lines = [
        sender[0],
        to_line,
        wire.subject,
        f"Date: {_date_now()}",
        f"Message-ID: {message_id(row['id'], settings, row.get('created_at'))}",
        list_id,
    ]
    if token is not None:
        first = f"List-Unsubscribe: <{unsubscribe}>,"
        if len(first) > headers.LINE_LIMIT:  # the URL on a line of its own (what fold_tokens does)
            first = f"List-Unsubscribe:\r\n <{unsubscribe}>,"
        lines += [
            f"{first}\r\n <mailto:{verp.unsubscribe_address(token)}>",
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        ]
    boundary = wire.boundary
    lines += [
        "Precedence: bulk",
        "Auto-Submitted: auto-generated",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
        "",
        f"--{boundary}",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: quoted-printable",
        "",
        "",
    ]
    head = "\r\n".join(lines).encode()
    middle = (
        f'\r\n--{boundary}\r\nContent-Type: text/html; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ).encode()
    data = b"".join(
        (head, _join(wire.text, plain), middle, _join(wire.html, marked), f"\r\n--{boundary}--\r\n".encode())
    )
    # The envelope sender names this row, so a bounce can be matched to it (mail/verp.py).
    return RawMessage(verp.bounce_address(row["id"]), envelope, data)


class Builder:
    """Builds the bulk rows of one claimed batch: their subscribers in one query, each mailing's
    shared parts from a small cache kept across batches (a worker's lifetime)."""

    def __init__(self, settings: Settings, cache_size: int = 8) -> None:
        self.settings = settings
        self.cache: OrderedDict[tuple, Shared] = OrderedDict()
        self.cache_size = cache_size
        self.subscribers: dict[int, dict] = {}
        self.mailings: dict[int, dict] = {}
        self.topics_of: dict[int, set[int]] = {}  # subscriber -> topic ids (multi-topic mailings)

    def forget(self) -> None:
        """Drop the rows' subscribers and mailings of the previous run (not the rendered cache)."""
        self.subscribers, self.mailings, self.topics_of = {}, {}, {}

    async def prepare(self, rows: list[dict]) -> None:
        """Load what these bulk rows need: subscribers and mailings, one query each. Adds to what
        earlier batches of the same run loaded."""
        ids = sorted({r["subscriber"] for r in rows if r.get("subscriber") is not None})
        if ids:
            where, args = db.sql_in("id", ids)
            for s in await db.fetch(
                f"SELECT id, email, name, status, token_salt, paused_until, bounced_at FROM subscriber WHERE {where}",
                *args,
            ):
                self.subscribers[s["id"]] = s
        mailing_ids = sorted({r["mailing"] for r in rows if r.get("mailing") is not None} - set(self.mailings))
        if mailing_ids:
            where, args = db.sql_in("id", mailing_ids)
            fresh = await db.fetch(f"SELECT * FROM mailing WHERE {where}", *args)
            for m in fresh:
                self.mailings[m["id"]] = m
            for m in fresh:
                try:
                    await self._shared_for(m)  # render now, once, not in each lane
                except Undeliverable:
                    del self.mailings[m["id"]]  # its rows fail with the reason in build()
        # Which of a multi-topic mailing's topics each recipient has (their List-Id and one-click).
        several = {m["id"] for m in self.mailings.values() if len(json.loads(m["topics"] or "[]")) > 1}
        wanted = sorted({r["subscriber"] for r in rows if r.get("mailing") in several} - set(self.topics_of))
        if wanted:
            where, args = db.sql_in("subscriber", wanted)
            for sid in wanted:
                self.topics_of[sid] = set()
            for s in await db.fetch(f"SELECT subscriber, topic FROM subscription WHERE {where}", *args):
                self.topics_of[s["subscriber"]].add(s["topic"])

    async def _shared_for(self, mailing: dict) -> Shared:
        if mailing["kind"] == "issue":
            version = await db.fetch("SELECT version FROM issue WHERE id = {}", mailing["issue"])
            if not version:
                raise Undeliverable(f"issue {mailing['issue']} no longer exists")
            key = ("issue", mailing["issue"], version[0]["version"])
        else:
            try:
                event = await events.get(mailing["event"])
            except NotFound:
                raise Undeliverable(f"event {mailing['event']} no longer exists") from None
            key = ("announcement", event["id"], event["version"], mailing["topics"])
        shared = self.cache.get(key)
        if shared is None:
            if mailing["kind"] == "issue":
                shared = render_issue(await issues.get(mailing["issue"]), self.settings)
            else:
                where, args = db.sql_in("id", json.loads(mailing["topics"]))
                topics = await db.fetch(f"SELECT id, slug, name FROM topic WHERE {where} ORDER BY id", *args)
                shared = render_announcement(event, topics, self.settings)
                shared.encoded.topic_ids.update({t["slug"]: t["id"] for t in topics})
            self.cache[key] = shared
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
        self.cache.move_to_end(key)
        self.mailings[mailing["id"]] = {**mailing, "_shared": shared}
        return shared

    async def build(self, row: dict) -> RawMessage:
        """The message for one row; Superseded when its recipient left after the release."""
        if row["kind"] == "issue_test":
            payload = json.loads(row["payload"])
            try:
                issue = await issues.get(payload["issue_id"])
            except (NotFound, KeyError):
                raise Undeliverable("the issue of this test no longer exists") from None
            return compose(render_issue(issue, self.settings, test=True), row, None, row["recipient"], self.settings)
        mailing = self.mailings.get(row.get("mailing"))
        if mailing is None:
            raise Undeliverable(f"mailing {row.get('mailing')} no longer exists")
        subscriber = self.subscribers.get(row["subscriber"])
        if subscriber is None or subscriber["status"] == "erased" or not subscriber["email"]:
            raise Superseded("the subscriber erased their data")
        if subscriber["status"] != "confirmed":
            raise Superseded(f"the subscriber is {subscriber['status']} since the release")
        if subscriber["bounced_at"] is not None:
            raise Superseded("the address was refused for good by its mail server")
        paused = subscriber["paused_until"]
        if paused is not None and paused > clock.now():
            raise Superseded("the subscriber paused their mail since the release")
        shared = mailing["_shared"]
        topics = None
        if len(shared.topics) > 1:
            held = self.topics_of.get(subscriber["id"], set())
            ids = shared.encoded.topic_ids
            topics = tuple(slug for slug, _ in shared.topics if ids.get(slug) in held) or None
        return compose(shared, row, subscriber, subscriber["email"], self.settings, topics)


def preview(issue: dict, settings: Settings) -> dict:
    """What a subscriber named "Ada" would receive: subject, text and HTML (links are samples)."""
    shared = render_issue(issue, settings)
    sample = "#preview"
    fill = {GREETING: "Hello Ada,", MANAGE: sample, UNSUBSCRIBE: sample}
    text, page = shared.text, shared.html
    for mark, value in fill.items():
        text, page = text.replace(mark, value), page.replace(mark, value)
    return {"subject": shared.subject, "text": text, "html": page}
