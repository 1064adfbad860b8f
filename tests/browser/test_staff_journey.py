"""A new staff member's journey in a real browser (Debian's Chromium driven by Playwright)
against a real server with its mail worker writing .eml files: sign in to the demo, create an
event with a question, publish it, see two people register from the public page in the list and
the chart, export the CSV, import subscribers, write an issue and release it, watch it deliver.
Screenshots go to $STAFF_SHOTS when set (e.g. /tmp/staff-shots)."""

from __future__ import annotations

import csv
import email
import io
import os
import re
import shutil
import time
from datetime import datetime, timedelta
from email import policy
from pathlib import Path
from zoneinfo import ZoneInfo

from playwright.async_api import async_playwright, expect

from events_app import demo, settings
from server import running_server
from test_journey import FLAGS


def _mails(subject_part: str) -> list[email.message.EmailMessage]:
    found = []
    for path in sorted(settings.get().mail_dir.glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        if subject_part.lower() in str(msg["Subject"]).lower():
            found.append(msg)
    return found


async def test_staff_journey(chromium_path, tmp_path):  # noqa: F811
    shutil.rmtree(settings.get().mail_dir, ignore_errors=True)
    said: list[str] = []
    await demo.load(said.append)
    password = re.search(r"password: (\S+)", " ".join(said)).group(1)
    shots = Path(os.environ["STAFF_SHOTS"]) if os.environ.get("STAFF_SHOTS") else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    start = (datetime.now(ZoneInfo("America/Toronto")) + timedelta(days=10)).replace(hour=12, minute=0)

    with running_server(worker=True, env={"EVENTS_WORKER_POLL_SECONDS": "0.1"}) as base:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium_path, args=FLAGS)
            context = await browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            page = await context.new_page()

            nav = page.get_by_role("navigation", name="Staff workspace")

            async def shot(name: str) -> None:
                if shots:
                    await page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

            # Sign in: the workspace sends a stranger to the form, and back after it.
            await page.goto(f"{base}/staff/events")
            assert "/staff/login" in page.url
            await page.get_by_label("Email").fill("staff@example.org")
            await page.get_by_label("Password").fill("not the password")
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.get_by_text("do not match a staff account")).to_be_visible()
            await page.get_by_label("Password").fill(password)
            await shot("01-login")
            await page.get_by_role("button", name="Sign in").click()
            await expect(page).to_have_url(re.compile(r"/staff/events$"))
            await nav.get_by_role("link", name="Dashboard").click()
            await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
            await shot("02-dashboard-demo")

            # A new event with a question, created as a draft and then published.
            await page.get_by_role("link", name="New event", exact=True).click()
            await page.get_by_label("Title").fill("Implementation careers Q&A")
            await page.get_by_label("Summary (one or two sentences)").fill("Ask practitioners about their jobs.")
            await page.get_by_label("Time zone of the event").select_option("America/Toronto")
            await page.get_by_label("Starts").fill(start.strftime("%Y-%m-%dT%H:%M"))
            await page.get_by_label("Ends").fill((start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
            await page.get_by_label("Seats").fill("1")
            await page.get_by_label("Meeting link").fill("https://meet.example.org/qa")
            await page.locator("#q-0-label").fill("Where are you in your career?")
            await page.locator("#q-0-type").select_option("single")
            await page.locator("#q-0-options").fill("Graduate student\nRecent graduate\nChanging careers")
            await page.locator("input[name='q-0-required']").check()
            await shot("03-event-editor")
            await page.get_by_role("button", name="Create event").click()
            await expect(page.get_by_text("It is a draft")).to_be_visible()
            await page.get_by_role("button", name="Publish").click()
            await expect(page.get_by_text("Published: the event page is public")).to_be_visible()
            await shot("04-event-published")

            # Two people register from the public page (a phone-sized window); one is waitlisted.
            public = await context.new_page()
            await public.set_viewport_size({"width": 390, "height": 844})
            for name, address, stage in (("Ada Lovelace", "ada@example.org", "Graduate student"),
                                         ("Grace Hopper", "grace@example.org", "Changing careers")):
                await public.goto(f"{base}/events/implementation-careers-q-a")
                await public.get_by_label("Your name").fill(name)
                await public.get_by_label("Email").fill(address)
                await public.get_by_label(stage).check()
                await public.get_by_role("button", name=re.compile("Register|Join the waitlist")).click()
                await expect(public.get_by_role("heading", name=re.compile("You're registered|You're on the waitlist"))).to_be_visible()
            await public.close()

            # Staff see them in the list, with their answers, and in the chart.
            await page.get_by_role("link", name="Registrants").first.click()
            await expect(page.get_by_role("cell", name="Ada Lovelace")).to_be_visible()
            await expect(page.get_by_role("cell", name="Grace Hopper")).to_be_visible()
            await expect(page.get_by_text("1 registered of 1 seats · 1 waitlisted")).to_be_visible()
            await expect(page.get_by_role("cell", name="Changing careers")).to_be_visible()
            await shot("05-registrants")
            async with page.expect_download() as download_info:
                await page.get_by_role("link", name="Download CSV (everyone)").click()
            download = await download_info.value
            rows = list(csv.DictReader(io.StringIO(Path(await download.path()).read_text())))
            assert [(r["name"], r["status"], r["where_are_you_in_your_career"]) for r in rows] == [
                ("Ada Lovelace", "registered", "Graduate student"), ("Grace Hopper", "waitlisted", "Changing careers")]
            # Promote Grace over the capacity, from the list.
            await page.get_by_role("button", name="Promote").click()
            await expect(page.get_by_text("Promoted: they have a seat now")).to_be_visible()

            await nav.get_by_role("link", name="Dashboard").click()
            await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
            event_chart = page.locator("svg.chart").filter(has=page.locator("title", has_text="Implementation careers Q&A"))
            counts = [int(c) for c in await event_chart.locator("rect.bar").evaluate_all("els => els.map(e => e.dataset.count)")]
            assert counts[-1] == 2 and sum(counts) == 2
            await shot("06-dashboard-chart")

            # Subscribers: import a consented list through the workspace.
            csv_file = tmp_path / "readers.csv"
            csv_file.write_text("email,name\n" + "".join(f"reader{n}@example.org,Reader {n}\n" for n in range(5)) + "bad-row,Bad\n")
            await nav.get_by_role("link", name="Subscribers").click()
            await page.get_by_label("CSV file").set_input_files(str(csv_file))
            await page.get_by_role("button", name="Import").click()
            await expect(page.locator("[data-imported='5']")).to_be_visible()
            await shot("07-import-report")

            # Write the issue, look at both previews, release it after seeing the count.
            await nav.get_by_role("link", name="Bulletin").click()
            await page.get_by_role("link", name="New issue").click()
            await page.get_by_label("Title").fill("November 2026")
            await page.get_by_label(re.compile("^Body")).fill("## Careers\n\nImplementation positions **you never knew** existed.")
            await page.get_by_role("button", name="Create draft").click()
            await expect(page.locator("#preview-web strong", has_text="you never knew")).to_be_visible()
            await shot("08-issue-editor")
            await page.get_by_role("link", name="Release or schedule…").click()
            await expect(page.locator("[data-recipients='5']")).to_be_visible()
            await shot("09-release-confirm")
            await page.get_by_role("button", name="Release to 5 subscribers").click()
            deadline = time.monotonic() + 30
            while await page.locator("#delivery-state").get_attribute("data-status") != "done":
                assert time.monotonic() < deadline, "the release did not finish"
                await page.wait_for_timeout(1000)  # the page reloads itself (Refresh header)
            await expect(page.locator("[data-sent='5']")).to_be_visible()
            await shot("10-delivery-done")

            await nav.get_by_role("link", name="Audit log").click()
            await expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
            # What this member did, once each (the demo's own events are entries of the system).
            for action in ("event.create", "event.publish", "registration.promote", "subscribers.import", "issue.release"):
                mine = page.locator(f"tr[data-action='{action}']", has_text="staff@example.org")
                assert await mine.count() == 1, action
            assert await page.locator("tr[data-action='event.create']", has_text="system").count() == 2
            await shot("11-audit")
            await nav.get_by_role("link", name="Mail").click()
            await shot("12-mail")
            await browser.close()

    issued = [m for m in _mails("November 2026") if "[Test]" not in str(m["Subject"])]
    assert sorted(m["To"].addresses[0].addr_spec for m in issued) == [f"reader{n}@example.org" for n in range(5)]
