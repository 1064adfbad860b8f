"""A subscriber's journey in a real browser against a real server with its mail worker, at desktop
and phone widths: subscribe (the page shows recent issues and how often the bulletin comes),
"check your inbox" repeats the address, confirm from the email, the preference page, unsubscribe,
the preference page says so plainly, "Subscribe again" sends a confirmation (and joins nothing
until it is confirmed), and "Delete me" through its confirmation page. axe-core checks every page
and the emails."""

from __future__ import annotations

import re
import shutil

import pytest
from browserkit import (
    FAST_WORKER,
    WIDTHS,
    assert_accessible,
    assert_email_accessible,
    browser_page,
    mail_dir,
    text_part,
    wait_for_mail,
)
from server import running_server

from events_app import db
from events_app.domain import issues, subscriptions

ADDRESS = "ada@example.org"


def _path(text: str, pattern: str) -> str:
    found = re.search(r"https?://[^/\s]+(" + pattern + r")", text)
    assert found, f"no link like {pattern} in:\n{text}"
    return found.group(1)


async def _status() -> str:
    rows = await db.fetch("SELECT status FROM subscriber WHERE email_hash = {}", subscriptions.email_hash(ADDRESS))
    return rows[0]["status"] if rows else "none"


@pytest.mark.parametrize("width", WIDTHS)
async def test_subscribe_confirm_unsubscribe_subscribe_again_and_delete(chromium_path, width):
    shutil.rmtree(mail_dir(), ignore_errors=True)
    for title, day in [("October 2019", "2019-10-15"), ("December 2019", "2019-12-16")]:
        created = await issues.create({"title": title, "issue_date": day, "body": "News from the centre."})
        await issues.release(created["id"])
    with running_server(worker=True, env=FAST_WORKER) as base:
        async with browser_page(chromium_path, width) as page:
            await page.goto(f"{base}/bulletin/subscribe")
            assert await page.get_by_role("link", name="December 2019").is_visible()
            assert "about every 2 months" in await page.locator("main").inner_text()
            await assert_accessible(page)

            await page.get_by_label("Email").fill(ADDRESS)
            await page.get_by_label("Name (optional)").fill("Ada")
            await page.get_by_role("button", name="Subscribe", exact=True).click()
            await page.get_by_role("heading", name="Check your inbox").wait_for()
            assert ADDRESS in await page.locator("main").inner_text()
            assert await page.get_by_role("button", name="Send the email again").is_visible()
            assert await page.get_by_role("link", name="Correct it").is_visible()
            await assert_accessible(page)

            confirm_mail = wait_for_mail(ADDRESS, "confirm")
            await assert_email_accessible(page, confirm_mail)
            await page.goto(base + _path(text_part(confirm_mail), r"/s/confirm/[\w.-]+"))
            await assert_accessible(page)
            await page.get_by_role("button", name="Yes, subscribe me").click()
            await page.get_by_role("link", name="your preferences").click()
            await page.get_by_role("heading", name="Your preferences").wait_for()
            assert await _status() == "confirmed"
            await assert_accessible(page)

            await page.get_by_role("button", name="Unsubscribe from everything").click()
            await page.get_by_role("heading", name="You are unsubscribed").wait_for()
            await assert_accessible(page)
            assert await _status() == "unsubscribed"

            # The old links are retired: a new one by email.
            await page.get_by_role("link", name="Get a new link to your preferences").click()
            await page.get_by_label("Email").fill(ADDRESS)
            await page.get_by_role("button", name="Email me my link").click()
            link_mail = wait_for_mail(ADDRESS, "preferences")
            await page.goto(base + _path(text_part(link_mail), r"/s/[\w.-]+"))
            await page.get_by_role("heading", name="You are unsubscribed").wait_for()
            assert await page.get_by_role("button", name="Save").count() == 0
            await assert_accessible(page)

            # "Subscribe again" asks by email and joins nothing yet.
            await page.get_by_role("button", name="Subscribe again").click()
            await page.get_by_text("emailed you a link to confirm").first.wait_for()
            await assert_accessible(page)
            assert await _status() == "unsubscribed"
            again = wait_for_mail(ADDRESS, "confirm", after=1)
            await assert_email_accessible(page, again)
            assert "/s/confirm/" in text_part(again)

            # "Delete me" asks first.
            await page.goto(base + _path(text_part(link_mail), r"/s/[\w.-]+"))
            await page.get_by_role("button", name="Delete me").click()
            await page.get_by_role("heading", name="Delete your data?").wait_for()
            await assert_accessible(page)
            assert await _status() == "unsubscribed", "the confirmation page changed nothing"
            await page.get_by_role("button", name="Yes, delete my data").click()
            await page.get_by_role("heading", name="Your data is deleted").wait_for()
            await assert_accessible(page)
            assert await _status() == "erased"
