"""Personal data has a lifetime (domain/retention.py, run by the worker's schedule in
domain/schedule.py): `retention_days` after an event's end (the event's own figure, or
EVENTS_RETENTION_DAYS, default 90), its registrants' names, addresses and answers are gone from
every table, while counts and attendance stay; the event page says how long; staff set the
figure and see when the details were or will be deleted.

Registrations happen through the domain and the HTTP app like real ones, mail goes through a
real worker to the loopback SMTP server; then the clock passes (the event's times are moved into
the past in the database, as time would) and the schedule runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import httpx
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from events_app import db, settings
from events_app.domain import audit, events, registrant_admin, registrations, retention, schedule
from events_app.domain.errors import Conflict
from events_app.tables import ALL_TABLES
from factories import event_data
from mail.sending import drain
from staff.conftest import sign_in

UTC = timezone.utc
TORONTO = ZoneInfo("America/Toronto")
QUESTION = {"key": "access", "label": "Any access needs?", "type": "text"}


def now() -> datetime:
    return datetime.now(UTC)


async def open_event(title: str, capacity: int | None = 2, **extra) -> dict:
    """A published event taking place right now (registration open, join link open)."""
    start = now() - timedelta(minutes=5)
    return await events.create(event_data(
        title=title, starts_at=start.isoformat(), ends_at=(start + timedelta(hours=1)).isoformat(),
        capacity=capacity, questions=[QUESTION], **extra,
    ))


async def ended(event: dict, days_ago: float) -> None:
    """Time passes: the event ended `days_ago` days ago."""
    end = now() - timedelta(days=days_ago)
    await db.fetch("UPDATE event SET starts_at = {}, ends_at = {} WHERE id = {}",
                   end - timedelta(hours=1), end, event["id"])
    events.forget(event["id"])


async def sign_up(event: dict, name: str, email: str, answer: str = "") -> dict:
    data = {"name": name, "email": email, "answers": {"access": answer} if answer else {}}
    return await registrations.register(await events.get(event["id"]), data)


async def row(reg_id: int) -> dict:
    return (await db.fetch("SELECT * FROM registration WHERE id = {}", reg_id))[0]


async def dump() -> dict[str, list[dict]]:
    """Every row of every table, ordered, for searching and for comparing before and after."""
    out = {}
    for table in ALL_TABLES:
        name = table._meta.tablename
        out[name] = await db.fetch(f"SELECT * FROM {name} ORDER BY id")
    return out


def found_in(tables: dict[str, list[dict]], needles: list[str]) -> list[str]:
    """Where any of `needles` still appears, case-insensitively, in any column of any row."""
    hits = []
    for name, rows in tables.items():
        for r in rows:
            for column, value in r.items():
                text = str(value).lower()
                hits += [f"{name}.{column} (id {r['id']}): {n!r}" for n in needles if n.lower() in text]
    return hits


def facts(rows: list[dict]) -> list[tuple]:
    """What must survive the purge: who held which status when, and who attended."""
    return [(r["id"], r["event"], r["status"], r["created_at"], r["cancelled_at"], r["promoted_at"],
             r["attended_at"], r["sequence"]) for r in rows]


async def registration_facts(event_id: int) -> list[tuple]:
    return facts(await db.fetch("SELECT * FROM registration WHERE event = {} ORDER BY id", event_id))


async def test_91_days_after_the_event_no_name_address_or_answer_remains_but_counts_and_attendance_do(
    app, client, worker, smtp_server  # noqa: F811
):
    from events_app.domain import staff

    await staff.create("lead@example.org", "correct horse battery", "Team Lead")
    csrf = await sign_in(client, "lead@example.org", "correct horse battery")
    old = await open_event("Implementation careers, autumn")
    people = [("Ada Lovelace", "ada.lovelace@example.com", "Wheelchair access, step-free route"),
              ("Bob Bounced", "bob.bounced@example.com", "Sign language interpreter"),
              ("Cat Waiting", "cat.waiting@example.com", "Captions on the recording"),
              ("Dot Leaving", "dot.leaving@example.com", "Dietary: coeliac")]
    regs = [await sign_up(old, n, e, a) for n, e, a in people]
    ada, bob, cat, dot = regs
    assert [r["status"] for r in regs] == ["registered", "registered", "waitlisted", "waitlisted"]
    # Ada attends (her join link while the event runs); Bob's server refuses mail for good.
    join = await client.post(f"/j/{registrations.join_token(await row(ada['id']))}")
    assert join.status_code == 303
    smtp_server.reply_to("bob.bounced@example.com", "550 5.1.1 <bob.bounced@example.com>: no such user")
    kept = await open_event("Implementation careers, winter")
    eve = await sign_up(kept, "Eve Recent", "eve.recent@example.com", "Large print")
    await drain(worker)
    await registrations.cancel(registrations.personal_token(await row(dot["id"])))  # queued, not sent
    resend = await client.post(f"/staff/events/{old['id']}/registrants/{cat['id']}/resend", data={"csrf_token": csrf})
    assert resend.status_code == 303  # queued, not sent; the audit entry names Cat

    statuses = {r["status"] for r in await db.fetch("SELECT status FROM outbox")}
    assert {"queued", "sent", "failed"} <= statuses
    secrets = [s for person in people for s in person] + ["ada.lovelace", "Lovelace"]
    assert found_in(await dump(), secrets)  # they are there to begin with (outbox, audit, ...)

    await ended(old, 91)
    await ended(kept, 89)
    before = await registration_facts(old["id"])
    taken = (await events.get(old["id"]))["taken"]
    sent_before = len(smtp_server.received)
    tokens = {r["id"]: (registrations.personal_token(await row(r["id"])),
                        registrations.join_token(await row(r["id"]))) for r in regs}

    await schedule.enqueue_due()

    tables = await dump()
    assert found_in(tables, secrets) == []
    assert await registration_facts(old["id"]) == before  # statuses, times, attendance
    purged = await events.get(old["id"])
    assert purged["taken"] == taken and purged["purged_at"] is not None
    assert [r["attended_at"] is not None for r in await db.fetch(
        "SELECT attended_at FROM registration WHERE event = {} ORDER BY id", old["id"])] == [True, False, False, False]
    for r in regs:
        gone = await row(r["id"])
        assert gone["name"] == "" and gone["answers"] == "{}" and retention.is_purged(gone)
    assert len({(await row(r["id"]))["email"] for r in regs}) == len(regs)  # unique placeholders
    # The event 89 days past is untouched.
    eve_row = await row(eve["id"])
    assert (eve_row["name"], eve_row["email"]) == ("Eve Recent", "eve.recent@example.com")
    assert "Large print" in eve_row["answers"] and (await events.get(kept["id"]))["purged_at"] is None

    # Nothing queued for them goes out, now or later.
    await drain(worker)
    assert len(smtp_server.received) == sent_before
    assert not await db.fetch("SELECT id FROM outbox WHERE status = 'queued'")

    # The pages still render, and say what happened.
    assert (page := await client.get(f"/events/{old['slug']}")).status_code == 200 and old["title"] in page.text
    staff_page = await client.get(f"/staff/events/{old['id']}/registrants")
    assert staff_page.status_code == 200
    assert "were deleted on" in staff_page.text and "2 registered" in staff_page.text and "1 attended" in staff_page.text
    assert "Resend confirmation" not in staff_page.text  # nobody left to write to
    assert (await client.get(f"/staff/events/{old['id']}")).status_code == 200
    assert (await client.get(f"/staff/events/{old['id']}/registrants.csv")).status_code == 200
    for personal, join_token in tokens.values():
        for path in (f"/r/{personal}", f"/j/{join_token}", f"/r/{personal}.ics"):
            answer = await client.get(path)
            assert answer.status_code < 500, path
            assert "details were deleted after the event" in answer.text, path
        cancelled = await client.post(f"/r/{personal}/cancel")
        assert cancelled.status_code < 500
    assert await registration_facts(old["id"]) == before  # a POST to the old link changed nothing

    # A second run changes nothing more.
    settled = await dump()
    await schedule.enqueue_due()
    assert await dump() == settled


async def test_an_event_ended_89_days_ago_is_untouched_and_a_per_event_figure_of_7_days_purges_after_7():
    default_89 = await open_event("Default, 89 days")
    week_8 = await open_event("Seven days, 8 days ago")
    week_6 = await open_event("Seven days, 6 days ago")
    await db.fetch("UPDATE event SET retention_days = 7 WHERE id IN ({}, {})", week_8["id"], week_6["id"])
    a = await sign_up(default_89, "Ann Default", "ann@example.com", "Needs a quiet room")
    b = await sign_up(week_8, "Ben Weekly", "ben@example.com", "Hearing loop")
    c = await sign_up(week_6, "Col Weekly", "col@example.com", "Braille handout")
    await ended(default_89, 89)
    await ended(week_8, 8)
    await ended(week_6, 6)

    assert await retention.purge_due() == 1
    assert not retention.is_purged(await row(a["id"])) and (await row(a["id"]))["name"] == "Ann Default"
    assert retention.is_purged(await row(b["id"])) and (await row(b["id"]))["name"] == ""
    assert (await row(c["id"]))["email"] == "col@example.com"
    assert (await events.get(week_8["id"]))["purged_at"] is not None
    assert (await events.get(week_6["id"]))["purged_at"] is None

    # Half a day on, nothing more is due; a day on, the other 7-day event (day 7) and Ann's (day 90).
    assert await retention.purge_due(now() + timedelta(hours=12)) == 0
    assert await retention.purge_due(now() + timedelta(days=1, minutes=1)) == 2
    assert retention.is_purged(await row(a["id"])) and retention.is_purged(await row(c["id"]))


async def test_the_installation_figure_comes_from_events_retention_days(monkeypatch):
    monkeypatch.setenv("EVENTS_RETENTION_DAYS", "30")
    settings.reset()
    try:
        assert settings.get().retention_days == 30
        event = await open_event("Thirty days")
        person = await sign_up(event, "Tess Thirty", "tess@example.com")
        await ended(event, 29)
        assert await retention.purge_due() == 0
        await ended(event, 31)
        assert await retention.purge_due() == 1 and retention.is_purged(await row(person["id"]))
    finally:
        monkeypatch.delenv("EVENTS_RETENTION_DAYS")
        settings.reset()


async def test_a_cancelled_event_is_purged_on_the_same_rule(worker, smtp_server):  # noqa: F811
    event = await open_event("Cancelled webinar", capacity=1)
    first = await sign_up(event, "Fay First", "fay@example.com", "Childcare")
    second = await sign_up(event, "Gil Second", "gil@example.com")
    await drain(worker)
    await events.cancel(event["id"])
    await drain(worker)  # both told (Fay with the calendar CANCEL)
    assert len(smtp_server.received) == 4
    await ended(event, 90.5)
    before = await registration_facts(event["id"])

    await schedule.enqueue_due()

    assert found_in(await dump(), ["Fay First", "fay@example.com", "Childcare", "Gil Second", "gil@example.com"]) == []
    assert await registration_facts(event["id"]) == before
    assert [retention.is_purged(await row(r["id"])) for r in (first, second)] == [True, True]


async def test_work_is_bounded_per_tick_and_the_event_is_marked_only_when_everyone_is_done():
    event = await open_event("Busy", capacity=None)
    people = [await sign_up(event, f"Person {i}", f"person{i}@example.com") for i in range(7)]
    small = await open_event("Small", capacity=None)
    last = await sign_up(small, "Last One", "last@example.com")
    await ended(event, 400)
    await ended(small, 300)

    assert await retention.purge_due(budget=3) == 3
    assert (await events.get(event["id"]))["purged_at"] is None
    assert [retention.is_purged(await row(p["id"])) for p in people] == [True] * 3 + [False] * 4
    assert await retention.purge_due(budget=3) == 3
    assert await retention.purge_due(budget=3) == 2  # the oldest event's last one, then the next event
    assert (await events.get(event["id"]))["purged_at"] is not None
    assert (await events.get(small["id"]))["purged_at"] is not None
    assert retention.is_purged(await row(last["id"]))
    assert await retention.purge_due(budget=3) == 0


async def test_two_purges_at_once_do_not_fail_and_purge_each_person_once():
    batch = []
    for n in range(3):
        event = await open_event(f"Parallel {n}", capacity=None)
        batch += [await sign_up(event, f"Par {n}-{i}", f"par{n}x{i}@example.com", f"answer {n}-{i}") for i in range(4)]
        await ended(event, 120 + n)
    await audit.record(None, "registration.cancel", "registration", batch[0]["id"], "Par 0-0 <par0x0@example.com>")

    results = await asyncio.gather(retention.purge_due(), retention.purge_due(), schedule.enqueue_due(),
                                   return_exceptions=True)
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert results[0] + results[1] == len(batch)
    assert found_in(await dump(), ["Par ", "@example.com", "answer "]) == []
    assert len(await db.fetch("SELECT id FROM event WHERE purged_at IS NOT NULL")) == 3


async def test_a_purged_registration_is_never_mailed_again(worker, smtp_server):  # noqa: F811
    event = await open_event("Recorded talk", capacity=None, recording_url="https://videos.example.org/talk")
    person = await sign_up(event, "Hal Heard", "hal@example.com")
    await drain(worker)
    await db.fetch("UPDATE event SET retention_days = 1 WHERE id = {}", event["id"])
    await ended(event, 1.5)  # within the follow-up window, past a one-day retention
    await schedule.enqueue_due()
    assert retention.is_purged(await row(person["id"]))
    received = len(smtp_server.received)

    # A staff slip after the purge is refused by the domain; a row queued by any other path is
    # still dropped by the message builder.
    try:
        await registrant_admin.resend_confirmation(person["id"])
    except Conflict:
        pass
    else:
        raise AssertionError("a purged registration's confirmation was re-sent")
    from events_app.domain import outbox

    await outbox.enqueue("registration_confirmed", "deleted-x", {"registration_id": person["id"]})
    await schedule.enqueue_due()  # no follow-up for a purged event
    await drain(worker)

    assert len(smtp_server.received) == received
    assert not await db.fetch("SELECT id FROM outbox WHERE kind LIKE 'follow_up%'")
    late = await db.fetch("SELECT status, recipient, last_error FROM outbox ORDER BY id DESC LIMIT 1")
    assert late[0]["status"] != "sent" and "deleted after the event" in late[0]["last_error"]
    assert "@" not in late[0]["recipient"]


async def test_the_event_page_says_how_long_details_are_kept(client):
    event = await events.publish((await events.create(event_data(title="Privacy note")))["id"])
    page = await client.get(f"/events/{event['slug']}")
    assert "We keep your name, email address and answers until 90 days after the event, then delete them." in page.text
    await db.fetch("UPDATE event SET retention_days = 7, version = version + 1 WHERE id = {}", event["id"])
    events.forget(event["id"])
    page = await client.get(f"/events/{event['slug']}")
    assert "until 7 days after the event" in page.text and "90 days" not in page.text


async def test_the_event_page_uses_the_installation_figure(monkeypatch):
    from events_app.app import create_app

    monkeypatch.setattr(settings, "_current", dataclasses.replace(settings.get(), retention_days=30))
    event = await events.publish((await events.create(event_data(title="Thirty-day note")))["id"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(run_worker=False)),
                                 base_url="http://testserver") as http:
        page = await http.get(f"/events/{event['slug']}")
    assert "until 30 days after the event, then delete them." in page.text


def form_for(start: datetime, **overrides) -> dict:
    """The staff event form as a browser posts it."""
    data = {
        "title": "Implementation careers Q&A", "slug": "", "summary": "", "description": "", "audience": "",
        "tags": "", "timezone": "America/Toronto", "starts_at": start.strftime("%Y-%m-%dT%H:%M"),
        "ends_at": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"), "registration_closes_at": "",
        "capacity": "", "join_url": "", "recording_url": "", "doors_open_minutes": "15",
        "follow_up_minutes": "120", "reminders": ["1440", "60"], "reminder_other": "", "question_count": "0",
    }
    data.update(overrides)
    return data


async def test_staff_set_the_figure_and_see_when_details_go(client):
    from events_app.domain import staff

    await staff.create("lead@example.org", "correct horse battery", "Team Lead")
    csrf = await sign_in(client, "lead@example.org", "correct horse battery")
    new = await client.get("/staff/events/new")
    assert 'name="retention_days"' in new.text and "90" in new.text
    start = (datetime.now(TORONTO) + timedelta(days=7)).replace(hour=12, minute=0, second=0, microsecond=0)
    created = await client.post("/staff/events", data={**form_for(start), "retention_days": "7", "csrf_token": csrf})
    assert created.status_code == 303, created.text
    event_id = int(re.search(r"/staff/events/(\d+)", created.headers["location"]).group(1))
    assert (await events.get(event_id))["retention_days"] == 7
    edit = await client.get(f"/staff/events/{event_id}")
    assert 'name="retention_days"' in edit.text and 'value="7"' in edit.text
    registrants = await client.get(f"/staff/events/{event_id}/registrants")
    due = (start + timedelta(hours=1, days=7)).strftime("%-d %B %Y")
    assert "will be deleted on" in registrants.text and due in registrants.text

    # Empty: back to the installation's figure.
    saved = await client.post(f"/staff/events/{event_id}", data={**form_for(start), "retention_days": "", "csrf_token": csrf})
    assert saved.status_code == 303, saved.text
    assert (await events.get(event_id))["retention_days"] is None
    bad = await client.post(f"/staff/events/{event_id}", data={**form_for(start), "retention_days": "0", "csrf_token": csrf})
    assert bad.status_code == 400 and "retention_days" in bad.text
    assert (await events.get(event_id))["retention_days"] is None


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(days=st.one_of(st.none(), st.integers(1, 3650)), offset_minutes=st.integers(-3 * 1440, 3 * 1440))
async def test_details_go_exactly_when_the_retention_runs_out(days, offset_minutes):
    """Around the moment (end + retention), whatever the figure: before it nothing, after it all."""
    event = await open_event(f"Boundary {days} {offset_minutes}", capacity=None)
    person = await sign_up(event, "Ivy Boundary", f"ivy{event['id']}@example.com", "some answer")
    if days is not None:
        await db.fetch("UPDATE event SET retention_days = {} WHERE id = {}", days, event["id"])
    figure = days or settings.get().retention_days
    await ended(event, figure + offset_minutes / 1440)
    await retention.purge_due()
    assert retention.is_purged(await row(person["id"])) == (offset_minutes >= 0)


async def test_staff_can_neither_mail_nor_change_a_purged_registration():
    """Promote and resend on a purged registration are refused by the domain (409), so no
    outbox row and no status change can come from a person who is no longer on record."""
    event = await open_event("Purged then poked", capacity=1)
    await sign_up(event, "Ada Lovelace", "ada@example.org")
    waiting = await sign_up(event, "Grace Hopper", "grace@example.org")
    await ended(event, days_ago=91)
    await retention.purge_due()
    before = await dump()
    for action in (registrant_admin.promote, registrant_admin.resend_confirmation, registrant_admin.cancel_by_staff):
        try:
            await action(waiting["id"])
        except Conflict as exc:
            assert exc.reason == "purged"
        else:
            raise AssertionError(f"{action.__name__} acted on a purged registration")
    assert await dump() == before
