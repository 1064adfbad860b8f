"""Announcing an event from the workspace (issue 14): the page says how many confirmed
subscribers get it (events, plus careers for an event tagged career: the API's rule), asks to
confirm, the POST does it and shows the delivery; a second announcement needs its own tick."""

from __future__ import annotations

import re

from events_app import db
from events_app.domain import mailings, subscriptions
from factories import published_event

from .conftest import assert_pages_need_a_session, assert_refused, audit_actions
from .test_subscribers_mail_audit import confirmed


async def mailing_rows() -> list[dict]:
    return await db.fetch("SELECT id, kind, event FROM mailing ORDER BY id")


async def test_announce_shows_the_count_then_sends_once(client, csrf):
    await confirmed("events1@example.org", topics=("events",))
    await confirmed("both@example.org", topics=("events", "careers"))
    await confirmed("careers@example.org", topics=("careers",))
    await confirmed("bulletin@example.org", topics=("bulletin",))
    paused = await confirmed("paused@example.org", topics=("events",))
    await subscriptions.pause(subscriptions.manage_token(paused), 4)  # paused: not counted
    career = await published_event(title="Career panel", tags=["Career"])
    plain = await published_event(title="Methods talk", slug="methods")

    ask = await client.get(f"/staff/events/{career['id']}/announce")
    expected = (await mailings.announce_preview(career["id"]))["recipients"]
    assert expected == 3  # events1, both (once), careers; not bulletin-only, not paused
    assert ask.status_code == 200 and f'data-recipients="{expected}"' in ask.text
    assert f"Announce to {expected} subscribers" in ask.text and "Events and Career events" in ask.text
    plain_ask = await client.get(f"/staff/events/{plain['id']}/announce")
    assert f'data-recipients="{expected - 1}"' in plain_ask.text and "Career events" not in plain_ask.text.split('id="recipients"')[1][:400]
    assert await mailing_rows() == []  # looking sends nothing

    done = await client.post(f"/staff/events/{career['id']}/announce", data={"csrf_token": csrf})
    (mailing,) = await mailing_rows()
    assert done.status_code == 303 and done.headers["location"] == f"/staff/mailings/{mailing['id']}?done=announced"
    assert mailing["kind"] == "announcement" and mailing["event"] == career["id"]
    delivery = await client.get(done.headers["location"])
    assert delivery.status_code == 200 and "Announced: the emails are on their way." in delivery.text
    assert 'http-equiv="refresh"' not in delivery.text and f'data-live-url="/staff/mailings/{mailing["id"]}/live"' in delivery.text
    await mailings.tick()
    live = await client.get(f"/staff/mailings/{mailing['id']}/live")
    assert f'data-total="{expected}"' in live.text
    assert "event.announce" in await audit_actions()

    # A second one is refused unless ticked, and the page says it was announced before.
    again_page = await client.get(f"/staff/events/{career['id']}/announce")
    assert "Already announced 1 time" in again_page.text and "Announce again to" in again_page.text
    refused = await client.post(f"/staff/events/{career['id']}/announce", data={"csrf_token": csrf})
    assert refused.status_code == 409 and len(await mailing_rows()) == 1
    assert 'aria-invalid="true"' in refused.text and 'href="#again"' in refused.text
    assert re.search(r'<p class="error" id="err-again">This event was announced already', refused.text)
    twice = await client.post(f"/staff/events/{career['id']}/announce", data={"csrf_token": csrf, "again": "yes"})
    assert twice.status_code == 303 and len(await mailing_rows()) == 2


async def test_only_published_upcoming_events_can_be_announced(client, csrf):
    draft = await published_event(title="Draft one", status="draft")
    page = await client.get(f"/staff/events/{draft['id']}/announce")
    assert "Only a published event can be announced" in page.text and "Announce to" not in page.text
    answer = await client.post(f"/staff/events/{draft['id']}/announce", data={"csrf_token": csrf})
    assert answer.status_code == 409 and await mailing_rows() == []


async def test_announce_needs_a_session_and_a_csrf_token(app, client, csrf):
    event = await published_event()
    await assert_pages_need_a_session(app, client, [f"/staff/events/{event['id']}/announce"])
    await assert_refused(app, client, csrf, {f"/staff/events/{event['id']}/announce": {}})
    assert await mailing_rows() == []


async def test_the_events_list_links_to_announce(client, csrf):
    event = await published_event(title="Linked event")
    listing = await client.get("/staff/events")
    assert f'href="/staff/events/{event["id"]}/announce"' in listing.text
