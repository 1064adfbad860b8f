"""The three subscription messages (events_app/mail/messages.py, emails/subscription_*), as a
mail client receives them from a real worker through a real SMTP server (aiosmtpd on loopback):
what each says and links to, to whom, and which are dropped at send time because the subscriber
moved on (confirmed, unsubscribed, erased, gone)."""

from __future__ import annotations

import dataclasses

import pytest

from events_app import db, settings
from events_app.domain import subscriptions
from events_app.domain import outbox
from events_app.mail import messages
from mail.helpers import html_of, outbox_rows, parts, row_message_id, text_of
from mail.sending import drain
from subscriber_mail import (
    BULLETIN, confirm_url, confirmed, forget_throttle, links_in, manage_url, row, site_links, subscribe,
)


async def test_confirmation_asks_for_a_button_press_lists_the_topics_and_says_ignore_if_not_you(smtp_server, worker):
    ada = await subscribe("ada@example.org", "Ada Lovelace", ["bulletin", "events"])
    await drain(worker)
    (message,) = smtp_server.to("ada@example.org")
    assert str(message["To"]) == "Ada Lovelace <ada@example.org>"
    assert str(message["From"]) == "Implementation Centre <events@example.org>"
    assert str(message["Subject"]) == "Please confirm your subscription"
    (sent,) = await outbox_rows("subscription_confirm")
    assert sent["status"] == "sent" and str(message["Message-ID"]) == row_message_id(sent)
    assert message["Date"] and message["Auto-Submitted"] == "auto-generated"
    assert set(parts(message)) == {"text/plain", "text/html"}
    # A transactional answer to a request, not list mail.
    assert message["List-Unsubscribe"] is None and message["List-Id"] is None

    text, html = text_of(message), html_of(message)
    link = confirm_url(ada)
    assert link in text and f'href="{link}"' in html
    for body in (text, html):
        assert "Hello Ada Lovelace," in body
        assert BULLETIN in body and "Events" in body and "Career events" not in body
        assert "press the button on the page it opens" in body
        assert "works for 7 days" in body
        assert "If this wasn't you, ignore this email" in body
    # The only capability in it is the confirmation: no preference or unsubscribe link, which
    # whoever typed someone else's address must not be able to get mailed to that person.
    assert site_links(message) == {link, "http://testserver/"}
    assert manage_url(ada) not in text + html


async def test_one_topic_is_named_in_the_subject_and_no_name_means_a_bare_address(smtp_server, worker):
    await subscribe("grace@example.org")  # topics default to the bulletin
    await drain(worker)
    (message,) = smtp_server.to("grace@example.org")
    assert str(message["Subject"]) == f"Please confirm your subscription to {BULLETIN}"
    assert str(message["To"]) == "grace@example.org"
    assert text_of(message).splitlines()[0] == "Hello,"


async def test_name_cannot_inject_headers_or_markup(smtp_server, worker):
    await subscribe("eve@example.org", "Eve <b>Bold</b>\r\nBcc: victim@example.org")
    await drain(worker)
    (received,) = smtp_server.received
    assert received.rcpt_tos == ["eve@example.org"]
    message = received.message
    assert message["Bcc"] is None and "victim" not in str(message["To"]).split("<")[-1]
    assert "<b>Bold</b>" not in html_of(message) and "&lt;b&gt;Bold&lt;/b&gt;" in html_of(message)


async def test_asking_again_for_a_confirmed_address_sends_the_preference_link_and_changes_nothing(smtp_server, worker):
    ada = await confirmed("ada@example.org", "Ada", ["bulletin", "careers"])
    await drain(worker)
    smtp_server.received.clear()
    await subscriptions.subscribe("ada@example.org", "Someone Else", await subscriptions.topic_ids(["events"]))
    after = await row("ada@example.org")
    assert (after["status"], after["name"], after["topics"]) == ("confirmed", "Ada", ["bulletin", "careers"])
    await drain(worker)
    (message,) = smtp_server.to("ada@example.org")
    assert str(message["Subject"]) == "You're already subscribed"
    assert str(message["To"]) == "Ada <ada@example.org>"
    text, html = text_of(message), html_of(message)
    for body in (text, html):
        assert "It is already subscribed, so nothing has changed." in body
        assert BULLETIN in body and "Career events" in body and "Announcements of upcoming" not in body
        assert "If this wasn't you, there is nothing to do." in body
    manage = manage_url(ada)
    assert site_links(message) == {"http://testserver/", manage, manage + "/unsubscribe"}
    assert confirm_url(ada) not in text + html
    assert message["List-Unsubscribe"] is None


async def test_a_paused_subscriber_is_told_until_when(smtp_server, worker):
    ada = await confirmed("ada@example.org", "Ada")
    await subscriptions.pause(subscriptions.manage_token(ada), 3)
    until = (await row("ada@example.org"))["paused_until"]
    await subscriptions.subscribe("ada@example.org", "", await subscriptions.topic_ids(None))
    await drain(worker)
    message = smtp_server.to("ada@example.org")[-1]
    day = f"{until.day} {until:%B %Y}"
    assert f"Everything is paused until {day}." in text_of(message)
    assert day in html_of(message)


@pytest.mark.parametrize(
    ("state", "says"),
    [
        ("confirmed", f"- {BULLETIN} – Our periodic bulletin"),
        ("pending", "Your subscription is not confirmed yet, so we send you nothing for now."),
        ("unsubscribed", "You are unsubscribed, so we send you nothing."),
    ],
)
async def test_email_me_my_link_sends_the_preference_link_for_any_known_address(smtp_server, worker, state, says):
    subscriber = await subscribe("ada@example.org", "Ada")
    await drain(worker)
    if state != "pending":
        subscriber = await confirmed("ada@example.org")
    if state == "unsubscribed":
        await subscriptions.unsubscribe(subscriptions.manage_token(subscriber))
        subscriber = await row("ada@example.org")  # unsubscribing rotated the link secret
    await drain(worker)
    smtp_server.received.clear()
    await subscriptions.send_link("ADA@example.org")
    await drain(worker)
    (message,) = smtp_server.to("ada@example.org")
    assert str(message["Subject"]) == "Your link to your subscription preferences"
    text = text_of(message)
    assert says in text
    manage = manage_url(subscriber)
    assert manage in text and f'href="{manage}"' in html_of(message)
    assert "If you didn't ask for this link, ignore this email: nothing has changed." in text
    assert site_links(message) == {"http://testserver/", manage, manage + "/unsubscribe"}


async def test_email_me_my_link_for_an_unknown_or_erased_address_sends_nothing(smtp_server, worker):
    gone = await confirmed("gone@example.org")
    await subscriptions.erase(subscriptions.manage_token(gone))
    await subscriptions.send_link("nobody@example.org")
    await subscriptions.send_link("gone@example.org")
    await drain(worker)
    assert smtp_server.messages() == []
    assert await outbox_rows("subscription_link") == []


async def test_a_confirmation_still_queued_when_the_subscriber_confirms_is_dropped(smtp_server, worker):
    ada = await subscribe("ada@example.org")
    await forget_throttle("ada@example.org")
    await subscriptions.subscribe("ada@example.org", "", await subscriptions.topic_ids(None))  # a re-send
    await subscriptions.confirm(subscriptions.confirm_token(ada))  # with the link from the first
    await drain(worker)
    assert smtp_server.messages() == []
    rows = await outbox_rows("subscription_confirm")
    assert [(r["status"], r["last_error"]) for r in rows] == [
        ("failed", "not sent: the subscription is confirmed; there is nothing to confirm")
    ] * 2


async def test_a_confirmation_queued_before_an_unsubscribe_is_not_sent(smtp_server, worker):
    ada = await subscribe("ada@example.org")
    await subscriptions.unsubscribe(subscriptions.manage_token(ada))
    await drain(worker)
    assert smtp_server.messages() == []
    (failed,) = await outbox_rows("subscription_confirm")
    assert failed["last_error"] == "not sent: the subscription is unsubscribed; there is nothing to confirm"


async def test_an_already_subscribed_note_is_not_sent_after_an_unsubscribe(smtp_server, worker):
    ada = await confirmed("ada@example.org")
    await subscriptions.subscribe("ada@example.org", "", await subscriptions.topic_ids(None))
    await subscriptions.unsubscribe(subscriptions.manage_token(ada))
    await drain(worker)
    assert smtp_server.messages() == []
    (failed,) = await outbox_rows("subscription_known")
    assert failed["status"] == "failed" and "unsubscribed" in failed["last_error"]


async def test_a_message_in_flight_when_the_subscriber_erases_is_dropped_and_names_nobody():
    """Erasure fails queued rows itself; a row a worker already claimed meets the builder."""
    ada = await confirmed("ada@example.org", "Ada")
    await subscriptions.send_link("ada@example.org")
    (claimed,) = [r for r in await outbox.claim(10, 300) if r["kind"] == "subscription_link"]
    await subscriptions.erase(subscriptions.manage_token(ada))
    with pytest.raises(messages.Superseded, match="erased"):
        await messages.build(claimed, settings.get())
    assert "ada@example.org" not in str(await db.fetch("SELECT * FROM outbox"))


async def test_rows_for_a_deleted_subscriber_or_none_are_undeliverable():
    ada = await subscribe("ada@example.org")
    for kind in sorted(messages.SUBSCRIPTION_KINDS):
        await outbox.enqueue(kind, "ada@example.org", {"subscriber_id": ada["id"] + 1000})
        await outbox.enqueue(kind, "ada@example.org", {})
    rows = [r for r in await outbox.claim(50, 300) if r["kind"] in messages.SUBSCRIPTION_KINDS]
    assert len(rows) == 7  # six above and the confirmation
    for claimed in rows:
        if claimed["payload"].find(str(ada["id"] + 1000)) >= 0:
            with pytest.raises(messages.Undeliverable, match="no longer exists"):
                await messages.build(claimed, settings.get())
        elif "subscriber_id" not in claimed["payload"]:
            with pytest.raises(messages.Undeliverable, match="names no subscriber"):
                await messages.build(claimed, settings.get())


async def test_a_row_for_another_address_than_the_subscribers_is_not_sent():
    ada = await subscribe("ada@example.org")
    await outbox.enqueue("subscription_confirm", "mallory@example.org", {"subscriber_id": ada["id"]})
    (claimed,) = [r for r in await outbox.claim(50, 300) if r["recipient"] == "mallory@example.org"]
    with pytest.raises(messages.Undeliverable, match="not the subscriber's address"):
        await messages.build(claimed, settings.get())


async def test_links_follow_the_base_url_at_send_time(smtp_server, smtp_settings):
    from events_app.mail.worker import Worker

    ada = await subscribe("ada@example.org")
    other = Worker(dataclasses.replace(smtp_settings, base_url="https://news.example.org"))
    try:
        await drain(other)
    finally:
        await other.transport.close()
    (message,) = smtp_server.to("ada@example.org")
    token = subscriptions.confirm_token(ada)
    assert f"https://news.example.org/s/confirm/{token}" in links_in(message)
    assert not any(u.startswith("http://testserver") for u in links_in(message))
