"""A newcomer's journey in a real browser (Debian's Chromium driven by Playwright) against a real
server with its mail worker writing .eml files, at desktop and phone widths: find the event,
register, read the invite, open the personal page and see the answers given, correct the name and
an answer, ask for "email me my registration link" and follow the link from that email, cancel
through the confirmation step, and see the waitlisted person promoted. axe-core checks every page
visited on the way and the links email."""

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
from factories import published_event
from server import running_server

from events_app import db

TITLE = "Non-Academic Careers with Impact: Implementation Positions You Never Knew Existed"
STAGE = "Where are you in your career?"


def _personal_link(text: str) -> str:
    """The personal page's path in an email's text (the page, not the invite file)."""
    links = re.findall(r"https?://[^/\s]+(/r/[\w.-]+)", text)
    return next(link for link in links if not link.endswith(".ics") and link != "/r/link")


@pytest.mark.parametrize("width", WIDTHS)
async def test_register_correct_details_get_my_link_cancel_and_promote(chromium_path, width):
    shutil.rmtree(mail_dir(), ignore_errors=True)
    event = await published_event(
        slug="careers",
        capacity=1,
        title=TITLE,
        questions=[
            {
                "key": "stage",
                "label": STAGE,
                "type": "single",
                "options": ["Graduate student", "Recent graduate"],
                "required": True,
            },
            {"key": "field", "label": "Your field of study", "type": "text"},
        ],
    )
    with running_server(worker=True, env=FAST_WORKER) as base:
        async with browser_page(chromium_path, width) as page:
            await page.goto(f"{base}/events")
            await page.get_by_role("link", name=re.compile("Non-Academic Careers")).first.click()
            await page.get_by_text("1 seat left").first.wait_for()  # after the click's navigation, however slow
            # The visitor's own zone appears through JavaScript.
            assert "your time" in await page.locator("[data-local-range]").first.inner_text()

            # A mistake first: the error shows next to the field and the typed name is kept.
            await page.get_by_label("Your name").fill("Ada Lovelase")
            await page.get_by_label("Email").fill("ada@example")
            await page.get_by_role("button", name="Register").click()
            assert await page.locator("#err-email").is_visible()
            assert await page.get_by_label("Your name").input_value() == "Ada Lovelase"

            await page.get_by_label("Email").fill("ada@example.org")
            await page.get_by_label("Graduate student").check()
            await page.get_by_role("button", name="Register").click()
            await page.get_by_role("heading", name="You're registered").wait_for()

            # Someone else joins the waitlist.
            await page.goto(f"{base}/events/careers")
            await page.get_by_label("Your name").fill("Grace Hopper")
            await page.get_by_label("Email").fill("grace@example.org")
            await page.get_by_label("Recent graduate").check()
            await page.get_by_role("button", name="Join the waitlist").click()
            await page.get_by_role("heading", name="You're on the waitlist").wait_for()

            confirmation = wait_for_mail("ada@example.org", "registered")
            assert any(part.get_content_type() == "text/calendar" for part in confirmation.walk())
            manage = _personal_link(text_part(confirmation))

            # The personal page shows the answers given, with their questions.
            await page.goto(base + manage)
            assert await page.get_by_text("Registered", exact=True).is_visible()
            facts = page.locator("dl.facts")
            assert await facts.locator("dt", has_text=STAGE).is_visible()
            assert await facts.locator("dd", has_text="Graduate student").is_visible()
            await assert_accessible(page)

            # A mistake in the correction first: the error is named next to its field, nothing saved.
            await page.get_by_label("Your name").fill("")
            await page.get_by_role("button", name="Save my details").click()
            await page.locator("#err-name").wait_for()
            assert await page.get_by_label("Your name").get_attribute("aria-invalid") == "true"
            await assert_accessible(page)

            # Then the name and an answer corrected.
            await page.get_by_label("Your name").fill("Ada Lovelace")
            await page.get_by_label("Recent graduate").check()
            await page.get_by_label("Your field of study").fill("History of computing")
            await page.get_by_role("button", name="Save my details").click()
            await page.get_by_text("Your details are saved.").wait_for()
            assert await facts.locator("dd", has_text="Ada Lovelace").is_visible()
            assert await facts.locator("dd", has_text="Recent graduate").is_visible()
            assert await facts.locator("dd", has_text="History of computing").is_visible()
            await assert_accessible(page)

            # "Email me my registration link", from the personal page's own link.
            await page.get_by_role("link", name=re.compile("Email me my registration links")).click()
            await page.get_by_role("heading", name="Email me my registration link").wait_for()
            await assert_accessible(page)
            await page.get_by_label("Email").fill("ada@example.org")
            await page.get_by_role("button", name="Email me my link").click()
            await page.get_by_role("heading", name="Check your inbox").wait_for()
            assert "ada@example.org" in await page.locator("main").inner_text()
            await assert_accessible(page)

            links_mail = wait_for_mail("ada@example.org", "registration link")
            body = text_part(links_mail)
            assert TITLE in body and re.search(r"\b(EST|EDT)\b", body)  # the time with its zone
            assert _personal_link(body) == manage
            await assert_email_accessible(page, links_mail)

            # Following the link from that email; cancelling asks first.
            await page.goto(base + _personal_link(body))
            await page.get_by_role("button", name="Cancel my registration").click()
            await page.get_by_role("heading", name=re.compile("Cancel your registration for")).wait_for()
            await assert_accessible(page)
            assert (await db.fetch("SELECT status FROM registration WHERE email = 'ada@example.org'"))[0][
                "status"
            ] == "registered", "the confirmation page changed nothing"
            await page.get_by_role("button", name="Yes, cancel my registration").click()
            await page.get_by_text("You cancelled this registration").wait_for()
            await assert_accessible(page)

        promoted = wait_for_mail("grace@example.org", "seat")
        assert "text/calendar" in {p.get_content_type() for p in promoted.walk()}
        cancelled = wait_for_mail("ada@example.org", "cancel")
        assert any(p.get_params() and ("method", "CANCEL") in p.get_params() for p in cancelled.walk())
    rows = await db.fetch("SELECT email, name, status FROM registration WHERE event = {} ORDER BY id", event["id"])
    assert [(r["email"], r["name"], r["status"]) for r in rows] == [
        ("ada@example.org", "Ada Lovelace", "cancelled"),
        ("grace@example.org", "Grace Hopper", "registered"),
    ]
