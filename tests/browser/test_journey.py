"""A newcomer's journey in a real browser (Debian's Chromium driven by Playwright) against a real
server with its mail worker writing .eml files: find the event, register, read the invite,
cancel from the personal link, and see the waitlisted person promoted."""

from __future__ import annotations

import email
import re
import shutil
import time
from email import policy
from pathlib import Path

from playwright.async_api import async_playwright

from events_app import db, settings
from factories import published_event
from server import running_server

FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def _mail_dir() -> Path:
    return settings.get().mail_dir


def _wait_for_mail(to: str, subject_part: str, timeout: float = 20) -> email.message.EmailMessage:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted(_mail_dir().glob("*.eml")):
            msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
            if to in str(msg["To"]) and subject_part.lower() in str(msg["Subject"]).lower():
                return msg
        time.sleep(0.2)
    raise AssertionError(f"no mail to {to} about {subject_part!r} in {_mail_dir()}")


def _text(msg: email.message.EmailMessage) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


async def test_register_read_invite_cancel_and_promote(chromium_path):
    shutil.rmtree(_mail_dir(), ignore_errors=True)
    event = await published_event(
        slug="careers", capacity=1,
        title="Non-Academic Careers with Impact: Implementation Positions You Never Knew Existed",
        questions=[{"key": "stage", "label": "Where are you in your career?", "type": "single",
                    "options": ["Graduate student", "Recent graduate"], "required": True}],
    )
    with running_server(worker=True, env={"EVENTS_WORKER_POLL_SECONDS": "0.1"}) as base:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium_path, args=FLAGS)
            page = await browser.new_page(viewport={"width": 390, "height": 844})  # a phone
            await page.goto(f"{base}/events")
            await page.get_by_role("link", name=re.compile("Non-Academic Careers")).click()
            await page.get_by_text("1 seat left").wait_for()  # after the click's navigation, however slow
            # The visitor's own zone appears through JavaScript.
            assert "your time" in await page.locator("[data-local-range]").first.inner_text()

            # A mistake first: the error shows next to the field and the typed name is kept.
            await page.get_by_label("Your name").fill("Ada Lovelace")
            await page.get_by_label("Email").fill("ada@example")
            await page.get_by_role("button", name="Register").click()
            assert await page.locator("#err-email").is_visible()
            assert await page.get_by_label("Your name").input_value() == "Ada Lovelace"

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

            confirmation = _wait_for_mail("ada@example.org", "")
            assert any(part.get_content_type() == "text/calendar" for part in confirmation.walk())
            links = re.findall(r"http://testserver(/r/[\w.-]+)", _text(confirmation))
            manage = next(link for link in links if not link.endswith(".ics"))  # the page, not the invite file

            await page.goto(base + manage)
            assert await page.get_by_text("Registered", exact=True).is_visible()
            await page.get_by_role("button", name="Cancel my registration").click()
            await page.get_by_text("You cancelled this registration").wait_for()
            await browser.close()

        promoted = _wait_for_mail("grace@example.org", "seat")
        assert "text/calendar" in {p.get_content_type() for p in promoted.walk()}
        cancelled = _wait_for_mail("ada@example.org", "cancel")
        assert any(p.get_params() and ("method", "CANCEL") in p.get_params() for p in cancelled.walk())
    rows = await db.fetch("SELECT email, status FROM registration WHERE event = {} ORDER BY id", event["id"])
    assert [(r["email"], r["status"]) for r in rows] == [
        ("ada@example.org", "cancelled"), ("grace@example.org", "registered"),
    ]
