"""The issues API and the public archive: writing, validation, previews, test sends, scheduled
releases, the archive pages and the Atom feed (released issues only), announcements."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

from events_app import db
from events_app.domain import issues, mailings
from events_app.mail.transport import MemoryTransport
from events_app.mail.worker import Worker
from factories import published_event

from .helpers import run_until_settled, subscribers

ISSUE = {"title": "October 2019", "issue_date": "2019-10-15", "summary": "Careers",
         "body": "Hello **readers**.\n\n<script>alert(1)</script>\n\n![chart](https://example.org/c.png)"}


async def test_create_read_change_and_list(client, auth):
    answer = await client.post("/api/v1/issues", json=ISSUE, headers=auth)
    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert (made["slug"], made["topic"], made["status"]) == ("october-2019", "bulletin", "draft")
    answer = await client.patch(f"/api/v1/issues/{made['id']}", json={"summary": "Careers beyond academia"}, headers=auth)
    assert answer.json()["summary"] == "Careers beyond academia" and answer.json()["version"] == 2
    got = (await client.get(f"/api/v1/issues/{made['id']}", headers=auth)).json()
    assert got["delivery"]["total"] == 0 and got["delivery"]["status"] == "draft"
    assert [i["slug"] for i in (await client.get("/api/v1/issues", headers=auth)).json()] == ["october-2019"]


async def test_bad_input_names_the_field_and_staff_only(client, auth):
    for body, field in (({}, "title"), ({"title": "X", "issue_date": "15/10/2019"}, "issue_date"),
                        ({"title": "X", "topic": "nope"}, "topic"), ({"title": "X", "colour": "red"}, "colour"),
                        ({"title": "X", "slug": "Bad Slug"}, "slug"), ([1, 2], "body")):
        answer = await client.post("/api/v1/issues", json=body, headers=auth)
        assert answer.status_code == 400, (body, answer.text)
        assert field in answer.text
    await client.post("/api/v1/issues", json=ISSUE, headers=auth)
    assert (await client.post("/api/v1/issues", json={**ISSUE, "slug": "october-2019"}, headers=auth)).status_code == 400
    assert (await client.post("/api/v1/issues", json=ISSUE)).status_code == 401
    assert (await client.get("/api/v1/issues/1")).status_code == 401
    assert (await client.post("/api/v1/issues/1/release")).status_code == 401
    assert (await client.get("/api/v1/issues/999", headers=auth)).status_code == 404
    # Ids beyond the database's integer columns are "not found", never a 500.
    for path in ("/api/v1/issues/99999999999", "/api/v1/mailings/99999999999"):
        answer = await client.get(path, headers=auth)
        assert answer.status_code == 404 and "No such" in answer.text, path
    answer = await client.post("/api/v1/events/99999999999/announce", headers=auth)
    assert answer.status_code == 404 and "No such event" in answer.text
    answer = await client.post("/api/v1/issues/1/release", json={"release_at": "soon"}, headers=auth)
    assert answer.status_code == 400 and "release_at" in answer.text


async def test_previews_are_sanitised_and_a_test_send_is_marked(client, auth):
    made = (await client.post("/api/v1/issues", json=ISSUE, headers=auth)).json()
    page = await client.get(f"/api/v1/issues/{made['id']}/preview", headers=auth)
    assert page.status_code == 200 and "<strong>readers</strong>" in page.text
    assert "<script>alert" not in page.text and 'src="https://example.org/c.png"' in page.text
    mail = (await client.get(f"/api/v1/issues/{made['id']}/preview-email", headers=auth)).json()
    assert mail["subject"] == "Implementation in Action: October 2019"
    assert "Hello Ada," in mail["text"] and "<strong>readers</strong>" in mail["html"]
    assert "<script>alert" not in mail["html"]
    assert 'style="' in mail["html"]  # CSS inlined for mail clients

    answer = await client.post(f"/api/v1/issues/{made['id']}/test", headers=auth)
    assert answer.status_code == 202 and answer.json()["email"] == "staff@example.org"
    transport = MemoryTransport()
    await Worker(transport=transport).run_once()
    [message] = transport.messages
    assert message["Subject"] == "[Test] Implementation in Action: October 2019"
    assert message["To"].addresses[0].addr_spec == "staff@example.org"
    assert "List-Unsubscribe" not in message  # no one's real link in a test
    # A test send is not a release: the issue is still a draft, not in the archive.
    assert (await issues.get(made["id"]))["status"] == "draft"
    assert (await client.get("/bulletin/october-2019")).status_code == 404


async def test_archive_shows_released_issues_only(tmp_path, client, auth):
    await subscribers(tmp_path, 2)
    draft = (await client.post("/api/v1/issues", json={**ISSUE, "title": "Draft", "slug": "draft"}, headers=auth)).json()
    later = (await client.post("/api/v1/issues", json={**ISSUE, "title": "Later", "slug": "later"}, headers=auth)).json()
    out = (await client.post("/api/v1/issues", json=ISSUE, headers=auth)).json()
    assert (await client.post(f"/api/v1/issues/{out['id']}/release", headers=auth)).status_code == 202
    soon = (datetime.now(timezone.utc) + timedelta(days=2)).isoformat()
    answer = await client.post(f"/api/v1/issues/{later['id']}/release", json={"release_at": soon}, headers=auth)
    assert answer.status_code == 202 and answer.json()["status"] == "scheduled"
    # Released once only.
    again = await client.post(f"/api/v1/issues/{out['id']}/release", headers=auth)
    assert again.status_code == 409 and "already released" in again.text
    assert len(await db.fetch("SELECT id FROM mailing WHERE issue = {}", out["id"])) == 1

    archive = await client.get("/bulletin")
    assert archive.status_code == 200
    assert "October 2019" in archive.text and "Later" not in archive.text and "Draft" not in archive.text
    assert "Subscribe here to receive our next issue" in archive.text
    page = await client.get("/bulletin/october-2019")
    assert page.status_code == 200 and "<strong>readers</strong>" in page.text and "<script>alert" not in page.text
    assert "originally appeared in the October 2019 issue" in page.text
    assert 'href="/bulletin/subscribe"' in page.text
    assert (await client.get("/bulletin/later")).status_code == 404
    assert (await client.get("/bulletin/draft")).status_code == 404
    assert (await client.get("/bulletin/subscribe")).status_code == 200  # the form, not an issue

    feed = await client.get("/bulletin/feed.xml")
    assert feed.headers["content-type"].startswith("application/atom+xml")
    root = ET.fromstring(feed.content)
    ns = {"a": "http://www.w3.org/2005/Atom"}
    entries = root.findall("a:entry", ns)
    assert [e.find("a:title", ns).text for e in entries] == ["October 2019"]
    content = entries[0].find("a:content", ns).text
    assert "<strong>readers</strong>" in content and "Subscribe here to receive our next issue" in content

    # The scheduled issue waits for its time: nobody is mailed, and then it is released.
    await mailings.tick()
    scheduled = await issues.delivery(later["id"])
    assert scheduled["status"] == "scheduled" and scheduled["total"] == 0
    await db.fetch("UPDATE mailing SET release_at = {} WHERE issue = {}", datetime.now(timezone.utc), later["id"])
    await db.fetch("UPDATE issue SET released_at = {} WHERE id = {}", datetime.now(timezone.utc), later["id"])
    transport = MemoryTransport()
    await run_until_settled(Worker(transport=transport))
    assert (await issues.delivery(later["id"]))["sent"] == 2
    assert "Later" in (await client.get("/bulletin")).text
    assert draft["status"] == "draft"


async def test_pause_and_resume_by_api(tmp_path, client, auth):
    await subscribers(tmp_path, 3)
    made = (await client.post("/api/v1/issues", json=ISSUE, headers=auth)).json()
    early = await client.post(f"/api/v1/issues/{made['id']}/pause", headers=auth)
    assert early.status_code == 409 and "has not been released" in early.text
    await client.post(f"/api/v1/issues/{made['id']}/release", headers=auth)
    paused = await client.post(f"/api/v1/issues/{made['id']}/pause", headers=auth)
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    transport = MemoryTransport()
    worker = Worker(transport=transport)
    await mailings.tick()
    assert await worker.run_once() == 0 and not transport.messages
    resumed = await client.post(f"/api/v1/issues/{made['id']}/resume", headers=auth)
    assert resumed.json()["status"] == "sending"
    await run_until_settled(worker)
    assert len(transport.messages) == 3


async def test_announce_an_event_to_events_and_careers(tmp_path, client, auth):
    await subscribers(tmp_path, 2, topic="events")
    await subscribers(tmp_path, 2, topic="careers", start=10)
    await subscribers(tmp_path, 2, topic="bulletin", start=20)
    # In both topics: one email, not two.
    await subscribers(tmp_path, 1, topic="careers", start=0)
    plain = await published_event(title="Methods clinic", tags=["clinic"])
    career = await published_event(title="Career webinar", slug="career-webinar", tags=["career"])

    answer = await client.post(f"/api/v1/events/{plain['id']}/announce", headers=auth)
    assert answer.status_code == 202 and answer.json()["recipients"] == 2
    answer = await client.post(f"/api/v1/events/{career['id']}/announce", headers=auth)
    assert answer.json()["recipients"] == 4
    again = await client.post(f"/api/v1/events/{career['id']}/announce", headers=auth)
    assert again.status_code == 409 and "announced already" in again.text
    transport = MemoryTransport()
    await run_until_settled(Worker(transport=transport))
    got = sorted((m["To"].addresses[0].addr_spec, m["Subject"].split(":")[0]) for m in transport.messages)
    assert got == sorted(
        [(f"reader{n}@example.org", "Methods clinic") for n in (0, 1)]
        + [(f"reader{n}@example.org", "Career webinar") for n in (0, 1, 10, 11)]
    )
    m = transport.messages[-1]
    assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" and "Register here" in m.get_body(("plain",)).get_content()
    assert (await client.post("/api/v1/events/99999/announce", headers=auth)).status_code == 404
    assert (await client.post(f"/api/v1/events/{plain['id']}/announce")).status_code == 401
