"""Joining in a real browser (Debian's Chromium driven by Playwright) against a real server: the
personal join link, opened while the doors are open, takes the person into the meeting (on
another site) through the page's own POST, with or without JavaScript, and records attendance
once; the GET alone records nothing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from playwright.async_api import async_playwright

from events_app import db
from events_app.domain import events, registrations
from factories import published_event
from server import running_server

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]


async def _attended(reg_id: int):
    return (await db.fetch("SELECT attended_at FROM registration WHERE id = {}", reg_id))[0]["attended_at"]


async def test_the_join_page_takes_the_person_to_the_meeting_and_records_attendance_once(chromium_path):
    soon = datetime.now(timezone.utc) + timedelta(minutes=10)
    event = await published_event(slug="live", starts_at=soon.isoformat(), ends_at=(soon + timedelta(hours=1)).isoformat())
    people = []
    for email in ("ada@example.org", "bob@example.org"):
        view = await registrations.register(event, {"name": email[:3].title(), "email": email})
        row = (await db.fetch("SELECT * FROM registration WHERE id = {}", view["id"]))[0]
        people.append((view["id"], registrations.join_token(row)))
    with running_server() as base:
        # The meeting is on another origin (localhost, not 127.0.0.1): the page's CSP must let
        # the POST's 303 lead there.
        meeting = base.replace("127.0.0.1", "localhost") + "/bulletin"
        await events.update(event["id"], {"join_url": meeting})
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium_path, args=FLAGS)
            # With JavaScript the page sends itself.
            page = await browser.new_page()
            (ada_id, ada_join), (bob_id, bob_join) = people
            await page.goto(f"{base}/j/{ada_join}")
            await page.wait_for_url(meeting)
            first = await _attended(ada_id)
            assert first is not None
            await page.goto(f"{base}/j/{ada_join}")
            await page.wait_for_url(meeting)
            assert await _attended(ada_id) == first, "attendance is recorded once"
            # Without JavaScript the person presses the button.
            quiet = await browser.new_context(java_script_enabled=False)
            page = await quiet.new_page()
            await page.goto(f"{base}/j/{bob_join}")
            assert await _attended(bob_id) is None, "the GET records nothing"
            await page.get_by_role("button", name="Join the meeting").click()
            await page.wait_for_url(meeting)
            assert await _attended(bob_id) is not None
            await browser.close()
