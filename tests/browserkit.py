"""What every browser journey shares (issue 14): Debian's Chromium through Playwright, the two
widths every journey runs at, reading the mail the server's worker wrote, and axe-core.

    @pytest.mark.parametrize("width", WIDTHS)
    async def test_something(chromium_path, width):
        with running_server(worker=True, env=FAST_WORKER) as base:
            async with browser_page(chromium_path, width) as page:
                await page.goto(base + "/events")
                await assert_accessible(page)

`assert_accessible` runs axe-core (bundled by axe-playwright-python) on the page as it is and
fails listing every violation of any impact. Emails are checked as pages with `show_email`,
which puts the HTML part into the page; landmark rules are left out there (an email has no
<main>, and mail clients wrap it in their own).
"""

from __future__ import annotations

import email
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email import policy
from pathlib import Path

from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Page, async_playwright

from events_app import settings

FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Every journey runs at both: a laptop, and a phone (iPhone 12-15 CSS pixels).
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
WIDTHS = list(VIEWPORTS)
FAST_WORKER = {"EVENTS_WORKER_POLL_SECONDS": "0.1"}

# Rules that do not apply to an email shown on its own: it has no landmarks of its own.
EMAIL_SKIPPED_RULES = ("region", "landmark-one-main", "page-has-heading-one", "bypass")

_axe = Axe()


@asynccontextmanager
async def browser_page(chromium_path: str, width: str = "desktop", *, javascript: bool = True) -> AsyncIterator[Page]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium_path, args=FLAGS)
        try:
            context = await browser.new_context(
                viewport=VIEWPORTS[width], java_script_enabled=javascript, is_mobile=width == "phone",
                has_touch=width == "phone",
            )
            yield await context.new_page()
        finally:
            await browser.close()


def _describe(violations: list[dict]) -> str:
    lines = []
    for v in violations:
        targets = [", ".join(map(str, node.get("target", []))) for node in v.get("nodes", [])][:5]
        lines.append(f"{v['id']} ({v.get('impact')}): {v.get('help')} at {targets}")
    return "\n".join(lines)


async def axe_violations(page: Page, skip: tuple[str, ...] = ()) -> list[dict]:
    options: dict = {"resultTypes": ["violations"]}
    if skip:
        options["rules"] = {rule: {"enabled": False} for rule in skip}
    results = await _axe.run(page, options=options)
    return list(results.response["violations"])


async def assert_accessible(page: Page, skip: tuple[str, ...] = ()) -> None:
    """No axe-core violation of any impact on the page as it is now."""
    found = await axe_violations(page, skip)
    assert not found, f"axe-core on {page.url}:\n{_describe(found)}"


def html_part(msg: email.message.EmailMessage) -> str:
    return msg.get_body(preferencelist=("html",)).get_content()


def text_part(msg: email.message.EmailMessage) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


async def show_email(page: Page, msg: email.message.EmailMessage) -> None:
    """Put the message's HTML part into the page, as a mail client shows it."""
    await page.set_content(html_part(msg))


async def assert_email_accessible(page: Page, msg: email.message.EmailMessage) -> None:
    await show_email(page, msg)
    await assert_accessible(page, skip=EMAIL_SKIPPED_RULES)


def mail_dir() -> Path:
    return settings.get().mail_dir


def wait_for_mail(to: str, subject_part: str = "", timeout: float = 20, after: int = 0) -> email.message.EmailMessage:
    """The first .eml (by file name) to `to` whose subject contains `subject_part`, skipping the
    first `after` such messages; waits up to `timeout` seconds for the worker to write it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = []
        for path in sorted(mail_dir().glob("*.eml")):
            msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
            if to in str(msg["To"]) and subject_part.lower() in str(msg["Subject"]).lower():
                found.append(msg)
        if len(found) > after:
            return found[after]
        time.sleep(0.2)
    raise AssertionError(f"no mail to {to} about {subject_part!r} in {mail_dir()}")
