"""A staff member's journey in a real browser (Debian's Chromium driven by Playwright) against a
real server with its mail worker writing .eml files, at desktop and phone widths: sign in to the
demo, read the dashboard chart, import subscribers from an Excel-style semicolon file, announce an
event after seeing the recipient count, follow its delivery as it updates itself, read the
registrants and download their CSV, meet the issue editor's errors next to their fields, write and
release an issue and watch it deliver; axe-core on every page on the way. Screenshots go to
$STAFF_SHOTS when set (e.g. /tmp/staff-shots)."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import time
from pathlib import Path

import pytest
from browserkit import FAST_WORKER, WIDTHS, assert_accessible, browser_page, wait_for_mail
from playwright.async_api import Page, expect

from events_app import demo, settings
from events_app.domain import mailings, registrations
from factories import published_event
from server import running_server

QUESTION = {"key": "where_are_you_in_your_career", "label": "Where are you in your career?", "type": "single",
            "options": ["Graduate student", "Recent graduate", "Changing careers"], "required": True}
ISO_WITH_OFFSET = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d")


async def wait_done_without_reload(page: Page, timeout: float = 40) -> None:
    """The delivery figures reach "done" by the page's own fetches: the document is never
    reloaded (a marker set on the window survives) and nothing asks for a reload."""
    await page.evaluate("window.__sameDocument = true")
    assert await page.locator("meta[http-equiv='refresh' i]").count() == 0
    deadline = time.monotonic() + timeout
    while await page.locator("#delivery-now").get_attribute("data-status") != "done":
        assert time.monotonic() < deadline, "the delivery did not finish"
        await page.wait_for_timeout(500)
    assert await page.evaluate("window.__sameDocument === true"), "the page reloaded itself"


@pytest.mark.parametrize("width", WIDTHS)
async def test_staff_journey(chromium_path, tmp_path, width):
    shutil.rmtree(settings.get().mail_dir, ignore_errors=True)
    said: list[str] = []
    await demo.load(said.append)
    password = re.search(r"password: (\S+)", " ".join(said)).group(1)
    shots = Path(os.environ["STAFF_SHOTS"]) if os.environ.get("STAFF_SHOTS") else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    event = await published_event(title="Implementation careers Q&A", slug="careers-qa", capacity=1,
                                  tags=["career"], questions=[QUESTION])
    for name, address, stage in (("Ada Lovelace", "ada@example.org", "Graduate student"),
                                 ("Grace Hopper", "grace@example.org", "Changing careers")):
        await registrations.register(event, {"name": name, "email": address,
                                             "answers": {QUESTION["key"]: stage}})

    with running_server(worker=True, env=FAST_WORKER) as base:
        async with browser_page(chromium_path, width) as page:
            nav = page.get_by_role("navigation", name="Staff workspace")

            async def shot(name: str) -> None:
                if shots:
                    await page.screenshot(path=str(shots / f"{width}-{name}.png"), full_page=True)

            # Sign in: the workspace sends a stranger to the form, and back after it.
            await page.goto(f"{base}/staff/events")
            assert "/staff/login" in page.url
            await page.get_by_label("Email").fill("staff@example.org")
            await page.get_by_label("Password").fill("not the password")
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.get_by_text("do not match a staff account")).to_be_visible()
            await assert_accessible(page)
            await page.get_by_label("Password").fill(password)
            await page.get_by_role("button", name="Sign in").click()
            await expect(page).to_have_url(re.compile(r"/staff/events$"))
            await assert_accessible(page)  # the events list
            await shot("01-events")

            # The dashboard: the event's chart with its axes, a description and a table.
            await nav.get_by_role("link", name="Dashboard").click()
            await expect(page.get_by_role("heading", name="Dashboard", exact=True)).to_be_visible()
            event_chart = page.locator(f"svg#reg-chart-{event['id']}")
            await expect(event_chart).to_have_attribute("role", "img")
            counts = [int(c) for c in await event_chart.locator("rect.bar").evaluate_all(
                "els => els.map(e => e.dataset.count)")]
            assert counts[-1] == 2 and sum(counts) == 2
            await expect(event_chart.locator("text.axis-title").first).to_have_text("New registrations")
            await expect(event_chart.locator("text.x-tick").first).to_have_text(re.compile(r"^\d{1,2} \w{3}$"))
            box = await event_chart.bounding_box()
            assert box and box["width"] <= (page.viewport_size or {"width": 0})["width"]  # fits a phone
            await page.locator(f"#reg-chart-{event['id']} ~ details summary").click()
            await expect(page.locator(f"#reg-chart-{event['id']}-table")).to_be_visible()
            await assert_accessible(page)
            await shot("02-dashboard")

            # Subscribers: import an Excel file (semicolons, byte-order mark) into two topics.
            csv_file = tmp_path / "readers.csv"
            csv_file.write_bytes(("\ufeffE-mail;Name\r\n" + "".join(
                f"reader{n}@example.org;Reader {n}\r\n" for n in range(5)) + "bad-row;Bad\r\n").encode())
            await nav.get_by_role("link", name="Subscribers").click()
            await assert_accessible(page)
            await page.get_by_role("button", name="Import").click()  # no file chosen: said at the field
            await expect(page.locator("#err-file")).to_contain_text("CSV file is missing")
            await expect(page.get_by_label("CSV file")).to_have_attribute("aria-invalid", "true")
            await assert_accessible(page)
            await page.get_by_label("CSV file").set_input_files(str(csv_file))
            await page.get_by_role("checkbox", name="Events", exact=True).check()
            await page.get_by_role("button", name="Import").click()
            await expect(page.locator("[data-imported='5']")).to_be_visible()
            await expect(page.locator("[data-invalid='1']")).to_be_visible()

            # Announce the event: the count first, then the confirmation, then the delivery.
            expected = (await mailings.announce_preview(event["id"]))["recipients"]
            assert expected >= 5
            await nav.get_by_role("link", name="Events").click()
            await page.get_by_role("link", name="Announce… Implementation careers Q&A").click()
            await expect(page.locator("#recipients")).to_have_attribute("data-recipients", str(expected))
            await expect(page.locator("#recipients")).to_contain_text("Events and Career events")
            await assert_accessible(page)
            await shot("03-announce")
            await page.get_by_role("button", name=f"Announce to {expected} subscribers").click()
            await expect(page.get_by_role("heading", name=re.compile("Announcement of"))).to_be_visible()
            await expect(page.get_by_role("link", name="Refresh")).to_be_visible()
            await expect(page.locator("#delivery-as-of")).to_contain_text(re.compile(r"Figures as of \d"))
            await wait_done_without_reload(page)
            await expect(page.locator(f"[data-sent='{expected}']")).to_be_visible()
            await expect(page.locator("#delivery-auto")).to_be_hidden()  # polling stopped: done
            await assert_accessible(page)
            await shot("04-announcement-delivery")
            wait_for_mail("reader0@example.org", "Implementation careers Q&A")
            # A second announcement is not one click away.
            await page.goto(f"{base}/staff/events/{event['id']}/announce")
            await expect(page.locator("#announced-before")).to_contain_text("Already announced 1 time")
            await page.get_by_role("button", name=re.compile("Announce again to")).click()
            await expect(page.locator("#err-again")).to_contain_text("announced already")
            await assert_accessible(page)

            # Registrants, their answers, and the CSV a spreadsheet reads.
            await page.goto(f"{base}/staff/events/{event['id']}/registrants")
            await expect(page.get_by_role("cell", name="Ada Lovelace")).to_be_visible()
            await expect(page.get_by_role("cell", name="Changing careers")).to_be_visible()
            await assert_accessible(page)
            await shot("05-registrants")
            async with page.expect_download() as download_info:
                await page.get_by_role("link", name="Download CSV (everyone)").click()
            download = await download_info.value
            rows = list(csv.DictReader(io.StringIO(Path(await download.path()).read_text())))
            assert [(r["name"], r["status"], r[QUESTION["label"]]) for r in rows] == [
                ("Ada Lovelace", "registered", "Graduate student"), ("Grace Hopper", "waitlisted", "Changing careers")]
            assert all(ISO_WITH_OFFSET.fullmatch(r["registered_at"]) for r in rows), rows

            # The issue editor: every error at once, next to its field, in the field's label.
            await nav.get_by_role("link", name="Bulletin").click()
            await page.get_by_role("link", name="New issue").click()
            await page.get_by_label("Address: /bulletin/…").fill("not a valid address!")
            await page.get_by_role("button", name="Create draft").click()
            summary = page.locator("#error-summary")
            await expect(summary).to_be_visible()
            await expect(summary.get_by_role("link", name=re.compile("^Title "))).to_be_visible()
            await expect(summary.get_by_role("link", name=re.compile("^Address "))).to_be_visible()
            await expect(summary).not_to_contain_text("slug")
            await expect(page.locator("#err-title")).to_contain_text("Title ")
            await expect(page.get_by_label("Title")).to_have_attribute("aria-invalid", "true")
            await expect(page.get_by_label("Address: /bulletin/…")).to_have_value("not a valid address!")
            await summary.get_by_role("link", name=re.compile("^Title ")).click()
            await expect(page.get_by_label("Title")).to_be_focused()
            await assert_accessible(page)
            await shot("06-issue-errors")
            await page.get_by_label("Title").fill("November 2026")
            await page.get_by_label("Address: /bulletin/…").fill("")
            await page.get_by_label(re.compile("^Body")).fill("## Careers\n\nImplementation positions **you never knew** existed.")
            await page.get_by_role("button", name="Create draft").click()
            await expect(page.locator("#preview-web strong", has_text="you never knew")).to_be_visible()
            await assert_accessible(page)
            await shot("07-issue-editor")

            # Release after seeing the count; the delivery updates itself.
            await page.get_by_role("link", name="Release or schedule…").click()
            await expect(page.locator("[data-recipients='5']")).to_be_visible()
            await assert_accessible(page)
            await shot("08-release-confirm")
            await page.get_by_role("button", name="Release to 5 subscribers").click()
            await expect(page.get_by_role("heading", name=re.compile("Delivery of"))).to_be_visible()
            await wait_done_without_reload(page)
            await expect(page.locator("[data-sent='5']")).to_be_visible()
            await assert_accessible(page)
            await shot("09-delivery-done")

            # The rest of the workspace, each page checked.
            for name, heading in (("Subscribers", "Subscribers"), ("Account", "Account"), ("Audit log", "Audit log"),
                                  ("Mail", "Mail")):
                await nav.get_by_role("link", name=name).click()
                await expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
                await assert_accessible(page)
            await nav.get_by_role("link", name="Audit log").click()
            for action in ("subscribers.import", "event.announce", "issue.release"):
                mine = page.locator(f"tr[data-action='{action}']", has_text="staff@example.org")
                assert await mine.count() == 1, action
            await expect(page.locator("tr[data-action='issue.release'] time")).to_have_text(
                re.compile(r"^\w{3} \d{1,2} \w{3} \d{4}, \d{1,2}:\d\d [AP]M \w+$"))
            await shot("10-audit")

    issued = wait_for_mail("reader4@example.org", "November 2026")
    assert "[Test]" not in str(issued["Subject"])


async def test_delivery_page_without_javascript(chromium_path):
    """Without JavaScript the delivery page is whole: the figures as of a time and a Refresh link."""
    said: list[str] = []
    await demo.load(said.append)
    password = re.search(r"password: (\S+)", " ".join(said)).group(1)
    event = await published_event(title="Quiet talk", slug="quiet")
    with running_server(worker=False) as base:
        async with browser_page(chromium_path, "phone", javascript=False) as page:
            await page.goto(f"{base}/staff/login")
            await page.get_by_label("Email").fill("staff@example.org")
            await page.get_by_label("Password").fill(password)
            await page.get_by_role("button", name="Sign in").click()
            await page.goto(f"{base}/staff/events/{event['id']}/announce")
            await page.get_by_role("button", name=re.compile("Announce to")).click()
            await expect(page.locator("#delivery-now")).to_have_attribute("data-status", "sending")
            first = await page.locator("#delivery-as-of time").get_attribute("datetime")
            await page.wait_for_timeout(1100)  # the as-of time is to the second
            await page.get_by_role("link", name="Refresh").click()
            assert await page.locator("#delivery-as-of time").get_attribute("datetime") != first
            await expect(page.locator("#delivery-auto")).to_be_hidden()  # no promise of updates
            # (axe-core needs JavaScript: the same page is checked in the journey above.)
