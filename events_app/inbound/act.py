"""Acting on mail that comes back (events_app/inbound/parse.py reads it): each message acts
once, and only on what it proves.

- Once: `handle` claims the message's key in `inbound_message` (unique) in the same transaction as
  the action, so a message delivered twice, or twice at once, acts once; a failure rolls the claim
  back with the action, and the MTA's retry acts then. A delivery report also claims
  `dsn:<outbox row>:<hard|soft>`, so two reports of one failure (a relay's retry under a new
  Message-ID) count once.
- Unsubscribe: the manage token names the subscriber; `subscriptions.unsubscribe` does exactly what
  the one-click does (every topic, links rotated; a stale token does nothing).
- Delivery reports: the outbox row is the one our VERP return path names (signed, so it cannot be
  made up) or, failing that, the one whose Message-ID the report quotes, when the failed recipient
  is that row's recipient. A hard bounce (failed, 5.x.x) marks the row failed with the reason and,
  for list mail (bulk issues and announcements, subscription mail), suppresses the address as the
  worker's 5xx path does (`audience.suppress`, where suppression is defined), so bulk mail
  leaves it out. A soft one (delayed, or 4.x.x) counts once per message
  (`audience.count_soft_bounce`: at SOFT_BOUNCE_LIMIT in a row the address is suppressed). Mail about a registration is never a reason to drop anyone from
  lists: its row is marked failed, nothing more.
- Complaints: the subscriber is the one the quoted message was sent to (its VERP return path, its
  Message-ID, its List-Unsubscribe token), else Original-Rcpt-To or its To when we did send mail to
  that address. They are unsubscribed from everything and `complained_at` is set.
- Calendar replies: the VEVENT UID names the registration (`registration.calendar_uid`, or the
  older `reg-<id>@<host>`) and the ATTENDEE must be its address; a reply written before the
  registration (re)started is stale. DECLINED cancels as the registrant's own cancel does
  (`registrations.cancel`: waitlist promotion, the person told by email; nothing after the event
  ends); ACCEPTED and TENTATIVE are recorded in `rsvp`.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta

from .. import db, settings
from ..clock import now
from ..domain import audience, outbox, registrations, subscriptions
from ..domain.errors import Conflict, NotFound
from ..mail import bulk, messages, verp
from .parse import Inbound, RecipientReport, outbox_id_of

log = logging.getLogger(__name__)

CLOCK_SKEW = timedelta(minutes=5)  # a reply's DTSTAMP is the replier's clock
_LEGACY_UID = re.compile(r"^reg-(\d{1,10})@(.+)$")
_CLAIM = (
    "INSERT INTO inbound_message (key, kind, outcome, received_at) VALUES ({}, {}, '', {}) "
    "ON CONFLICT (key) DO NOTHING RETURNING id"
)


async def handle(item: Inbound) -> tuple[bool, str]:
    """Act on one read message, once: (acted now, outcome). (False, ...) when the key was
    handled before. Everything is one transaction with the claim of the key; an exception (the
    database away) leaves nothing behind, so the same message may be delivered again."""
    async with db.transaction():
        if not await _claim(item.key, item.kind):
            return False, "already handled"
        act = {"unsubscribe": _unsubscribe, "dsn": _dsn, "complaint": _complaint, "reply": _reply}.get(item.kind)
        outcome = await act(item) if act else f"ignored: {item.reason}"
        await db.fetch("UPDATE inbound_message SET outcome = {} WHERE key = {}", outcome[:2000], item.key)
    log.info("inbound %s (%s): %s", item.kind, item.key[:80], outcome)
    return True, outcome


async def _claim(key: str, kind: str) -> bool:
    return bool(await db.fetch(_CLAIM, key[:128], kind[:32], now()))


# -- unsubscribe ---------------------------------------------------------------------------


async def _unsubscribe(item: Inbound) -> str:
    return await _unsubscribe_token(item.token)


async def _manage_token(value: str) -> str:
    """The manage token an unsubscribe request names: a tagged address's value (verp:
    `<id>-<digest>`) is checked against the subscriber's current token; a token written in a
    subject is taken as it is (it is itself a capability). "" when it names nobody now."""
    subscriber_id, dash, _ = value.partition("-")
    if not dash or "." in value or not subscriber_id.isdigit() or len(subscriber_id) > 10:
        return value
    rows = await db.fetch("SELECT * FROM subscriber WHERE id = {}", int(subscriber_id))
    if rows and rows[0]["status"] != "erased":
        token = subscriptions.manage_token(rows[0])
        if verp.unsubscribe_matches(value, token):
            return token
    return ""


async def _unsubscribe_token(value: str) -> str:
    token = await _manage_token(value)
    if not token:
        return "unsubscribe: stale or unknown address, nothing to do"
    before = await _subscriber_by_token_id(token)
    try:
        await subscriptions.unsubscribe(token)
    except NotFound:
        return "unsubscribe: malformed token"
    after = await _subscriber_by_token_id(token)
    if before and after and before["token_salt"] != after["token_salt"]:
        return f"unsubscribed subscriber {after['id']}"
    return "unsubscribe: stale or unknown token, nothing to do"


async def _subscriber_by_token_id(token: str) -> dict | None:
    from .. import tokens

    row_id = tokens.link_row_id(token)
    rows = await db.fetch("SELECT id, status, token_salt FROM subscriber WHERE id = {}", row_id) if row_id else []
    return rows[0] if rows else None


# -- delivery reports ------------------------------------------------------------------------


async def _dsn(item: Inbound) -> str:
    notes = []
    for report in item.reports:
        if not (report.hard or report.soft):
            continue
        row = await _row_for(report, item)
        who = report.recipient or "unnamed recipient"
        if row is None:
            notes.append(f"{who}: not a message of ours")
            continue
        if not await _claim(f"dsn:{row['id']}:{'hard' if report.hard else 'soft'}", "dsn"):
            notes.append(f"outbox row {row['id']}: already counted")
            continue
        notes.append(await (_hard(row, report) if report.hard else _soft(row, report)))
    return "; ".join(notes) or "no failed or delayed recipient"


async def _row(row_id: int) -> dict | None:
    rows = await db.fetch(
        "SELECT id, kind, recipient, status, mailing, subscriber, created_at FROM outbox WHERE id = {}", row_id
    )
    return rows[0] if rows else None


async def _row_for(report: RecipientReport, item: Inbound) -> dict | None:
    """The outbox row a recipient block is about (see the module docstring)."""
    named = {report.recipient, report.original_recipient} - {""}
    candidates = [r for r in [await _row(i) for i in item.bounce_rows] if r is not None]
    if len(candidates) == 1:
        return candidates[0]  # our signed return path names it, whatever the remote calls the address
    for row in candidates:
        if row["recipient"].lower() in named:
            return row
    config = settings.get()
    ours = outbox_id_of(item.returned.message_id, config.host)
    if ours is None:
        return None
    named_row = await _row(ours[0])
    if named_row is None or item.returned.message_id.lower() not in {
        messages.message_id(named_row["id"], config, named_row["created_at"]).lower(),
        messages.message_id(named_row["id"], config).lower(),
    }:
        return None  # another database's row with the same id
    if named_row["recipient"].lower() not in named | set(item.returned.to):
        return None
    return named_row


def _is_list_mail(row: dict) -> bool:
    return row["mailing"] is not None or row["kind"] in bulk.KINDS or row["kind"].startswith("subscription_")


async def _list_address(row: dict) -> str:
    """The subscriber address a list message went to ("" when erased since)."""
    if row["subscriber"] is not None:
        rows = await db.fetch("SELECT email FROM subscriber WHERE id = {}", row["subscriber"])
        return (rows[0]["email"] or "") if rows else ""
    return row["recipient"]


async def _hard(row: dict, report: RecipientReport) -> str:
    await outbox.mark_failed(row["id"], report.reason)
    if not _is_list_mail(row):
        return f"outbox row {row['id']} ({row['kind']}) failed: {report.status}"
    address = await _list_address(row)
    await audience.suppress(address, report.reason)
    return f"outbox row {row['id']} failed: {report.status}; address marked bounced"


async def _soft(row: dict, report: RecipientReport) -> str:
    # The row stays as it was (a delay is no failure yet); its last_error says what was reported.
    await db.fetch("UPDATE outbox SET last_error = {} WHERE id = {} AND status = 'sent'", report.reason, row["id"])
    if not _is_list_mail(row):
        return f"outbox row {row['id']} ({row['kind']}) delayed: {report.status}"
    count = await audience.count_soft_bounce(await _list_address(row), report.reason)
    if count is None:
        return f"outbox row {row['id']} delayed: {report.status}; no subscriber"
    if count >= audience.SOFT_BOUNCE_LIMIT:
        return f"outbox row {row['id']} delayed: {report.status}; soft bounce {count}: address marked bounced"
    return f"outbox row {row['id']} delayed: {report.status}; soft bounce {count}"


# -- complaints ------------------------------------------------------------------------------


async def _complaint(item: Inbound) -> str:
    subscriber = await _complainer(item)
    if subscriber is None:
        return "complaint: no subscriber of ours named"
    if subscriber["status"] == "erased":
        return f"complaint: subscriber {subscriber['id']} is erased"
    await subscriptions.unsubscribe(subscriptions.manage_token(subscriber))
    await db.fetch(
        "UPDATE subscriber SET complained_at = COALESCE(complained_at, {}) WHERE id = {}", now(), subscriber["id"]
    )
    return f"complaint ({item.feedback_type or 'abuse'}): subscriber {subscriber['id']} unsubscribed and marked"


async def _complainer(item: Inbound) -> dict | None:
    from .. import tokens

    returned, config = item.returned, settings.get()
    rows = [await _row(i) for i in returned.bounce_rows]
    ours = outbox_id_of(returned.message_id, config.host)
    if ours is not None:
        row = await _row(ours[0])
        if row is not None and returned.message_id.lower() in {
            messages.message_id(row["id"], config, row["created_at"]).lower(),
            messages.message_id(row["id"], config).lower(),
        }:
            rows.append(row)
    for row in rows:
        if row is None:
            continue
        if row["subscriber"] is not None:
            found = await db.fetch("SELECT * FROM subscriber WHERE id = {}", row["subscriber"])
        else:
            found = await db.fetch("SELECT * FROM subscriber WHERE email = {}", row["recipient"].lower())
        if found:
            return found[0]
    for value in returned.unsubscribe_tokens:
        token = await _manage_token(value)
        row_id = tokens.link_row_id(token)
        found = await db.fetch("SELECT * FROM subscriber WHERE id = {}", row_id) if row_id else []
        if found and tokens.link_matches(
            token, config.secret_key, subscriptions.MANAGE, row_id, found[0]["token_salt"]
        ):
            return found[0]
    for address in item.complaint_recipients + returned.to:
        # An address alone (which anyone can write) counts only when we did send mail to it.
        sent = await db.fetch("SELECT 1 AS x FROM outbox WHERE recipient = {} AND status = 'sent' LIMIT 1", address)
        found = await db.fetch("SELECT * FROM subscriber WHERE email = {}", address) if sent else []
        if found:
            return found[0]
    return None


# -- calendar replies ------------------------------------------------------------------------


async def _registration_for(uid: str) -> dict | None:
    rows = await db.fetch("SELECT * FROM registration WHERE calendar_uid = {}", uid) if uid else []
    if rows:
        return rows[0]
    legacy = _LEGACY_UID.match(uid)
    if legacy and legacy[2].lower() == settings.get().host.lower():
        rows = await db.fetch("SELECT * FROM registration WHERE id = {}", int(legacy[1]))
        return rows[0] if rows else None
    return None


async def _reply(item: Inbound) -> str:
    reply = item.reply
    if reply is None:  # parse gives kind "reply" only with a readable REPLY
        return "reply: no readable calendar reply"
    row = await _registration_for(reply.uid)
    if row is None:
        return f"reply: no registration has UID {reply.uid[:80]!r}"
    if (row["email"] or "").lower() != reply.attendee:
        return f"reply: the attendee is not registration {row['id']}'s address"
    if reply.dtstamp is not None and row["created_at"] is not None and reply.dtstamp < row["created_at"] - CLOCK_SKEW:
        return f"reply: written before registration {row['id']} (re)started; stale"
    if reply.partstat == "DECLINED":
        return await _decline(row)
    if reply.partstat in ("ACCEPTED", "TENTATIVE"):
        done = await db.fetch(
            "UPDATE registration SET rsvp = {}, rsvp_at = {} WHERE id = {} "
            "AND status IN ('registered', 'waitlisted') RETURNING id",
            reply.partstat.lower(),
            now(),
            row["id"],
        )
        return (
            f"reply: registration {row['id']} {reply.partstat.lower()}"
            if done
            else (f"reply: registration {row['id']} is {row['status']}; nothing recorded")
        )
    return f"reply: PARTSTAT {reply.partstat}: nothing to do"


async def _decline(row: dict) -> str:
    event = (
        await db.fetch(
            "SELECT status, starts_at, ends_at, registration_closes_at FROM event WHERE id = {}", row["event"]
        )
    )[0]
    rule = registrations.may_cancel(row, event)
    if not rule.allowed:
        return f"reply: declined; registration {row['id']} not cancelled: {rule.reason}"
    try:
        await registrations.cancel(registrations.personal_token(row))
    except (Conflict, NotFound) as exc:
        return f"reply: declined; registration {row['id']} not cancelled: {exc}"
    await db.fetch("UPDATE registration SET rsvp = 'declined', rsvp_at = {} WHERE id = {}", now(), row["id"])
    return f"reply: declined; registration {row['id']} cancelled"
