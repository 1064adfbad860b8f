"""Subscribers (counts, growth chart, search, CSV export, CSV import with a report), the mail
outbox with retry, and the audit log, through the HTTP app."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta, timezone


from events_app import db
from events_app.domain import subscriptions
from events_app.domain import outbox

from .conftest import assert_pages_need_a_session, assert_refused, audit_actions


async def confirmed(email: str, name: str = "", topics=("bulletin",), days_ago: int = 0) -> dict:
    await subscriptions.subscribe(email, name, await subscriptions.topic_ids(list(topics)))
    row = (await db.fetch("SELECT * FROM subscriber WHERE email = {}", email))[0]
    row = await subscriptions.confirm(subscriptions.confirm_token(row))
    await db.fetch("UPDATE subscriber SET confirmed_at = {} WHERE email = {}",
                   datetime.now(timezone.utc) - timedelta(days=days_ago), email)
    return row


async def test_subscribers_counts_chart_search_and_export(client, csrf):
    await confirmed("ada@example.org", "Ada Lovelace", ("bulletin", "events"), days_ago=3)
    await confirmed("grace@example.org", "Grace Hopper", ("bulletin",), days_ago=1)
    left = await confirmed("alan@example.org", "Alan Turing", ("careers",), days_ago=1)
    await subscriptions.unsubscribe(subscriptions.manage_token(left))
    page = await client.get("/staff/subscribers")
    assert page.status_code == 200
    bulletin = page.text.split('data-topic="bulletin"')[1].split("</tr>")[0]
    assert re.findall(r'data-status="(\w+)">(\d+)<', bulletin)[:2] == [("confirmed", "2"), ("paused", "0")]
    svg = re.search(r'id="subscribers-chart".*?</svg>', page.text, re.S).group(0)
    growth = [int(n) for n in re.findall(r'data-count="(\d+)"', svg)]
    # End of each day: Ada three days ago; Grace and Alan yesterday; Alan left today.
    assert growth == [1, 1, 3, 2]
    found = await client.get("/staff/subscribers", params={"q": "hopper"})
    assert "grace@example.org" in found.text and "ada@example.org" not in found.text
    exported = await client.get("/staff/subscribers/export.csv", params={"topic": "bulletin"})
    assert {r["email"] for r in csv.DictReader(io.StringIO(exported.text))} == {"ada@example.org", "grace@example.org"}
    bad = await client.get("/staff/subscribers", params={"status": "nonsense"})
    assert bad.status_code == 400 and "must be one of" in bad.text


async def test_import_a_csv_with_a_report(client, csrf):
    left = await confirmed("left@example.org")
    await subscriptions.unsubscribe(subscriptions.manage_token(left))
    body = "email,name\nnew@example.org,New Person\nnot-an-address,Bad\nleft@example.org,Left\n"
    answer = await client.post("/staff/subscribers/import", data={"csrf_token": csrf, "topics": ["bulletin", "events"]},
                               files={"file": ("list.csv", body.encode(), "text/csv")})
    assert answer.status_code == 200
    assert 'data-imported="1"' in answer.text and 'data-invalid="1"' in answer.text
    assert "list.csv: 3 rows read into bulletin, events" in answer.text
    assert "must be an email address" in answer.text and "unsubscribed; not re-added" in answer.text
    row = (await db.fetch("SELECT status, source FROM subscriber WHERE email = 'new@example.org'"))[0]
    assert row == {"status": "confirmed", "source": "import"}
    assert (await db.fetch("SELECT status FROM subscriber WHERE email = 'left@example.org'"))[0]["status"] == "unsubscribed"
    no_header = await client.post("/staff/subscribers/import", data={"csrf_token": csrf, "topics": "bulletin"},
                                  files={"file": ("x.csv", b"name\nAda\n", "text/csv")})
    assert no_header.status_code == 400 and "Nothing was imported" in no_header.text and "/tmp" not in no_header.text
    assert "subscribers.import" in await audit_actions()


async def test_mail_page_lists_messages_and_retries_a_failed_one(client, csrf):
    ok = await outbox.enqueue("registration_confirmed", "ada@example.org", {"registration_id": 1})
    bad = await outbox.enqueue("registration_confirmed", "grace@example.org", {"registration_id": 2})
    await outbox.mark_sent(ok)
    await outbox.mark_failed(bad, "550 5.1.1 mailbox unavailable")
    page = await client.get("/staff/mail")
    assert "ada@example.org" in page.text and "550 5.1.1 mailbox unavailable" in page.text
    assert 'data-count-failed="1"' in page.text
    failed = await client.get("/staff/mail", params={"status": "failed"})
    assert "grace@example.org" in failed.text and "ada@example.org" not in failed.text
    retried = await client.post(f"/staff/mail/{bad}/retry", data={"csrf_token": csrf})
    assert retried.status_code == 303
    row = (await db.fetch("SELECT status, attempts FROM outbox WHERE id = {}", bad))[0]
    assert row == {"status": "queued", "attempts": 0}
    again = await client.post(f"/staff/mail/{ok}/retry", data={"csrf_token": csrf})
    assert "no longer failed" in (await client.get(again.headers["location"])).text
    assert (await db.fetch("SELECT status FROM outbox WHERE id = {}", ok))[0]["status"] == "sent"
    assert (await audit_actions()).count("mail.retry") == 1


async def test_audit_log_shows_who_did_what(client, csrf, auth):
    made = await client.post("/api/v1/events", headers=auth, json={
        "title": "API event", "starts_at": "2031-03-03T12:00", "ends_at": "2031-03-03T13:00", "timezone": "America/Toronto"})
    event_id = made.json()["id"]
    await client.patch(f"/api/v1/events/{event_id}", headers=auth, json={"title": "API event, renamed"})
    await client.post(f"/api/v1/events/{event_id}/publish", headers=auth)
    await client.post(f"/api/v1/events/{event_id}/cancel", headers=auth)
    page = await client.get("/staff/audit")
    actions = re.findall(r'data-action="([\w.]+)"', page.text)
    assert actions[:4] == ["event.cancel", "event.publish", "event.update", "event.create"]
    assert "staff@example.org" in page.text and f'href="/staff/events/{event_id}"' in page.text


async def test_subscriber_and_mail_actions_need_a_session_and_a_csrf_token(app, client, csrf):
    bad = await outbox.enqueue("registration_confirmed", "grace@example.org", {"registration_id": 2})
    await outbox.mark_failed(bad, "550 no")
    files = {"file": ("list.csv", b"email\nnew@example.org\n", "text/csv")}
    await assert_refused(app, client, csrf, {f"/staff/mail/{bad}/retry": {}})
    await assert_refused(app, client, csrf, {"/staff/subscribers/import": {"topics": "bulletin"}}, files=files)
    assert (await db.fetch("SELECT status FROM outbox WHERE id = {}", bad))[0]["status"] == "failed"
    assert await db.fetch("SELECT id FROM subscriber") == []
    await assert_pages_need_a_session(
        app, client, ("/staff/subscribers", "/staff/subscribers/export.csv", "/staff/mail", "/staff/audit"))
