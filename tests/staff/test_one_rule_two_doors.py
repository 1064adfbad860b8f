"""One rule, whichever door: the API (bearer token) and the workspace (session and form) give the
same outcome for the same request, because the rule and the audit entry live in the domain
(domain/issues.py, domain/mailings.py, domain/staff.py, domain/importer.py, domain/audit.py)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from events_app import db
from events_app.domain import audit, issues, mailings, outbox, staff
from events_app.domain.errors import Conflict
from factories import published_event

from .test_subscribers_mail_audit import confirmed


async def entries(action_prefix: str = "") -> list[dict]:
    rows = await db.fetch(
        "SELECT staff, action, subject_type, subject_id, summary FROM audit_entry ORDER BY id"
    )
    return [r for r in rows if r["action"].startswith(action_prefix)]


async def api_issue(client, auth, title: str = "Same issue") -> int:
    answer = await client.post("/api/v1/issues", json={"title": title, "body": "Hi"}, headers=auth)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


async def page_issue(client, csrf, title: str = "Same issue") -> int:
    answer = await client.post("/staff/issues", data={"csrf_token": csrf, "title": title, "body": "Hi"})
    assert answer.status_code == 303, answer.text
    return int(re.search(r"/staff/issues/(\d+)", answer.headers["location"]).group(1))


async def test_a_past_release_time_is_refused_alike_by_the_api_and_the_workspace(client, csrf, auth):
    await confirmed("reader@example.org")
    by_api, by_page = await api_issue(client, auth), await page_issue(client, csrf)
    past = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(hours=3)
    api = await client.post(f"/api/v1/issues/{by_api}/release", json={"release_at": past.isoformat()}, headers=auth)
    form = await client.post(f"/staff/issues/{by_page}/release", data={
        "csrf_token": csrf, "when": "later", "release_at": past.strftime("%Y-%m-%dT%H:%M"), "timezone": "UTC"})
    assert api.status_code == form.status_code == 400
    assert "in the past" in api.json()["errors"]["release_at"]
    assert "in the past" in form.text.split('name="release_at"')[1][:2000]
    # Nothing was released or scheduled by either door, and nothing went to the outbox.
    assert {(await issues.get(i))["status"] for i in (by_api, by_page)} == {"draft"}
    assert await db.fetch("SELECT id FROM mailing") == [] and await entries("issue.release") == []
    # A time still ahead schedules, alike.
    ahead = (datetime.now(timezone.utc) + timedelta(days=2)).replace(second=0, microsecond=0)
    api = await client.post(f"/api/v1/issues/{by_api}/release", json={"release_at": ahead.isoformat()}, headers=auth)
    form = await client.post(f"/staff/issues/{by_page}/release", data={
        "csrf_token": csrf, "when": "later", "release_at": ahead.strftime("%Y-%m-%dT%H:%M"), "timezone": "UTC"})
    assert api.status_code == 202 and form.status_code == 303
    for issue_id in (by_api, by_page):
        issue = await issues.get(issue_id)
        assert issue["status"] == "scheduled" and issue["release_at"] == ahead


def _same(rows: list[dict]) -> list[tuple]:
    return [(r["action"], r["subject_type"], r["summary"]) for r in rows]


async def test_each_issue_action_writes_one_entry_the_same_from_both_doors(client, csrf, auth):
    for n in range(2):
        await confirmed(f"reader{n}@example.org")
    lead = (await staff.get_by_email("lead@example.org"))["id"]
    api_staff = (await staff.get_by_email("staff@example.org"))["id"]
    done: dict[str, list[dict]] = {}
    for door in ("api", "page"):
        before = len(await entries())
        if door == "api":
            issue_id = await api_issue(client, auth)
            calls = [
                client.patch(f"/api/v1/issues/{issue_id}", json={"title": "Renamed"}, headers=auth),
                client.post(f"/api/v1/issues/{issue_id}/test", json={"email": "Editor@Example.org"}, headers=auth),
                client.post(f"/api/v1/issues/{issue_id}/release", headers=auth),
            ]
        else:
            issue_id = await page_issue(client, csrf)
            calls = [
                client.post(f"/staff/issues/{issue_id}", data={"csrf_token": csrf, "title": "Renamed"}),
                client.post(f"/staff/issues/{issue_id}/test", data={"csrf_token": csrf, "email": "Editor@Example.org"}),
                client.post(f"/staff/issues/{issue_id}/release", data={"csrf_token": csrf, "when": "now"}),
            ]
        for call in calls:
            assert (await call).status_code in (200, 202, 303)
        await mailings.tick()
        ledger = await db.fetch("SELECT id FROM outbox WHERE mailing IS NOT NULL AND status = 'queued' ORDER BY id")
        await outbox.mark_failed(ledger[-1]["id"], "451 try later")
        if door == "api":
            later = [
                client.post(f"/api/v1/issues/{issue_id}/retry-failed", headers=auth),
                client.post(f"/api/v1/issues/{issue_id}/pause", headers=auth),
                client.post(f"/api/v1/issues/{issue_id}/resume", headers=auth),
            ]
        else:
            later = [
                client.post(f"/staff/issues/{issue_id}/{action}", data={"csrf_token": csrf})
                for action in ("retry", "pause", "resume")
            ]
        for call in later:
            assert (await call).status_code in (200, 303)
        done[door] = (await entries())[before:]
        assert {r["subject_id"] for r in done[door]} == {issue_id}
        assert {r["staff"] for r in done[door]} == {api_staff if door == "api" else lead}
        # Leave nothing queued for the next door's counts.
        await db.fetch("UPDATE outbox SET status = 'sent' WHERE status = 'queued'")
    assert _same(done["api"]) == _same(done["page"]) == [
        ("issue.create", "issue", "Same issue"),
        ("issue.update", "issue", "Renamed: title"),
        ("issue.test", "issue", "test to editor@example.org"),
        ("issue.release", "issue", "now, to about 2 subscribers"),
        ("issue.retry_failed", "issue", "1 queued again"),
        ("issue.pause", "issue", "2 queued messages held back"),
        ("issue.resume", "issue", "2 queued messages due now"),
    ]


async def test_a_change_whose_entry_cannot_be_written_is_not_made(client, csrf, auth, monkeypatch):
    """The entry is written in the change's transaction: when it fails, the change is undone."""
    issue_id = await page_issue(client, csrf)

    async def broken(*args, **kwargs):
        raise RuntimeError("the audit log is unavailable")

    monkeypatch.setattr(audit, "record", broken)
    for call in (
        lambda: client.post(f"/api/v1/issues/{issue_id}/release", headers=auth),
        lambda: client.post(f"/staff/issues/{issue_id}/release", data={"csrf_token": csrf, "when": "now"}),
    ):
        assert (await call()).status_code == 500
        assert (await issues.get(issue_id))["status"] == "draft"
        assert await db.fetch("SELECT id FROM mailing") == []
    with pytest.raises(RuntimeError):
        await staff.create("new@example.org", "a long enough password")
    assert await db.fetch("SELECT id FROM staff_user WHERE email = 'new@example.org'") == []


async def test_a_refused_change_leaves_no_entry(client, csrf, auth):
    issue_id = await page_issue(client, csrf)
    assert (await client.post(f"/api/v1/issues/{issue_id}/release", headers=auth)).status_code == 202
    again = await client.post(f"/staff/issues/{issue_id}/release", data={"csrf_token": csrf, "when": "now"})
    assert again.status_code == 409
    assert (await client.post(f"/api/v1/issues/{issue_id}/release", headers=auth)).status_code == 409
    assert len(await entries("issue.release")) == 1
    # Nothing changed, nothing recorded: a save without a new value, a repeated revoke.
    assert (await client.post(f"/staff/issues/{issue_id}", data={"csrf_token": csrf, "title": "Same issue"})).status_code == 303
    assert await entries("issue.update") == []
    lead = await staff.get_by_email("lead@example.org")
    await staff.create_token(lead["id"], "spare")
    token_id = (await db.fetch("SELECT id FROM api_token WHERE label = 'spare'"))[0]["id"]
    for _ in range(2):
        await client.post(f"/staff/account/tokens/{token_id}/revoke", data={"csrf_token": csrf})
    assert len(await entries("token.revoke")) == 1
    event = await published_event()
    draft = await published_event(status="draft")
    with pytest.raises(Conflict):
        await mailings.announce(draft["id"], actor=None)
    answer = await client.post(f"/api/v1/events/{event['id']}/announce", headers=auth)
    assert answer.status_code == 202
    assert _same(await entries("event.announce")) == [("event.announce", "event", "to about 0 subscribers")]


async def test_the_command_line_and_the_workspace_write_the_same_entries(client, csrf, tmp_path):
    """The CLI's doors (staff create, subscribers import) are the same domain functions with no
    actor: the system's entry has the workspace's wording."""
    from events_app.domain import importer

    body = "email,name\nnew@example.org,New Person\nnot-an-address,Bad\n"
    answer = await client.post("/staff/subscribers/import", data={"csrf_token": csrf, "topics": ["bulletin"]},
                               files={"file": ("list.csv", body.encode(), "text/csv")})
    assert answer.status_code == 200
    (tmp_path / "list.csv").write_text(body)
    await importer.import_csv(tmp_path / "list.csv", ["bulletin"])  # what `events-app subscribers import` runs
    page, cli = await entries("subscribers.import")
    assert page["summary"].startswith("list.csv: imported 1, updated 0, unchanged 0, skipped 1")
    assert cli["summary"] == page["summary"].replace("imported 1, updated 0, unchanged 0", "imported 0, updated 0, unchanged 1")
    assert (page["staff"] is not None, cli["staff"]) == (True, None)
    added = await client.post("/staff/account/members", data={
        "csrf_token": csrf, "email": "Colleague@Example.org", "password": "a long enough password", "name": "C"})
    assert added.status_code == 201
    await staff.create("other@example.org", "a long enough password")  # what `events-app staff create` runs
    assert _same((await entries("staff.create"))[-2:]) == [
        ("staff.create", "staff", "account colleague@example.org"),
        ("staff.create", "staff", "account other@example.org"),
    ]
