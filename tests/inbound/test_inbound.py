"""Real-shaped returned mail (samples/) through `events-app inbound` on standard input and through
its LMTP listener: unsubscribes, Postfix and Exchange bounces, an ARF complaint, Gmail and Outlook
calendar replies. Outcomes are asserted in the database; each message is delivered twice and acts
once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

from factories import published_event

from events_app import db, settings
from events_app.domain import audience, outbox, registrations, subscriptions
from events_app.mail import messages, verp

from .conftest import dtstamp, fill, lmtp_deliver, run_cli, start_listener, stop_listener


async def confirmed_subscriber(email: str) -> dict:
    await subscriptions.subscribe(email, "Ada", await subscriptions.topic_ids(["bulletin", "events"]))
    row = (await db.fetch("SELECT * FROM subscriber WHERE email = {}", email))[0]
    await subscriptions.confirm(subscriptions.confirm_token(row))
    await db.fetch("DELETE FROM outbox")
    return (await db.fetch("SELECT * FROM subscriber WHERE email = {}", email))[0]


async def sent_row(kind: str, email: str, subscriber_id: int | None = None) -> dict:
    """An outbox row as the worker leaves it once sent: its Message-ID is the one it went with."""
    row_id = await outbox.enqueue(kind, email, {"issue_id": 1} if kind == "issue" else {"registration_id": 1})
    await db.fetch("UPDATE outbox SET status = 'sent', subscriber = {} WHERE id = {}", subscriber_id, row_id)
    row = (await db.fetch("SELECT * FROM outbox WHERE id = {}", row_id))[0]
    row["message_id"] = messages.message_id(row_id, settings.get(), row["created_at"])
    return row


async def subscriber(sid: int) -> dict:
    return (await db.fetch("SELECT * FROM subscriber WHERE id = {}", sid))[0]


async def ledger() -> list[dict]:
    return await db.fetch("SELECT key, kind, outcome FROM inbound_message ORDER BY id")


def postfix(row: dict, recipient: str, action="failed", status="5.1.1", msgid=None, bounce_to=None) -> bytes:
    diagnostic = {"5": f"550 5.1.1 <{recipient}>: Recipient address rejected: User unknown",
                  "4": "451 4.2.2 Mailbox full, try again later"}[status[0]]
    return fill(
        "postfix_dsn.eml", BOUNCE_ADDRESS=bounce_to or verp.bounce_address(row["id"]), RECIPIENT=recipient,
        ACTION=action, STATUS=status, DIAGNOSTIC=diagnostic, ORIGINAL_MESSAGE_ID=row["message_id"],
        UNSUBSCRIBE_ADDRESS=verp.unsubscribe_address("1." + "x" * 43), MSGID=msgid or uuid.uuid4().hex,
        SUBJECT="Undelivered Mail Returned to Sender" if action == "failed" else "Delayed Mail (still being retried)",
    )


# -- bounces --------------------------------------------------------------------------------

async def test_a_postfix_hard_bounce_marks_the_address_and_the_row_once(deliver):
    ada = await confirmed_subscriber("ada@example.net")
    row = await sent_row("issue", "ada@example.net", ada["id"])
    raw = postfix(row, "ada@example.net")
    await deliver(raw)
    marked = await subscriber(ada["id"])
    assert marked["bounced_at"] is not None and "5.1.1" in marked["bounce_reason"]
    assert "User unknown" in marked["bounce_reason"]
    failed = (await db.fetch("SELECT status, last_error FROM outbox WHERE id = {}", row["id"]))[0]
    assert failed["status"] == "failed" and "5.1.1" in failed["last_error"]
    await deliver(raw)  # the same message again
    assert (await subscriber(ada["id"]))["bounced_at"] == marked["bounced_at"]
    kinds = [r["kind"] for r in await ledger()]
    assert kinds == ["dsn", "dsn"]  # the message's key, and the row's hard-bounce key


async def test_soft_bounces_count_once_per_message_and_suppress_at_the_limit(deliver):
    ada = await confirmed_subscriber("ada@example.net")
    first = await sent_row("issue", "ada@example.net", ada["id"])
    # A relay's "delayed" notice, then another for the same message (a new Message-ID): one count.
    await deliver(postfix(first, "ada@example.net", action="delayed", status="4.2.2"))
    await deliver(postfix(first, "ada@example.net", action="delayed", status="4.2.2"))
    counted = await subscriber(ada["id"])
    assert counted["soft_bounces"] == 1 and counted["bounced_at"] is None
    assert (await db.fetch("SELECT status FROM outbox WHERE id = {}", first["id"]))[0]["status"] == "sent"
    for _ in range(audience.SOFT_BOUNCE_LIMIT - 1):
        row = await sent_row("issue", "ada@example.net", ada["id"])
        await deliver(postfix(row, "ada@example.net", action="failed", status="4.4.7"))
    suppressed = await subscriber(ada["id"])
    assert suppressed["soft_bounces"] == audience.SOFT_BOUNCE_LIMIT
    assert suppressed["bounced_at"] is not None and "temporary failures" in suppressed["bounce_reason"]


async def test_the_owner_showing_up_starts_the_soft_bounce_count_afresh(deliver):
    """Soft bounces count "in a row": when the owner acts from a link we emailed (saving their
    preferences), the address evidently takes mail, so the count starts again, as a hard
    bounce's mark is lifted then."""
    ada = await confirmed_subscriber("ada@example.net")
    for _ in range(audience.SOFT_BOUNCE_LIMIT - 1):
        row = await sent_row("issue", "ada@example.net", ada["id"])
        await deliver(postfix(row, "ada@example.net", action="failed", status="4.4.7"))
    assert (await subscriber(ada["id"]))["soft_bounces"] == audience.SOFT_BOUNCE_LIMIT - 1
    await subscriptions.update_preferences(subscriptions.manage_token(await subscriber(ada["id"])),
                                           topics=["bulletin"], name="Ada")
    assert (await subscriber(ada["id"]))["soft_bounces"] == 0
    row = await sent_row("issue", "ada@example.net", ada["id"])
    await deliver(postfix(row, "ada@example.net", action="failed", status="4.4.7"))
    again = await subscriber(ada["id"])
    assert again["soft_bounces"] == 1 and again["bounced_at"] is None


async def test_an_exchange_bounce_of_a_registration_fails_that_row_and_nothing_more(deliver):
    grace = await confirmed_subscriber("grace@contoso.com")
    row = await sent_row("registration_confirmed", "grace@contoso.com")
    # No VERP here (sent before the return path was tagged): matched by the quoted Message-ID.
    raw = fill("exchange_dsn.eml", TO="events@example.org", RECIPIENT="grace@contoso.com",
               RECIPIENT_LOCAL="grace", ORIGINAL_MESSAGE_ID=row["message_id"])
    await deliver(raw)
    failed = (await db.fetch("SELECT status, last_error FROM outbox WHERE id = {}", row["id"]))[0]
    assert failed["status"] == "failed" and "5.1.10" in failed["last_error"]
    assert "RecipientNotFound" in failed["last_error"]
    untouched = await subscriber(grace["id"])
    assert untouched["bounced_at"] is None and untouched["status"] == "confirmed"


async def test_a_bounce_quoting_another_recipient_or_a_foreign_id_acts_on_nothing(deliver):
    row = await sent_row("registration_confirmed", "grace@contoso.com")
    other = fill("exchange_dsn.eml", TO="events@example.org", RECIPIENT="mallory@contoso.com",
                 RECIPIENT_LOCAL="mallory", ORIGINAL_MESSAGE_ID=row["message_id"])
    await deliver(other)
    forged = postfix(row, "grace@contoso.com", bounce_to="events+b-%d-0123456789@example.org" % row["id"])
    await deliver(forged.replace(row["message_id"].encode(), b"<outbox-1.zz@elsewhere.example>"))
    assert (await db.fetch("SELECT status FROM outbox WHERE id = {}", row["id"]))[0]["status"] == "sent"
    assert all("not a message of ours" in r["outcome"] for r in await ledger())


# -- complaints -----------------------------------------------------------------------------

async def test_an_arf_complaint_unsubscribes_from_everything_and_marks(deliver):
    ada = await confirmed_subscriber("ada@example.net")
    row = await sent_row("issue", "ada@example.net", ada["id"])
    token = subscriptions.manage_token(ada)
    raw = fill("arf_complaint.eml", BOUNCE_ADDRESS=verp.bounce_address(row["id"]), ORIGINAL_RCPT="ada@example.net",
               RETURNED_TO="ada@example.net", ORIGINAL_MESSAGE_ID=row["message_id"], TOKEN=token,
               UNSUBSCRIBE_ADDRESS=verp.unsubscribe_address(token))
    await deliver(raw)
    marked = await subscriber(ada["id"])
    assert marked["status"] == "unsubscribed" and marked["complained_at"] is not None
    assert marked["token_salt"] != ada["token_salt"]  # every link sent before stops working, as one-click
    await deliver(raw)
    assert (await subscriber(ada["id"]))["complained_at"] == marked["complained_at"]
    assert len(await ledger()) == 1


async def test_a_redacted_complaint_finds_the_subscriber_by_the_address_we_sent_to(deliver):
    ada = await confirmed_subscriber("ada@example.net")
    await sent_row("issue", "ada@example.net", ada["id"])
    raw = fill("arf_complaint.eml", BOUNCE_ADDRESS="events@example.org", ORIGINAL_RCPT="ada@example.net",
               RETURNED_TO="redacted@example.net", ORIGINAL_MESSAGE_ID="<gone@elsewhere.example>",
               TOKEN="redacted", UNSUBSCRIBE_ADDRESS="events@example.org")
    await deliver(raw)
    assert (await subscriber(ada["id"]))["complained_at"] is not None
    # An address we never sent to is not taken on a report's word.
    bob = await confirmed_subscriber("bob@example.net")
    await deliver(raw.replace(b"ada@example.net", b"bob@example.net"))
    assert (await subscriber(bob["id"]))["status"] == "confirmed"


# -- unsubscribe by mail --------------------------------------------------------------------

async def test_a_mailto_unsubscribe_with_its_subject(deliver):
    ada = await confirmed_subscriber("ada@example.net")
    token = subscriptions.manage_token(ada)
    address = verp.unsubscribe_address(token)
    raw = fill("mailto_unsubscribe.eml", DELIVERED_TO=address, TO=address, SUBJECT=f"unsubscribe {token}")
    await deliver(raw, address)
    assert (await subscriber(ada["id"]))["status"] == "unsubscribed"
    await deliver(raw, address)
    assert [r["kind"] for r in await ledger()] == ["unsubscribe"]


async def test_a_mailto_unsubscribe_whose_subject_was_stripped(deliver):
    ada = await confirmed_subscriber("ada@example.net")
    address = verp.unsubscribe_address(subscriptions.manage_token(ada))
    # Outlook.com drops ?subject=; a forwarder may rewrite To: the RCPT or Delivered-To still names it.
    raw = fill("mailto_unsubscribe.eml", DELIVERED_TO=address, TO="Implementation Centre <events@example.org>",
               SUBJECT="Unsubscribe")
    await deliver(raw, address)
    assert (await subscriber(ada["id"]))["status"] == "unsubscribed"


async def test_the_older_subject_form_still_unsubscribes(deliver):
    ada = await confirmed_subscriber("ada@example.net")
    token = subscriptions.manage_token(ada)
    raw = fill("mailto_unsubscribe.eml", DELIVERED_TO="events@example.org", TO="events@example.org",
               SUBJECT=f"unsubscribe {token}")
    await deliver(raw)
    assert (await subscriber(ada["id"]))["status"] == "unsubscribed"


async def test_an_unsubscribe_address_with_a_bad_signature_does_nothing(deliver):
    ada = await confirmed_subscriber("ada@example.net")
    address = verp.unsubscribe_address(subscriptions.manage_token(ada))
    forged = address[: address.rindex("-") + 1] + "0123456789@example.org"
    raw = fill("mailto_unsubscribe.eml", DELIVERED_TO=forged, TO=forged, SUBJECT="Unsubscribe")
    await deliver(raw, forged)
    assert (await subscriber(ada["id"]))["status"] == "confirmed"
    assert [r["kind"] for r in await ledger()] == ["ignored"]


# -- calendar replies -----------------------------------------------------------------------

async def full_event_with_waitlist() -> tuple[dict, dict, dict, dict]:
    event = await published_event(capacity=1)
    ada = await registrations.register(event, {"name": "Ada Lovelace", "email": "ada.lovelace@gmail.com"})
    bob = await registrations.register(event, {"name": "Bob", "email": "bob@example.net"})
    cy = await registrations.register(event, {"name": "Cy", "email": "cy@example.net"})
    assert (ada["status"], bob["status"], cy["status"]) == ("registered", "waitlisted", "waitlisted")
    await db.fetch("DELETE FROM outbox")
    return event, ada, bob, cy


async def status_of(reg_id: int) -> dict:
    return (await db.fetch("SELECT status, rsvp, rsvp_at FROM registration WHERE id = {}", reg_id))[0]


async def test_a_gmail_decline_cancels_promotes_the_waitlist_and_tells_them(deliver):
    event, ada, bob, cy = await full_event_with_waitlist()
    uid = f"{uuid.uuid4().hex}@testserver"
    await db.fetch("UPDATE registration SET calendar_uid = {} WHERE id = {}", uid, ada["id"])
    raw = fill("gmail_reply.eml", calendar="gmail_reply.ics", UID=uid, PARTSTAT="DECLINED", VERB="Declined",
               ATTENDEE="ada.lovelace@gmail.com", DTSTAMP=dtstamp())
    await deliver(raw)
    assert (await status_of(ada["id"]))["status"] == "cancelled"
    assert (await status_of(ada["id"]))["rsvp"] == "declined"
    assert (await status_of(bob["id"]))["status"] == "registered"
    assert (await status_of(cy["id"]))["status"] == "waitlisted"
    mail = {(r["kind"], r["recipient"]) for r in await db.fetch("SELECT kind, recipient FROM outbox")}
    assert mail == {("registration_cancelled", "ada.lovelace@gmail.com"), ("registration_promoted", "bob@example.net")}
    assert (await db.fetch("SELECT taken FROM event WHERE id = {}", event["id"]))[0]["taken"] == 1
    await deliver(raw)  # again: Cy stays where she is
    assert (await status_of(cy["id"]))["status"] == "waitlisted"
    assert len(await db.fetch("SELECT id FROM outbox")) == 2


async def test_a_gmail_accept_is_recorded(deliver):
    _, ada, _, _ = await full_event_with_waitlist()
    uid = f"{uuid.uuid4().hex}@testserver"
    await db.fetch("UPDATE registration SET calendar_uid = {} WHERE id = {}", uid, ada["id"])
    raw = fill("gmail_reply.eml", calendar="gmail_reply.ics", UID=uid, PARTSTAT="ACCEPTED", VERB="Accepted",
               ATTENDEE="ada.lovelace@gmail.com", DTSTAMP=dtstamp())
    await deliver(raw)
    row = await status_of(ada["id"])
    assert (row["status"], row["rsvp"]) == ("registered", "accepted") and row["rsvp_at"] is not None
    assert await db.fetch("SELECT id FROM outbox") == []


async def test_an_outlook_decline_of_an_invite_with_the_older_uid(deliver):
    _, ada, bob, _ = await full_event_with_waitlist()
    await db.fetch("UPDATE registration SET email = 'grace@contoso.com' WHERE id = {}", ada["id"])
    raw = fill("outlook_reply.eml", calendar="outlook_reply.ics", UID=f"reg-{ada['id']}@testserver",
               PARTSTAT="DECLINED", VERB="Declined", ATTENDEE="Grace@Contoso.com", DTSTAMP=dtstamp())
    assert b"Content-Transfer-Encoding: base64" in raw and b"BEGIN:VCALENDAR" not in raw
    await deliver(raw)
    assert (await status_of(ada["id"]))["status"] == "cancelled"
    assert (await status_of(bob["id"]))["status"] == "registered"


async def test_a_reply_from_someone_else_or_after_the_event_changes_nothing(deliver):
    event, ada, bob, _ = await full_event_with_waitlist()
    uid = f"{uuid.uuid4().hex}@testserver"
    await db.fetch("UPDATE registration SET calendar_uid = {} WHERE id = {}", uid, ada["id"])
    forwarded = fill("gmail_reply.eml", calendar="gmail_reply.ics", UID=uid, PARTSTAT="DECLINED", VERB="Declined",
                     ATTENDEE="someone.else@gmail.com", DTSTAMP=dtstamp())
    await deliver(forwarded)
    assert (await status_of(ada["id"]))["status"] == "registered"
    past = datetime.now(timezone.utc) - timedelta(days=1)
    await db.fetch("UPDATE event SET starts_at = {}, ends_at = {} WHERE id = {}",
                   past - timedelta(hours=1), past, event["id"])
    late = fill("gmail_reply.eml", calendar="gmail_reply.ics", UID=uid, PARTSTAT="DECLINED", VERB="Declined",
                ATTENDEE="ada.lovelace@gmail.com", DTSTAMP=dtstamp())
    await deliver(late)
    assert (await status_of(ada["id"]))["status"] == "registered"
    assert (await status_of(bob["id"]))["status"] == "waitlisted"
    assert await db.fetch("SELECT id FROM outbox") == []
    outcomes = [r["outcome"] for r in await ledger()]
    assert "not registration" in outcomes[0] and "past" in outcomes[1]


# -- everything else ------------------------------------------------------------------------

async def test_anything_else_is_ignored_and_recorded(deliver):
    raw = fill("mailto_unsubscribe.eml", DELIVERED_TO="events@example.org", TO="events@example.org",
               SUBJECT="Automatic reply: Implementation in Action")
    await deliver(raw)
    await deliver(raw)
    rows = await ledger()
    assert len(rows) == 1 and rows[0]["kind"] == "ignored"


async def test_stdin_prints_the_outcome_and_refuses_bad_arguments():
    done = await asyncio.to_thread(run_cli, "inbound", stdin=b"Subject: hello\r\n\r\nhi\r\n")
    assert done.returncode == 0 and done.stdout.decode().startswith("ignored:")
    for args, stdin in ((("inbound", "--listen", "nowhere"), b""), (("inbound",), b""),
                        (("inbound", "--bogus"), b"x")):
        bad = await asyncio.to_thread(run_cli, *args, stdin=stdin)
        err = bad.stderr.decode()
        assert bad.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err


async def test_stdin_exits_75_while_the_database_is_away_so_the_mta_retries():
    ada = await confirmed_subscriber("ada@example.net")
    address = verp.unsubscribe_address(subscriptions.manage_token(ada))
    raw = fill("mailto_unsubscribe.eml", DELIVERED_TO=address, TO=address, SUBJECT="Unsubscribe")
    away = await asyncio.to_thread(run_cli, "inbound", stdin=raw,
                                   env={"EVENTS_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"})
    assert away.returncode == 75 and b"try again later" in away.stderr
    assert (await subscriber(ada["id"]))["status"] == "confirmed"


async def test_lmtp_answers_451_while_the_database_is_away_and_the_retry_acts_once(listener):
    ada = await confirmed_subscriber("ada@example.net")
    address = verp.unsubscribe_address(subscriptions.manage_token(ada))
    raw = fill("mailto_unsubscribe.eml", DELIVERED_TO=address, TO=address, SUBJECT="Unsubscribe")
    away, away_port = await asyncio.to_thread(
        start_listener, {"EVENTS_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"})
    try:
        replies = await asyncio.to_thread(lmtp_deliver, away_port, raw, [address, "events@example.org"])
    finally:
        await asyncio.to_thread(stop_listener, away)
    assert [code for code, _ in replies] == [451, 451]
    assert (await subscriber(ada["id"]))["status"] == "confirmed" and await ledger() == []
    for _ in range(2):  # the MTA's retries reach the working listener
        assert await asyncio.to_thread(lmtp_deliver, listener, raw, [address, "events@example.org"]) == [
            (250, "2.0.0 OK"), (250, "2.0.0 OK")]
    assert (await subscriber(ada["id"]))["status"] == "unsubscribed"
    assert [r["kind"] for r in await ledger()] == ["unsubscribe"]


async def test_one_decline_delivered_three_times_at_once_promotes_one(listener):
    """An MTA retrying while another copy is in flight: stdin and LMTP at the same moment."""
    _, ada, bob, cy = await full_event_with_waitlist()
    uid = f"{uuid.uuid4().hex}@testserver"
    await db.fetch("UPDATE registration SET calendar_uid = {} WHERE id = {}", uid, ada["id"])
    raw = fill("gmail_reply.eml", calendar="gmail_reply.ics", UID=uid, PARTSTAT="DECLINED", VERB="Declined",
               ATTENDEE="ada.lovelace@gmail.com", DTSTAMP=dtstamp())
    results = await asyncio.gather(
        asyncio.to_thread(run_cli, "inbound", stdin=raw),
        asyncio.to_thread(lmtp_deliver, listener, raw, ["events@example.org"]),
        asyncio.to_thread(lmtp_deliver, listener, raw, ["events@example.org"]),
    )
    assert results[0].returncode == 0 and results[1:] == [[(250, "2.0.0 OK")]] * 2
    assert [(await status_of(r["id"]))["status"] for r in (ada, bob, cy)] == ["cancelled", "registered", "waitlisted"]
    assert len(await db.fetch("SELECT id FROM outbox WHERE kind = 'registration_promoted'")) == 1
    assert len(await ledger()) == 1
