"""Must show 1: a subscriber's whole life through the HTTP app and a real SMTP server
(aiosmtpd on loopback, a real worker): subscribe by the API and by the form, confirm from the
emailed link (GET shows a button and changes nothing, POST confirms), change preferences (topics,
name, pause, leave one topic), export, one-click unsubscribe with no cookie and no CSRF token
(200, twice), and erasure that leaves only the address's hash."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import httpx

from events_app import db
from events_app.domain import subscriptions
from mail.sending import drain
from subscriber_mail import BULLETIN, confirm_url, forget_throttle, manage_url, one_link, path_of, row, snapshot

CONFIRM_PATH = r"/s/confirm/[0-9]+\.[A-Za-z0-9_-]{43}"
MANAGE_PATH = r"/s/[0-9]+\.[A-Za-z0-9_-]{43}"


async def _only_message(smtp_server, address: str, subject: str):
    messages = smtp_server.to(address)
    assert [str(m["Subject"]) for m in messages] == [subject]
    smtp_server.received.clear()
    return messages[0]


async def _confirm_from_email(client, smtp_server, worker, address: str, subject: str) -> dict:
    """Follow the confirmation email as a person does: open the link, then press the button."""
    await drain(worker)
    message = await _only_message(smtp_server, address, subject)
    path = path_of(one_link(message, CONFIRM_PATH))
    before = await snapshot()
    page = await client.get(path)
    assert page.status_code == 200
    assert f'<form method="post" action="{path}">' in page.text and "<button" in page.text
    assert await snapshot() == before, "opening the confirmation link changed something"
    assert (await row(address))["status"] == "pending"

    done = await client.post(path)
    assert done.status_code == 200 and "You're subscribed" in done.text
    subscriber = await row(address)
    assert subscriber["status"] == "confirmed" and subscriber["confirmed_at"] is not None
    return subscriber


async def test_subscribe_by_api_confirm_change_preferences_unsubscribe_in_one_click_and_erase(app, client, smtp_server, worker):
    answer = await client.post(
        "/api/v1/subscribers",
        json={"email": "Ada@Example.org", "name": "Ada Lovelace", "topics": ["bulletin", "events"]},
    )
    assert answer.status_code == 202
    subscriber = await _confirm_from_email(client, smtp_server, worker, "ada@example.org", "Please confirm your subscription")
    assert (subscriber["name"], subscriber["topics"], subscriber["source"]) == ("Ada Lovelace", ["bulletin", "events"], "api")

    # The preference link, as someone who lost it gets it again.
    assert (await client.post("/s/link", data={"email": "ada@example.org"})).status_code == 200
    await drain(worker)
    message = await _only_message(smtp_server, "ada@example.org", "Your link to your subscription preferences")
    manage = path_of(one_link(message, MANAGE_PATH))
    assert manage == path_of(manage_url(subscriber))
    page = await client.get(manage)
    assert page.status_code == 200 and "ada@example.org" in page.text
    assert 'value="bulletin" checked' in page.text and 'value="careers">' in page.text

    # Join one topic and leave another, and change the name: it sticks.
    saved = await client.post(manage, data={"action": "save", "topics": ["bulletin", "careers"], "name": "Ada King"})
    assert saved.status_code == 303 and saved.headers["location"] == f"{manage}?saved=save"
    after = await row("ada@example.org")
    assert (after["topics"], after["name"], after["status"]) == (["bulletin", "careers"], "Ada King", "confirmed")
    page = (await client.get(saved.headers["location"])).text
    assert "Saved." in page and 'value="careers" checked' in page and 'value="events">' in page
    assert 'value="Ada King"' in page

    # Pause for four weeks.
    start = datetime.now(timezone.utc)
    assert (await client.post(manage, data={"action": "pause", "weeks": "4"})).status_code == 303
    paused = (await row("ada@example.org"))["paused_until"]
    assert start + timedelta(weeks=4) <= paused <= datetime.now(timezone.utc) + timedelta(weeks=4)
    assert f"paused until {paused.day} {paused:%B %Y}" in (await client.get(manage)).text

    # Leave one topic only.
    assert (await client.post(manage, data={"action": "leave", "topic": "careers"})).status_code == 303
    assert (await row("ada@example.org"))["topics"] == ["bulletin"]
    bad = await client.post(manage, data={"action": "leave", "topic": "no-such-topic"})
    assert bad.status_code == 400 and (await row("ada@example.org"))["topics"] == ["bulletin"]

    # Export: everything we hold, as JSON.
    export = await client.post(manage, data={"action": "export"})
    assert export.status_code == 200 and export.headers["content-type"].startswith("application/json")
    assert "attachment" in export.headers["content-disposition"]
    data = json.loads(export.content)
    assert (data["email"], data["name"], data["status"], data["topics"]) == (
        "ada@example.org", "Ada King", "confirmed", ["bulletin"]
    )
    assert datetime.fromisoformat(data["paused_until"]) == paused
    assert datetime.fromisoformat(data["confirmed_at"]) == after["confirmed_at"]

    # One-click unsubscribe as a mail client sends it (RFC 8058): a bare POST with no cookie,
    # no CSRF token, no session, from a client that never saw the site.
    unsubscribe = one_link(message, MANAGE_PATH + "/unsubscribe")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as mail_client:
        for attempt in (1, 2):
            answer = await mail_client.post(
                unsubscribe, content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert "cookie" not in answer.request.headers and not mail_client.cookies
            assert answer.status_code == 200, f"attempt {attempt}"
            assert "location" not in answer.headers and "You are unsubscribed" in answer.text
            gone = await row("ada@example.org")
            assert gone["status"] == "unsubscribed" and gone["unsubscribed_at"] is not None
            if attempt == 1:
                first_time, first_answer = gone["unsubscribed_at"], answer.content
    assert gone["unsubscribed_at"] == first_time, "the second POST changed nothing"
    assert answer.content == first_answer, "the second POST answered differently"
    # Unsubscribing retired the links already sent; the owner asks for a new one.
    assert (await client.get(manage)).status_code == 404
    await forget_throttle("ada@example.org")  # the link was asked for minutes ago
    await client.post("/s/link", data={"email": "ada@example.org"})
    await drain(worker)
    message = await _only_message(smtp_server, "ada@example.org", "Your link to your subscription preferences")
    old_manage, manage = manage, path_of(one_link(message, MANAGE_PATH))
    assert manage != old_manage and "unsubscribed" in (await client.get(manage)).text

    # Erase: the address and name go, only the hash stays; the links stop working.
    erased = await client.post(manage, data={"action": "erase"})
    assert erased.status_code == 200 and "Your data is deleted" in erased.text
    (left,) = await db.fetch("SELECT * FROM subscriber")
    assert (left["email"], left["name"], left["status"]) == (None, "", "erased")
    assert left["email_hash"] == subscriptions.email_hash("ada@example.org")
    assert left["erased_at"] is not None and left["paused_until"] is None
    assert await db.fetch("SELECT * FROM subscription") == []
    assert "ada@example.org" not in json.dumps(await snapshot(), default=str).lower()
    for path in (manage, old_manage, path_of(unsubscribe), path_of(confirm_url(left))):
        assert (await client.get(path)).status_code == 404


async def test_subscribe_by_the_form_with_topic_boxes(client, smtp_server, worker):
    form = await client.get("/bulletin/subscribe")
    assert form.status_code == 200 and BULLETIN in form.text
    for slug in ("bulletin", "events", "careers"):
        assert f'name="topics" value="{slug}"' in form.text
    answer = await client.post(
        "/bulletin/subscribe", data={"email": "grace@example.org", "name": "Grace", "topics": ["bulletin", "careers"]}
    )
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    subscriber = await _confirm_from_email(client, smtp_server, worker, "grace@example.org", "Please confirm your subscription")
    assert (subscriber["name"], subscriber["topics"], subscriber["source"]) == ("Grace", ["bulletin", "careers"], "form")


# events_app/web/subscriber.py `_form_topics` calls `form.getall("topics")`, which raises KeyError
# when no box is ticked (Litestar's FormMultiDict.getall has no default): a 500 instead of the
# form with its errors, and on the preference page instead of "leave every topic".
async def test_the_form_names_what_is_missing_and_subscribes_no_one(client, smtp_server, worker):
    answer = await client.post("/bulletin/subscribe", data={"email": "not-an-address", "name": "X"})
    assert answer.status_code == 400
    assert "must be an email address" in answer.text and "choose at least one" in answer.text
    await drain(worker)
    assert await db.fetch("SELECT id FROM subscriber") == [] and smtp_server.messages() == []


async def test_confirming_twice_or_with_a_wrong_or_expired_link(client, smtp_server, worker):
    await client.post("/api/v1/subscribers", json={"email": "ada@example.org"})
    subscriber = await _confirm_from_email(client, smtp_server, worker, "ada@example.org",
                                           f"Please confirm your subscription to {BULLETIN}")
    path = path_of(confirm_url(subscriber))
    again = await client.post(path)
    assert again.status_code == 200 and (await row("ada@example.org"))["confirmed_at"] == subscriber["confirmed_at"]
    assert "already confirmed" in (await client.get(path)).text
    assert (await client.get(path[:-1] + ("A" if path[-1] != "A" else "B"))).status_code == 404
    assert (await client.post(path_of(manage_url(subscriber)).replace("/s/", "/s/confirm/"))).status_code == 404

    await client.post("/api/v1/subscribers", json={"email": "late@example.org"})
    late = await row("late@example.org")
    await db.fetch("UPDATE subscriber SET confirm_sent_at = {} WHERE id = {}",
                   late["confirm_sent_at"] - timedelta(days=8), late["id"])
    expired = await client.post(path_of(confirm_url(late)))
    assert expired.status_code == 404 and "expired" in expired.text
    assert (await row("late@example.org"))["status"] == "pending"


async def test_choosing_topics_again_after_unsubscribing_asks_to_confirm(client, smtp_server, worker):
    await client.post("/api/v1/subscribers", json={"email": "ada@example.org", "topics": ["events"]})
    subscriber = await _confirm_from_email(client, smtp_server, worker, "ada@example.org",
                                           "Please confirm your subscription to Events")
    assert (await client.post(path_of(manage_url(subscriber)) + "/unsubscribe")).status_code == 200
    # The old links are retired; a new one, asked for by email, shows the page without the button.
    await client.post("/s/link", data={"email": "ada@example.org"})
    await drain(worker)
    message = await _only_message(smtp_server, "ada@example.org", "Your link to your subscription preferences")
    manage = path_of(one_link(message, MANAGE_PATH))
    assert 'action="' + manage + '/unsubscribe"' not in (await client.get(manage + "/unsubscribe")).text
    # Ticking topics on an unsubscribed page joins nothing until the emailed confirmation (issue 14).
    saved = await client.post(manage, data={"action": "save", "topics": ["bulletin"], "name": ""})
    assert saved.headers["location"] == f"{manage}?saved=resubscribe"
    back = await row("ada@example.org")
    assert (back["status"], back["requested"]) == ("unsubscribed", ["bulletin"])
    back = await subscriptions.confirm(subscriptions.confirm_token(back))
    assert (back["status"], back["topics"]) == ("confirmed", ["bulletin"])


async def test_unticking_every_topic_leaves_them_all_and_the_address_stays_confirmed(client, smtp_server, worker):
    await client.post("/api/v1/subscribers", json={"email": "ada@example.org", "topics": ["bulletin", "events"]})
    subscriber = await _confirm_from_email(client, smtp_server, worker, "ada@example.org", "Please confirm your subscription")
    manage = path_of(manage_url(subscriber))
    saved = await client.post(manage, data={"action": "save", "name": "Ada"})
    assert saved.status_code == 303
    after = await row("ada@example.org")
    assert (after["status"], after["topics"], after["name"]) == ("confirmed", [], "Ada")


async def test_an_old_confirmation_link_after_unsubscribing_says_what_is_true(client, smtp_server, worker):
    await client.post("/api/v1/subscribers", json={"email": "ada@example.org"})
    subscriber = await _confirm_from_email(client, smtp_server, worker, "ada@example.org",
                                           f"Please confirm your subscription to {BULLETIN}")
    assert (await client.post(path_of(manage_url(subscriber)) + "/unsubscribe")).status_code == 200
    answer = await client.post(path_of(confirm_url(subscriber)))
    status = (await row("ada@example.org"))["status"]
    assert status == "confirmed" or "You're subscribed" not in answer.text, (status, answer.text)
