"""Reading one inbound message (RFC 5322 bytes) into what it asks of us, without touching the
database: `read(raw, recipients)` returns an `Inbound` whose `kind` is one of

- `dsn`: a delivery status notification (RFC 3464: multipart/report; report-type=delivery-status),
  with one `RecipientReport` per recipient block (hard, soft or neither), the outbox rows named
  by VERP addresses among the envelope recipients and headers, and the returned message's headers;
- `complaint`: a spam complaint (RFC 5965 ARF: multipart/report; report-type=feedback-report),
  with its Feedback-Type, Original-Rcpt-To and the returned message's headers;
- `reply`: an iMIP REPLY (RFC 6047: a text/calendar part, or a .ics attachment, whose METHOD is
  REPLY), with the VEVENT's UID, the ATTENDEE and their PARTSTAT;
- `unsubscribe`: mail to a List-Unsubscribe address of ours (`verp.unsubscribe_address`), in the
  envelope recipient or the Delivered-To / X-Original-To / To / Cc headers, or the older form
  with the manage token in the Subject ("unsubscribe <token>");
- `ignored`: anything else (an out-of-office, a plain-text bounce, spam), with the reason.

`key` is what makes a message act once: its Message-ID, or the SHA-256 of the raw bytes when it
has none. A message this module cannot read at all is `ignored`, never an exception.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.parser import HeaderParser
from email.utils import getaddresses

from ..mail import verp

MAX_KEY = 128
_TOKEN = re.compile(r"\b(\d{1,10}\.[A-Za-z0-9_-]{43})(?![A-Za-z0-9_-])")
_STATUS = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_OUTBOX_ID = re.compile(r"^<?outbox-(\d{1,10})(?:\.([0-9a-z]+))?@([^>\s]+)>?$")
# Headers where a relay or a forwarder leaves the address mail was delivered to.
_RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To", "Cc")


@dataclass
class RecipientReport:
    """One recipient block of a DSN."""

    recipient: str  # Final-Recipient (or Original-Recipient), lower-cased, "" when absent
    original_recipient: str
    action: str  # failed | delayed | delivered | relayed | expanded
    status: str  # e.g. 5.1.1
    diagnostic: str  # the remote server's words, one line

    @property
    def hard(self) -> bool:
        return self.action == "failed" and self.status.startswith("5.")

    @property
    def soft(self) -> bool:
        return not self.hard and (
            self.action == "delayed" or (self.action == "failed" and self.status.startswith("4."))
        )

    @property
    def reason(self) -> str:
        words = f"{self.status} {self.diagnostic}".strip()
        return f"bounced ({self.action}): {words}"[:500]


@dataclass
class Returned:
    """What a report quotes of the message it is about (ours, if it is about us)."""

    message_id: str = ""
    to: list[str] = field(default_factory=list)
    bounce_rows: list[int] = field(default_factory=list)  # from a VERP Return-Path
    unsubscribe_tokens: list[str] = field(default_factory=list)  # from its List-Unsubscribe


@dataclass
class Reply:
    uid: str
    attendee: str  # lower-cased address
    partstat: str  # ACCEPTED | TENTATIVE | DECLINED | ...
    sequence: int | None
    dtstamp: datetime | None


@dataclass
class Inbound:
    kind: str
    key: str
    reason: str = ""
    token: str = ""  # unsubscribe: the manage token
    reports: list[RecipientReport] = field(default_factory=list)
    bounce_rows: list[int] = field(default_factory=list)  # dsn: rows named by our VERP addresses
    returned: Returned = field(default_factory=Returned)
    feedback_type: str = ""
    complaint_recipients: list[str] = field(default_factory=list)
    reply: Reply | None = None


def message_key(raw: bytes, message: Message | None) -> str:
    """The message's Message-ID, or the SHA-256 of its bytes; at most MAX_KEY characters."""
    mid = ""
    if message is not None:
        try:
            mid = " ".join(str(message.get("Message-ID", "") or "").split())
        except Exception:  # a header the parser cannot read: as if absent
            mid = ""
    if not mid:
        return "sha256:" + hashlib.sha256(raw).hexdigest()
    key = "mid:" + mid
    return key if len(key) <= MAX_KEY else "mid-sha256:" + hashlib.sha256(mid.encode()).hexdigest()


def read(raw: bytes, recipients: list[str] | tuple[str, ...] = ()) -> Inbound:
    """What `raw` asks of us; `recipients` are the envelope recipients (LMTP RCPT, or the
    command's --recipient), empty when unknown."""
    try:
        # The default policy's parser makes EmailMessage objects (iter_parts, get_content).
        message = email.message_from_bytes(raw, _class=EmailMessage, policy=email.policy.default)
    except Exception as exc:  # pragma: no cover - the parser is lenient; belt and braces
        return Inbound("ignored", message_key(raw, None), reason=f"unreadable: {exc}")
    key = message_key(raw, message)
    try:
        return _classify(message, key, list(recipients))
    except Exception as exc:  # a malformed part: nothing we can act on
        return Inbound("ignored", key, reason=f"unreadable: {type(exc).__name__}: {str(exc)[:200]}")


def _classify(message: EmailMessage, key: str, recipients: list[str]) -> Inbound:
    if message.get_content_type() == "multipart/report":
        report_type = str(message.get_param("report-type", "") or "").lower()
        if report_type == "delivery-status":
            return _dsn(message, key, recipients)
        if report_type == "feedback-report":
            return _complaint(message, key)
    reply = _calendar_reply(message)
    if reply is not None:
        return Inbound("reply", key, reply=reply)
    addresses = recipients + _header_addresses(message, _RECIPIENT_HEADERS)
    for address in addresses:
        tagged = verp.parse(address)
        if tagged and tagged[0] == "u":
            return Inbound("unsubscribe", key, token=tagged[1])
    subject = " ".join(str(message.get("Subject", "") or "").split())
    if subject.lower().startswith("unsubscribe"):
        found = _TOKEN.search(subject)
        if found:
            return Inbound("unsubscribe", key, token=found[1])
    if any((verp.parse(a) or ("",))[0] == "b" for a in addresses):
        return Inbound("ignored", key, reason="mail to a bounce address that is not a delivery report")
    return Inbound("ignored", key, reason="not a report, a calendar reply or an unsubscribe request")


def _header_addresses(message: Message, names: tuple[str, ...]) -> list[str]:
    values = []
    for name in names:
        for value in message.get_all(name, []) or []:
            values.append(str(value))
    return [address for _, address in getaddresses(values) if address]


def _one_line(value: object) -> str:
    return " ".join(str(value or "").split())


def _typed_address(value: object) -> str:
    """`rfc822; someone@example.org` -> someone@example.org (lower-cased)."""
    text = _one_line(value)
    if ";" in text:
        text = text.split(";", 1)[1]
    return text.strip().strip("<>").strip().lower()


def _blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    text = payload if isinstance(payload, str) else ""
    if part.get("Content-Transfer-Encoding", "").lower() in ("base64", "quoted-printable"):
        data = part.get_payload(decode=True)
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else text
    return [HeaderParser().parsestr(b.strip() + "\n") for b in re.split(r"\r?\n\s*\r?\n", text) if b.strip()]


def _returned(report: EmailMessage) -> Returned:
    """The headers of the message a report returns (message/rfc822 or text/rfc822-headers)."""
    quoted: Message | None = None
    for part in report.iter_parts():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            first = payload[0] if isinstance(payload, list) and payload else None
            quoted = first if isinstance(first, Message) else None
        elif kind in ("text/rfc822-headers", "message/rfc822-headers", "message/global-headers"):
            # text/* gives the headers as text; the parser reads message/* ones as a part of their
            # own, which get_content hands back as bytes.
            content = part.get_content()
            text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
            quoted = HeaderParser().parsestr(text) if isinstance(text, str) else None
        if quoted is not None:
            break
    if quoted is None:
        return Returned()
    found = Returned(message_id=_one_line(quoted.get("Message-ID", "")))
    found.to = [a.lower() for a in _header_addresses(quoted, ("To",))]
    for address in _header_addresses(quoted, ("Return-Path", "Sender")):
        tagged = verp.parse(address)
        if tagged and tagged[0] == "b":
            found.bounce_rows.append(int(tagged[1]))
    unsubscribe = _one_line(quoted.get("List-Unsubscribe", ""))
    for target in re.findall(r"<([^>]+)>", unsubscribe):
        if target.lower().startswith("mailto:"):
            tagged = verp.parse(target[7:].split("?", 1)[0])
            if tagged and tagged[0] == "u":
                found.unsubscribe_tokens.append(tagged[1])
        found.unsubscribe_tokens += [m[1] for m in _TOKEN.finditer(target) if m[1] not in found.unsubscribe_tokens]
    return found


def outbox_id_of(message_id: str, host: str) -> tuple[int, str] | None:
    """(row id, base-36 stamp or "") when `message_id` is one of ours (mail/messages.message_id)."""
    found = _OUTBOX_ID.match(message_id.strip())
    if not found or found[3].lower() != host.lower():
        return None
    return int(found[1]), found[2] or ""


def _dsn(message: EmailMessage, key: str, recipients: list[str]) -> Inbound:
    found = Inbound("dsn", key)
    for part in message.iter_parts():
        if part.get_content_type() in ("message/delivery-status", "message/global-delivery-status"):
            for block in _blocks(part)[1:]:  # the first block is about the whole message
                action = _one_line(block.get("Action", "")).lower()
                if not action:
                    continue
                status = _STATUS.match(_one_line(block.get("Status", "")))
                found.reports.append(
                    RecipientReport(
                        recipient=_typed_address(
                            block.get("Final-Recipient", "") or block.get("Original-Recipient", "")
                        ),
                        original_recipient=_typed_address(block.get("Original-Recipient", "")),
                        action=action,
                        status=".".join(status.groups()) if status else "",
                        diagnostic=_one_line(block.get("Diagnostic-Code", ""))[:300],
                    )
                )
            break
    for address in recipients + _header_addresses(message, _RECIPIENT_HEADERS):
        tagged = verp.parse(address)
        if tagged and tagged[0] == "b" and int(tagged[1]) not in found.bounce_rows:
            found.bounce_rows.append(int(tagged[1]))
    found.returned = _returned(message)
    if not found.reports:
        return Inbound("ignored", key, reason="a delivery report without recipient blocks")
    return found


def _complaint(message: EmailMessage, key: str) -> Inbound:
    found = Inbound("complaint", key)
    for part in message.iter_parts():
        if part.get_content_type() == "message/feedback-report":
            fields = _blocks(part)
            block = fields[0] if fields else Message()
            found.feedback_type = _one_line(block.get("Feedback-Type", "")).lower()
            for name in ("Original-Rcpt-To", "Removal-Recipient"):
                for value in block.get_all(name, []) or []:
                    address = _typed_address(value)
                    if "@" in address:
                        found.complaint_recipients.append(address)
            break
    found.returned = _returned(message)
    if found.feedback_type not in ("abuse", "fraud", "virus", "other", ""):
        return Inbound("ignored", key, reason=f"a feedback report of type {found.feedback_type!r}")
    return found


def _calendar_reply(message: EmailMessage) -> Reply | None:
    """The first iMIP REPLY in the message (inline text/calendar, or an .ics attachment)."""
    import icalendar

    for part in message.walk():
        kind = part.get_content_type()
        filename = (part.get_filename() or "").lower()
        if kind not in ("text/calendar", "application/ics") and not filename.endswith(".ics"):
            continue
        content = part.get_content()
        text = (
            content.decode(part.get_content_charset() or "utf-8", "replace") if isinstance(content, bytes) else content
        )
        try:
            calendar = icalendar.Calendar.from_ical(text)
        except Exception:
            continue
        if str(calendar.get("METHOD", "")).upper() != "REPLY":
            continue
        for vevent in calendar.walk("VEVENT"):
            attendee = vevent.get("ATTENDEE")
            if isinstance(attendee, list):
                attendee = attendee[0] if attendee else None
            if attendee is None or not vevent.get("UID"):
                continue
            address = str(attendee)
            if address.lower().startswith("mailto:"):
                address = address[7:]
            stamp = vevent.get("DTSTAMP")
            moment = getattr(stamp, "dt", None)
            if isinstance(moment, datetime) and moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)  # floating: read as UTC
            sequence = vevent.get("SEQUENCE")
            return Reply(
                uid=str(vevent.get("UID")).strip(),
                attendee=address.strip().lower(),
                partstat=str(attendee.params.get("PARTSTAT", "NEEDS-ACTION")).upper(),
                sequence=int(sequence) if sequence is not None else None,
                dtstamp=moment if isinstance(moment, datetime) else None,
            )
    return None
