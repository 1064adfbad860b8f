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
mail/bulk_builder.py loads a claimed batch's subscribers and mailings and keeps the shared parts
per mailing and content version (an edit to the issue reaches the emails not yet sent).
`preview()` renders what one subscriber would see, for staff.
"""

from __future__ import annotations

import binascii
import html as html_lib
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import cached_property
from urllib.parse import quote

from .. import markdown
from ..domain import identity, subscriptions
from ..settings import Settings
from ..timefmt import format_range, issue_day
from . import headers, render, verp
from .messages import Unbuildable, message_id

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
    # The organisation's identity when rendered (domain/identity.py): From's name, Reply-To.
    sender_name: str = ""
    reply_to: str = ""

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
            out.append(qp_piece(part))
    return out


def _join(pieces: list[bytes | int], values: tuple[bytes, bytes, bytes]) -> bytes:
    # Each piece's last line leaves room for the "=" of the soft break (see qp_piece).
    return b"=\r\n".join(values[p] if isinstance(p, int) else p for p in pieces)


@dataclass(frozen=True)
class RawMessage:
    """A built message ready for SMTP: envelope and bytes."""

    sender: str
    recipient: str
    data: bytes


def _context(settings: Settings, topic_name: str) -> dict:
    base = settings.base_url.rstrip("/")
    return {
        "greeting": GREETING,
        "topic_name": topic_name,
        "organizer_name": render.sender_name(identity.snapshot(), settings.mail_from),
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
        **_identity(settings),
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
        **_identity(settings),
    )


def _identity(settings: Settings) -> dict:
    """The identity's parts of the headers, as rendered with the bodies (one mailing's messages
    all say the same)."""
    org = identity.snapshot()
    return {"sender_name": render.sender_name(org, settings.mail_from), "reply_to": org.reply_to}


def _list_id(name: str, slug: str, settings: Settings) -> str:
    """The folded RFC 2919 line `List-Id: "Topic name" <slug.host>`. The name is reduced to a
    safe phrase (nothing to escape inside the quotes); a non-ASCII one goes unquoted, as encoded
    words (RFC 2047 words are not decoded inside quotes). The label keeps only characters a
    dot-atom allows."""
    label = re.sub(r"[^A-Za-z0-9-]+", "-", slug or "list").strip("-") + "." + settings.host
    return headers.fold_list_id(headers.safe_phrase(name), label)


def qp_piece(text: str) -> bytes:
    """`text` quoted-printable with CRLF line ends (bulk and transactional pieces alike). binascii keeps lines within 76 characters,
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
        folded = wire.list_ids.get(slugs[0])
        if folded is None:
            names = dict(shared.topics)
            folded = wire.list_ids[slugs[0]] = _list_id(names.get(slugs[0], slugs[0]), slugs[0], settings)
        list_id = folded
    sender = wire.senders.get(settings.mail_from)
    if sender is None:  # the From (and Reply-To) lines once per mailing, not per message
        try:
            line = headers.fold_address("From", headers.from_address(settings.mail_from, shared.sender_name))
        except headers.BadAddress as exc:  # our configuration, not this row: retried once fixed
            raise RuntimeError(f"EVENTS_MAIL_FROM cannot be used: {exc}") from None
        reply_to = headers.reply_to(shared.reply_to)
        if reply_to is not None:
            line += "\r\n" + headers.fold_address("Reply-To", reply_to)
        sender = wire.senders[settings.mail_from] = (line, settings.mail_from_address)
    try:
        to_line, envelope = headers.to_line(name, address)
    except headers.BadAddress as exc:
        raise Unbuildable(f"the message cannot be built: {exc}") from None
    plain = (qp_piece(greeting), qp_piece(manage), qp_piece(unsubscribe))
    marked = (
        qp_piece(html_lib.escape(greeting)),
        qp_piece(html_lib.escape(manage)),
        qp_piece(html_lib.escape(unsubscribe)),
    )
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


def preview(issue: dict, settings: Settings) -> dict:
    """What a subscriber named "Ada" would receive: subject, text and HTML (links are samples)."""
    shared = render_issue(issue, settings)
    sample = "#preview"
    fill = {GREETING: "Hello Ada,", MANAGE: sample, UNSUBSCRIBE: sample}
    text, page = shared.text, shared.html
    for mark, value in fill.items():
        text, page = text.replace(mark, value), page.replace(mark, value)
    return {"subject": shared.subject, "text": text, "html": page}
