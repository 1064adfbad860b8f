"""The bulletin in the workspace: write an issue, preview it as a page and as the email, send a
test, see the recipient count before releasing, follow the delivery, retry the failed."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone


from events_app import db
from events_app.domain import issues, mailings
from events_app.domain import outbox

from .conftest import assert_pages_need_a_session, assert_refused, audit_actions
from .test_subscribers_mail_audit import confirmed

BODY = "## Careers\r\n\r\nImplementation positions **you never knew** existed.\r\n\r\n<script>alert(1)</script>"


async def make_issue(client, csrf) -> int:
    answer = await client.post("/staff/issues", data={
        "csrf_token": csrf, "title": "October 2019", "issue_date": "2019-10-15", "summary": "Careers beyond academia",
        "body": BODY, "topic": "bulletin", "slug": ""})
    assert answer.status_code == 303, answer.text
    return int(re.search(r"/staff/issues/(\d+)", answer.headers["location"]).group(1))


async def test_write_preview_and_test_an_issue(client, csrf):
    assert (await client.get("/staff/issues/new")).status_code == 200
    bad = await client.post("/staff/issues", data={"csrf_token": csrf, "title": "", "issue_date": "2019-13-45"})
    assert bad.status_code == 400 and "issue_date" in bad.text and await db.fetch("SELECT id FROM issue") == []
    issue_id = await make_issue(client, csrf)
    issue = await issues.get(issue_id)
    assert issue["status"] == "draft" and issue["slug"] == "october-2019" and "\r" not in issue["body"]
    page = await client.get(f"/staff/issues/{issue_id}")
    web = page.text.split('id="preview-web">')[1].split("</div>")[0]
    assert "<h2>Careers</h2>" in web and "<strong>you never knew</strong>" in web and "<script>" not in web
    assert 'srcdoc="' in page.text and "Implementation in Action" in page.text.split('id="preview-subject">')[1][:200]
    assert "you never knew" in page.text.split('id="preview-text">')[1]
    # Preview of unsaved text: shown, not saved.
    unsaved = await client.post(f"/staff/issues/{issue_id}", data={
        "csrf_token": csrf, "title": "October 2019", "body": "Brand *new* words", "preview": "yes"})
    assert "Brand <em>new</em> words" in unsaved.text and "unsaved" in unsaved.text
    assert (await issues.get(issue_id))["body"] == issue["body"]
    saved = await client.post(f"/staff/issues/{issue_id}", data={"csrf_token": csrf, "title": "October 2019 issue", "body": "Brand *new* words"})
    assert saved.status_code == 303 and (await issues.get(issue_id))["title"] == "October 2019 issue"
    tested = await client.post(f"/staff/issues/{issue_id}/test", data={"csrf_token": csrf, "email": "editor@example.org"})
    assert tested.status_code == 303
    assert await db.fetch("SELECT kind, recipient FROM outbox") == [{"kind": "issue_test", "recipient": "editor@example.org"}]
    bad_test = await client.post(f"/staff/issues/{issue_id}/test", data={"csrf_token": csrf, "email": "nope"})
    assert bad_test.status_code == 400
    listing = await client.get("/staff/issues")
    assert "October 2019 issue" in listing.text and "Draft" in listing.text
    assert await audit_actions() == ["staff.create", "staff.login", "issue.create", "issue.update", "issue.test"]


async def test_release_shows_the_count_first_then_progress_and_retry(client, csrf):
    for n in range(3):
        await confirmed(f"reader{n}@example.org")
    await confirmed("other@example.org", topics=("events",))
    issue_id = await make_issue(client, csrf)
    ask = await client.get(f"/staff/issues/{issue_id}/release")
    assert 'data-recipients="3"' in ask.text and "Release to 3 subscribers" in ask.text
    assert (await issues.get(issue_id))["status"] == "draft"
    answer = await client.post(f"/staff/issues/{issue_id}/release", data={"csrf_token": csrf, "when": "now"})
    assert answer.status_code == 303 and answer.headers["location"] == f"/staff/issues/{issue_id}/progress"
    assert (await issues.get(issue_id))["status"] == "released"
    await mailings.tick()  # the worker's expansion: one ledger row per recipient
    rows = await db.fetch("SELECT id FROM outbox WHERE mailing IS NOT NULL ORDER BY id")
    await outbox.mark_sent(rows[0]["id"])
    await outbox.mark_failed(rows[1]["id"], "451 try later")
    progress = await client.get(f"/staff/issues/{issue_id}/progress")
    counts = dict(re.findall(r'data-(sent|failed|queued|total)="(\d+)"', progress.text))
    assert counts == {"sent": "1", "failed": "1", "queued": "1", "total": "3"}
    # No reload by header or <meta refresh> (it throws away focus and scroll): a Refresh link, the
    # figures as of a time, and a live part the page's script fetches.
    assert "refresh" not in progress.headers and 'http-equiv="refresh"' not in progress.text
    assert f'href="/staff/issues/{issue_id}/progress">Refresh</a>' in progress.text
    assert re.search(r"Figures as of <time datetime=\"[^\"]+\">\d+:\d\d:\d\d [AP]M \w+</time>", progress.text)
    assert 'aria-live="polite"' in progress.text and f'data-live-url="/staff/issues/{issue_id}/progress/live"' in progress.text
    before = await db.fetch("SELECT * FROM outbox ORDER BY id")
    live = await client.get(f"/staff/issues/{issue_id}/progress/live")
    assert live.status_code == 200 and "no-store" in live.headers["cache-control"]
    assert "<html" not in live.text and 'data-sent="1"' in live.text and 'data-status="sending"' in live.text
    assert await db.fetch("SELECT * FROM outbox ORDER BY id") == before  # the poll changes nothing
    retried = await client.post(f"/staff/issues/{issue_id}/retry", data={"csrf_token": csrf})
    assert retried.status_code == 303
    assert (await issues.delivery(issue_id))["failed"] == 0
    paused = await client.post(f"/staff/issues/{issue_id}/pause", data={"csrf_token": csrf})
    assert "Paused" in (await client.get(paused.headers["location"])).text
    await client.post(f"/staff/issues/{issue_id}/resume", data={"csrf_token": csrf})
    assert (await issues.delivery(issue_id))["paused_until"] is None
    again = await client.post(f"/staff/issues/{issue_id}/release", data={"csrf_token": csrf, "when": "now"})
    assert again.status_code == 409 and "already released" in again.text
    dashboard = await client.get("/staff")
    assert "October 2019" in dashboard.text and "3 in all" in dashboard.text
    assert [a for a in await audit_actions() if a.startswith("issue.")] == [
        "issue.create", "issue.release", "issue.retry_failed", "issue.pause", "issue.resume"]


async def test_schedule_a_release_at_a_time_typed_in_a_chosen_zone(client, csrf):
    await confirmed("reader@example.org")
    issue_id = await make_issue(client, csrf)
    past = await client.post(f"/staff/issues/{issue_id}/release", data={
        "csrf_token": csrf, "when": "later", "release_at": "2020-01-01T09:00", "timezone": "America/Toronto"})
    assert past.status_code == 400 and "in the past" in past.text and (await issues.get(issue_id))["status"] == "draft"
    at = (datetime.now(timezone.utc) + timedelta(days=2)).replace(second=0, microsecond=0)
    local = at.astimezone(__import__("zoneinfo").ZoneInfo("America/Toronto"))
    answer = await client.post(f"/staff/issues/{issue_id}/release", data={
        "csrf_token": csrf, "when": "later", "release_at": local.strftime("%Y-%m-%dT%H:%M"), "timezone": "America/Toronto"})
    assert answer.status_code == 303
    issue = await issues.get(issue_id)
    assert issue["status"] == "scheduled" and issue["release_at"] == at
    progress = await client.get(f"/staff/issues/{issue_id}/progress")
    # Shown in the zone of the latest event, or UTC when there is none.
    from events_app.timefmt import short_time

    assert "Scheduled" in progress.text and f"for {short_time(at, 'UTC')}." in progress.text
    assert re.search(r"for \w{3} \d{1,2} \w{3} \d{4}, \d{1,2}:\d\d [AP]M UTC\.", progress.text)


async def test_bulletin_actions_need_a_session_and_a_csrf_token(app, client, csrf):
    await confirmed("reader@example.org")
    issue_id = await make_issue(client, csrf)
    released = await make_issue(client, csrf)
    await issues.release(released)
    await mailings.tick()
    row = (await db.fetch("SELECT id FROM outbox WHERE mailing IS NOT NULL"))[0]
    await outbox.mark_failed(row["id"], "550 no")
    actions = {
        "/staff/issues": {"title": "Forged", "body": "x"},
        f"/staff/issues/{issue_id}": {"title": "Forged"},
        f"/staff/issues/{issue_id}/test": {"email": "attacker@example.org"},
        f"/staff/issues/{issue_id}/release": {"when": "now"},
        f"/staff/issues/{released}/retry": {},
        f"/staff/issues/{released}/pause": {},
    }
    before = await _snapshot()
    await assert_refused(app, client, csrf, actions)
    assert await _snapshot() == before
    await assert_pages_need_a_session(app, client, ("/staff/issues", "/staff/issues/new", f"/staff/issues/{issue_id}", f"/staff/issues/{issue_id}/release",
                 f"/staff/issues/{released}/progress"))


async def _snapshot() -> tuple:
    return (
        await db.fetch("SELECT id, title, status, version FROM issue ORDER BY id"),
        await db.fetch("SELECT id, status, paused_until FROM mailing ORDER BY id"),
        await db.fetch("SELECT id, status, attempts FROM outbox ORDER BY id"),
    )
