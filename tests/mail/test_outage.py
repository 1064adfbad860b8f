"""The mail server goes away: nothing is lost and nothing arrives twice. A recipient the server
refuses for good fails once, and is not retried."""

from __future__ import annotations

from datetime import datetime, timezone

from .helpers import make_all_due, outbox_rows, published_webinar, register, row_message_id


async def test_a_confirmation_survives_an_smtp_outage_and_arrives_exactly_once(worker, smtp_server):
    event = await published_webinar()
    smtp_server.stop()
    await register(event, "Ada Lovelace", "ada@example.com")
    await register(event, "Bob Builder", "bob@example.com")

    before = datetime.now(timezone.utc)
    assert await worker.run_once() == 2

    rows = await outbox_rows("registration_confirmed")
    for row in rows:  # both back in the queue, later, with the reason; nothing was delivered
        assert row["status"] == "queued"
        assert row["attempts"] == 1
        assert row["next_attempt_at"] > before
        assert "cannot connect" in row["last_error"]
    assert await worker.run_once() == 0  # the backoff holds them back

    smtp_server.start()
    await make_all_due()
    assert await worker.run_once() == 2

    [ada] = smtp_server.to("ada@example.com")
    assert ada["Message-ID"] == row_message_id(rows[0])
    assert len(smtp_server.to("bob@example.com")) == 1
    for row in await outbox_rows():
        assert row["status"] == "sent" and row["attempts"] == 2 and row["last_error"] == ""

    await make_all_due()
    assert await worker.run_once() == 0
    assert len(smtp_server.messages()) == 2


async def test_a_message_claimed_by_a_worker_that_died_is_sent_once_later(worker, smtp_server):
    """A worker died after claiming (row left in `sending`): past the claim time-out another
    worker sends it, with the same Message-ID."""
    from events_app import db
    from events_app.domain import outbox

    event = await published_webinar()
    await register(event, "Ada Lovelace", "ada@example.com")
    [claimed] = await outbox.claim(10, claim_timeout=300)
    assert await worker.run_once() == 0  # still someone else's
    await db.fetch(
        "UPDATE outbox SET claimed_at = {} WHERE id = {}", datetime(2000, 1, 1, tzinfo=timezone.utc), claimed["id"]
    )

    assert await worker.run_once() == 1

    [message] = smtp_server.to("ada@example.com")
    [row] = await outbox_rows()
    assert message["Message-ID"] == row_message_id(row)
    assert row["status"] == "sent"


async def test_a_recipient_refused_for_good_fails_without_retry(worker, smtp_server):
    event = await published_webinar()
    smtp_server.reply_to("gone@example.com", "550 5.1.1 <gone@example.com>: mailbox unavailable")
    await register(event, "Gone Person", "gone@example.com")
    await register(event, "Ada Lovelace", "ada@example.com")

    assert await worker.run_once() == 2

    gone, ada = await outbox_rows("registration_confirmed")
    assert gone["status"] == "failed"
    assert "550" in gone["last_error"] and "mailbox unavailable" in gone["last_error"]
    assert ada["status"] == "sent"  # one bad address does not hold up the others
    assert len(smtp_server.to("ada@example.com")) == 1

    await make_all_due()
    assert await worker.run_once() == 0
    gone_again = (await outbox_rows("registration_confirmed"))[0]
    assert gone_again["status"] == "failed" and gone_again["attempts"] == 1
    assert smtp_server.to("gone@example.com") == []


async def test_a_recipient_deferred_with_4xx_is_retried_and_delivered(worker, smtp_server):
    event = await published_webinar()
    smtp_server.reply_to("busy@example.com", "451 4.7.1 Greylisted, try again later")
    await register(event, "Busy Person", "busy@example.com")

    assert await worker.run_once() == 1
    [row] = await outbox_rows()
    assert row["status"] == "queued" and "451" in row["last_error"]

    smtp_server.replies.clear()
    await make_all_due()
    assert await worker.run_once() == 1
    assert len(smtp_server.to("busy@example.com")) == 1
    [row] = await outbox_rows()
    assert row["status"] == "sent"


async def test_rows_that_keep_failing_end_as_failed(smtp_settings, smtp_server):
    import dataclasses

    from events_app.mail.worker import Worker

    worker = Worker(dataclasses.replace(smtp_settings, outbox_max_attempts=2))
    event = await published_webinar()
    smtp_server.stop()
    await register(event, "Ada Lovelace", "ada@example.com")

    await worker.run_once()
    await make_all_due()
    await worker.run_once()

    [row] = await outbox_rows()
    assert row["status"] == "failed" and row["attempts"] == 2
    assert "cannot connect" in row["last_error"]
