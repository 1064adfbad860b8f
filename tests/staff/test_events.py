"""The event editor and registrants pages, through the HTTP app: every page and every action,
with the count of people a change emails shown (and nothing saved) before confirming."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from events_app import db, timefmt
from events_app.domain import events, registrations
from factories import published_event

from .conftest import assert_pages_need_a_session, assert_refused, audit_actions

ZONE = ZoneInfo("America/Toronto")


def form_for(start: datetime, **overrides) -> dict:
    data = {
        "title": "Implementation careers Q&A", "slug": "", "summary": "Ask practitioners anything.",
        "description": "Bring **questions**.\r\nAll welcome.", "audience": "Graduate students", "tags": "career, webinar",
        "timezone": "America/Toronto", "starts_at": start.strftime("%Y-%m-%dT%H:%M"),
        "ends_at": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"), "registration_closes_at": "",
        "capacity": "2", "join_url": "https://meet.example.org/qa", "recording_url": "", "doors_open_minutes": "15",
        "follow_up_minutes": "120", "reminders": ["1440", "60"], "reminder_other": "30",
        "question_count": "1", "q-0-label": "Where are you in your career?", "q-0-type": "single",
        "q-0-options": "Student\r\nGraduate\r\n", "q-0-required": "yes",
    }
    data.update(overrides)
    return data


def next_week_noon() -> datetime:
    return (datetime.now(ZONE) + timedelta(days=7)).replace(hour=12, minute=0, second=0, microsecond=0)


async def outbox_kinds() -> list[str]:
    return [r["kind"] for r in await db.fetch("SELECT kind FROM outbox ORDER BY id")]


async def test_create_an_event_with_a_question_as_a_draft_then_publish(client, csrf):
    new = await client.get("/staff/events/new")
    assert new.status_code == 200 and "America/Toronto" in new.text and 'name="q-0-label"' in new.text
    assert "Europe/Helsinki" in new.text  # every IANA zone is offered
    start = next_week_noon()
    answer = await client.post("/staff/events", data={**form_for(start), "csrf_token": csrf})
    assert answer.status_code == 303
    event_id = int(re.search(r"/staff/events/(\d+)", answer.headers["location"]).group(1))
    event = await events.get(event_id)
    assert event["status"] == "draft" and event["slug"] == "implementation-careers-q-a"
    assert event["starts_at"] == start  # read in the event's zone
    assert event["questions"] == [{"key": "where_are_you_in_your_career", "label": "Where are you in your career?",
                                   "type": "single", "required": True, "options": ["Student", "Graduate"]}]
    assert event["reminders"] == [1440, 60, 30] and event["tags"] == ["career", "webinar"]
    assert event["description"] == "Bring **questions**.\nAll welcome." and event["capacity"] == 2
    page = await client.get(answer.headers["location"])
    assert "Event created" in page.text and "Publish" in page.text
    assert (await client.get(f"/events/{event['slug']}")).status_code == 404  # a draft is not public
    preview = await client.get(f"/staff/events/{event_id}/preview")
    assert preview.status_code == 200 and "Preview" in preview.text and "Where are you in your career?" in preview.text
    published = await client.post(f"/staff/events/{event_id}/publish", data={"csrf_token": csrf})
    assert published.status_code == 303 and (await events.get(event_id))["status"] == "published"
    assert (await client.get(f"/events/{event['slug']}")).status_code == 200
    assert [a for a in await audit_actions() if a.startswith("event.")] == ["event.create", "event.publish"]


async def test_a_bad_form_shows_every_error_and_keeps_what_was_typed(client, csrf):
    start = next_week_noon()
    answer = await client.post("/staff/events", data={
        **form_for(start, title="", ends_at=start.strftime("%Y-%m-%dT%H:%M")), "csrf_token": csrf})
    assert answer.status_code == 400
    assert "title" in answer.text and 'aria-invalid="true"' in answer.text
    assert "Ask practitioners anything." in answer.text
    assert await db.fetch("SELECT id FROM event") == []


async def test_question_builder_adds_and_removes_rows_without_javascript(client, csrf):
    start = next_week_noon()
    more = await client.post("/staff/events", data={**form_for(start), "add_question": "yes", "csrf_token": csrf})
    assert more.status_code == 200 and 'name="q-1-label"' in more.text and await db.fetch("SELECT id FROM event") == []
    answer = await client.post("/staff/events", data={
        **form_for(start), "question_count": "3", "q-1-label": "Dietary needs?", "q-1-type": "yesno",
        "q-2-label": "", "csrf_token": csrf})
    event_id = int(answer.headers["location"].split("/")[3].split("?")[0])
    assert [q["type"] for q in (await events.get(event_id))["questions"]] == ["single", "yesno"]
    edit = await client.get(f"/staff/events/{event_id}")
    removed = await client.post(f"/staff/events/{event_id}", data={
        **form_for(start), "question_count": "2", "q-0-key": "where_are_you_in_your_career",
        "q-1-label": "Dietary needs?", "q-1-type": "yesno", "q-1-remove": "yes", "csrf_token": csrf})
    assert edit.status_code == 200 and removed.status_code == 303
    assert [q["label"] for q in (await events.get(event_id))["questions"]] == ["Where are you in your career?"]


async def test_saving_a_time_change_says_how_many_will_be_emailed_first(client, csrf):
    event = await published_event(capacity=5)
    for n in range(3):
        await registrations.register(event, {"name": f"Person {n}", "email": f"p{n}@example.org"})
    edit = await client.get(f"/staff/events/{event['id']}")
    form = dict(re.findall(r'<input type="(?:text|datetime-local|number|url|hidden)" id="[^"]*" name="([^"]+)"[^>]*value="([^"]*)"', edit.text))
    assert form["starts_at"]
    current = await events.get(event["id"])
    base = form_for(current["starts_at"].astimezone(ZONE), title=current["title"], capacity="5", reminders=["1440", "60"],
                    reminder_other="", question_count="0", join_url=current["join_url"],
                    description=current["description"], audience=current["audience"], summary="", tags="")
    base["ends_at"] = current["ends_at"].astimezone(ZONE).strftime("%Y-%m-%dT%H:%M")
    # A change nobody is emailed about saves at once.
    quiet = await client.post(f"/staff/events/{event['id']}", data={**base, "summary": "New summary", "csrf_token": csrf})
    assert quiet.status_code == 303 and "notified=0" in quiet.headers["location"]
    assert (await events.get(event["id"]))["summary"] == "New summary"
    kinds_before = await outbox_kinds()
    later = current["starts_at"].astimezone(ZONE) + timedelta(hours=2)
    moved = {**base, "summary": "New summary", "starts_at": later.strftime("%Y-%m-%dT%H:%M"),
             "ends_at": (later + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")}
    ask = await client.post(f"/staff/events/{event['id']}", data={**moved, "csrf_token": csrf})
    assert ask.status_code == 200 and 'data-would-email="3"' in ask.text and "emails 3 people" in ask.text
    assert (await events.get(event["id"]))["starts_at"] == current["starts_at"]  # nothing saved yet
    assert await outbox_kinds() == kinds_before
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', ask.text))
    assert hidden["confirmed"] == "yes" and hidden["starts_at"] == moved["starts_at"]
    done = await client.post(f"/staff/events/{event['id']}", data=hidden)
    assert done.status_code == 303 and "notified=3" in done.headers["location"]
    assert (await events.get(event["id"]))["starts_at"] == later
    assert (await outbox_kinds()).count("event_changed") == 3
    assert "3 people were emailed" in (await client.get(done.headers["location"])).text
    assert (await audit_actions()).count("event.update") == 2


async def test_cancelling_says_how_many_are_told_then_tells_them(client, csrf):
    event = await published_event(capacity=1)
    await registrations.register(event, {"name": "Ada", "email": "ada@example.org"})
    await registrations.register(event, {"name": "Grace", "email": "grace@example.org"})
    ask = await client.get(f"/staff/events/{event['id']}/cancel")
    assert 'data-would-email="2"' in ask.text and "1 registered" in ask.text and "1 waitlisted" in ask.text
    assert (await events.get(event["id"]))["status"] == "published"
    done = await client.post(f"/staff/events/{event['id']}/cancel", data={"csrf_token": csrf})
    assert done.status_code == 303 and (await events.get(event["id"]))["status"] == "cancelled"
    assert (await outbox_kinds()).count("event_cancelled") == 2
    assert "event.cancel" in await audit_actions()


async def test_events_list_shows_numbers(client, csrf):
    event = await published_event(capacity=1, title="Full event")
    await registrations.register(event, {"name": "Ada", "email": "ada@example.org"})
    await registrations.register(event, {"name": "Grace", "email": "grace@example.org"})
    page = await client.get("/staff/events")
    row = page.text.split("Full event")[1].split("</tr>")[0]
    assert re.findall(r'<td class="num">([^<]+)</td>', row) == ["1", "1", "1"]


@pytest.fixture
async def crowd():
    event = await published_event(capacity=1, questions=[
        {"key": "stage", "label": "Stage", "type": "single", "options": ["Student", "Graduate"], "required": True}])
    ada = await registrations.register(event, {"name": "Ada Lovelace", "email": "ada@example.org", "answers": {"stage": "Student"}})
    grace = await registrations.register(event, {"name": "Grace Hopper", "email": "grace@example.org", "answers": {"stage": "Graduate"}})
    alan = await registrations.register(event, {"name": "Alan Turing", "email": "alan@example.org", "answers": {"stage": "Graduate"}})
    return event, ada, grace, alan


async def test_registrants_search_status_answers_and_csv(client, csrf, crowd):
    event, ada, grace, alan = crowd
    await db.fetch("UPDATE registration SET attended_at = created_at WHERE id = {}", ada["id"])
    page = await client.get(f"/staff/events/{event['id']}/registrants")
    assert page.status_code == 200
    assert "1 registered of 1 seats · 2 waitlisted · 0 cancelled · 1 attended" in page.text
    # Times in the event's own zone (America/Toronto), with its abbreviation.
    from zoneinfo import ZoneInfo

    (made,) = await db.fetch("SELECT created_at FROM registration WHERE id = {}", ada["id"])
    assert timefmt.short_time(made["created_at"], ZoneInfo("America/Toronto")) in page.text
    assert all(name in page.text for name in ("Ada Lovelace", "Grace Hopper", "Alan Turing"))
    assert "Waitlisted #2" in page.text
    found = await client.get(f"/staff/events/{event['id']}/registrants", params={"q": "GRACE"})
    assert "Grace Hopper" in found.text and "Ada Lovelace" not in found.text
    by_answer = await client.get(f"/staff/events/{event['id']}/registrants", params={"q": "graduate"})
    assert "Grace Hopper" in by_answer.text and "Alan Turing" in by_answer.text and "Ada Lovelace" not in by_answer.text
    waiting = await client.get(f"/staff/events/{event['id']}/registrants", params={"status": "waitlisted"})
    assert "Ada Lovelace" not in waiting.text and "Alan Turing" in waiting.text
    exported = await client.get(f"/staff/events/{event['id']}/registrants.csv")
    assert exported.headers["content-type"].startswith("text/csv") and "attachment" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["email"], r["status"], r["Stage"]) for r in rows] == [
        ("ada@example.org", "registered", "Student"), ("grace@example.org", "waitlisted", "Graduate"),
        ("alan@example.org", "waitlisted", "Graduate")]
    assert rows[0]["attended_at"] and not rows[1]["attended_at"]


async def test_cancel_promote_and_resend_from_the_list(client, csrf, crowd):
    event, ada, grace, alan = crowd
    base = f"/staff/events/{event['id']}/registrants"
    promoted = await client.post(f"{base}/{alan['id']}/promote", data={"csrf_token": csrf})
    assert promoted.status_code == 303 and "Promoted" in (await client.get(promoted.headers["location"])).text
    assert (await registrations.view(alan["id"]))["status"] == "registered"
    assert (await events.get(event["id"]))["taken"] == 2  # staff may go over the capacity
    again = await client.post(f"{base}/{alan['id']}/promote", data={"csrf_token": csrf})
    assert again.status_code == 409 and "Only a waitlisted person" in again.text
    # Cancelling says what will happen first (a GET that changes nothing), then a POST does it.
    ask = await client.get(f"{base}/{ada['id']}/confirm-cancel")
    assert ask.status_code == 200 and "Cancel the registration of Ada Lovelace?" in ask.text
    assert "calendar cancellation" in ask.text and "Grace Hopper" in ask.text  # the next in line
    assert (await registrations.view(ada["id"]))["status"] == "registered"
    cancelled = await client.post(f"{base}/{ada['id']}/cancel", data={"csrf_token": csrf})
    assert cancelled.status_code == 303 and (await registrations.view(ada["id"]))["status"] == "cancelled"
    assert (await registrations.view(grace["id"]))["status"] == "waitlisted"  # still over capacity: nobody promoted
    resent = await client.post(f"{base}/{grace['id']}/resend", data={"csrf_token": csrf})
    assert resent.status_code == 303
    kinds = await outbox_kinds()
    assert kinds.count("registration_promoted") == 1 and kinds.count("registration_cancelled") == 1
    assert kinds.count("registration_confirmed") == 4  # three at registration, one resent
    assert [a for a in await audit_actions() if a.startswith("registration.")] == [
        "registration.promote", "registration.cancel", "registration.resend"]
    other = await published_event(slug="other")
    wrong_event = await client.post(f"/staff/events/{other['id']}/registrants/{grace['id']}/cancel", data={"csrf_token": csrf})
    assert wrong_event.status_code == 303 and (await registrations.view(grace["id"]))["status"] == "waitlisted"


async def test_every_event_action_needs_a_session_and_a_csrf_token(app, client, csrf, crowd):
    event, ada, grace, alan = crowd
    draft = await events.create({**(await _data()), "status": "draft", "slug": "draft-one"})
    start = next_week_noon()
    later = start + timedelta(days=1)
    actions = {
        "/staff/events": form_for(start),
        f"/staff/events/{event['id']}": form_for(later, confirmed="yes"),
        f"/staff/events/{draft['id']}/publish": {},
        f"/staff/events/{event['id']}/cancel": {},
        f"/staff/events/{event['id']}/registrants/{grace['id']}/promote": {},
        f"/staff/events/{event['id']}/registrants/{ada['id']}/cancel": {},
        f"/staff/events/{event['id']}/registrants/{ada['id']}/resend": {},
    }
    before = await _snapshot()
    await assert_refused(app, client, csrf, actions)
    assert await _snapshot() == before
    await assert_pages_need_a_session(app, client, ("/staff/events", "/staff/events/new", f"/staff/events/{event['id']}",
                 f"/staff/events/{event['id']}/cancel", f"/staff/events/{event['id']}/preview",
                 f"/staff/events/{event['id']}/registrants", f"/staff/events/{event['id']}/registrants.csv"))


async def _data() -> dict:
    from factories import event_data

    return event_data()


async def _snapshot() -> tuple:
    return (
        await db.fetch("SELECT id, title, status, version, starts_at, taken FROM event ORDER BY id"),
        await db.fetch("SELECT id, status, sequence, confirmation_sent_at FROM registration ORDER BY id"),
        await db.fetch("SELECT COUNT(*) AS n FROM outbox"),
        await db.fetch("SELECT COUNT(*) AS n FROM audit_entry"),
    )


async def _audit_since(first_id: int) -> list[tuple]:
    rows = await db.fetch(
        "SELECT a.action, a.subject_type, a.summary, s.email FROM audit_entry a "
        "LEFT JOIN staff_user s ON s.id = a.staff WHERE a.id > {} AND a.action LIKE 'event.%' ORDER BY a.id",
        first_id,
    )
    return [(r["action"], r["subject_type"], r["summary"], r["email"]) for r in rows]


async def _last_audit_id() -> int:
    return (await db.fetch("SELECT COALESCE(MAX(id), 0) AS n FROM audit_entry"))[0]["n"]


async def test_an_event_action_is_audited_alike_from_the_api_and_the_workspace_and_only_when_done(client, csrf, auth):
    start = next_week_noon()
    # The workspace: create (a draft), rename, publish, cancel.
    mark = await _last_audit_id()
    made = await client.post("/staff/events", data={**form_for(start), "csrf_token": csrf})
    ws_id = int(re.search(r"/staff/events/(\d+)", made.headers["location"]).group(1))
    renamed = form_for(start, title="Careers, renamed", slug=(await events.get(ws_id))["slug"])
    assert (await client.post(f"/staff/events/{ws_id}", data={**renamed, "csrf_token": csrf})).status_code == 303
    await client.post(f"/staff/events/{ws_id}/publish", data={"csrf_token": csrf})
    await client.post(f"/staff/events/{ws_id}/cancel", data={"csrf_token": csrf})
    workspace = await _audit_since(mark)
    # The API: the same actions on an event with the same fields.
    mark = await _last_audit_id()
    body = {**event_form_json(start), "status": "draft"}
    api_id = (await client.post("/api/v1/events", json=body, headers=auth)).json()["id"]
    await client.patch(f"/api/v1/events/{api_id}", json={"title": "Careers, renamed"}, headers=auth)
    await client.post(f"/api/v1/events/{api_id}/publish", headers=auth)
    await client.post(f"/api/v1/events/{api_id}/cancel", headers=auth)
    api = await _audit_since(mark)

    expected = [
        ("event.create", "event", "Implementation careers Q&A (draft)"),
        ("event.update", "event", "Careers, renamed: changed title; emailed 0"),
        ("event.publish", "event", "Careers, renamed"),
        ("event.cancel", "event", "Careers, renamed; told 0"),
    ]
    assert [entry[:3] for entry in workspace] == expected == [entry[:3] for entry in api]
    assert {entry[3] for entry in workspace} == {"lead@example.org"} and {entry[3] for entry in api} == {"staff@example.org"}

    # A refused change leaves no entry, from either door.
    mark = await _last_audit_id()
    bad = await client.post("/staff/events", data={**form_for(start, title=""), "csrf_token": csrf})
    assert bad.status_code == 400
    assert (await client.post("/api/v1/events", json={**body, "ends_at": body["starts_at"]}, headers=auth)).status_code == 400
    assert (await client.patch(f"/api/v1/events/{api_id}", json={"title": "Again"}, headers=auth)).status_code == 409
    await client.post(f"/api/v1/events/{api_id}/cancel", headers=auth)  # already cancelled: nothing to record
    assert await _audit_since(mark) == []
    # Without a staff member (the command line, the system) the entry names nobody.
    await events.create(event_form_json(start))
    assert [entry[3] for entry in await _audit_since(mark)] == [None]


def event_form_json(start: datetime) -> dict:
    """The JSON body for the event form_for(start) describes."""
    return {
        "title": "Implementation careers Q&A", "summary": "Ask practitioners anything.",
        "description": "Bring **questions**.\nAll welcome.", "audience": "Graduate students", "tags": ["career", "webinar"],
        "timezone": "America/Toronto", "starts_at": start.strftime("%Y-%m-%dT%H:%M"),
        "ends_at": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"), "capacity": 2,
        "join_url": "https://meet.example.org/qa",
    }
