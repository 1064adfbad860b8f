"""axe-core on every page and every email (issue 14, must-show 2): a real server with its worker
and demo-like content (tests/site_tour.py), Debian's Chromium at desktop and phone widths. Every
public page (event list and page, the cancelled and past variants, the thank-you page reached by
registering, the personal page and its cancel step, the link request, the join page, the
bulletin, an issue, subscribing, confirming, preferences, deleting, unsubscribing, a 404) and
every workspace page signed in, then every email the worker wrote meanwhile, rendered as a page.
No violation of any impact is allowed (landmark rules aside for emails); one assertion lists them
all, page by page, so a failure says everything at once."""

from __future__ import annotations

import email
import shutil
from email import policy

import pytest
from browserkit import EMAIL_SKIPPED_RULES, FAST_WORKER, WIDTHS, axe_violations, browser_page, mail_dir, show_email
from playwright.async_api import Error as PlaywrightError
from server import running_server
from site_tour import build, register_in_browser, sign_in


def _found(name: str, violations: list[dict]) -> list[str]:
    out = []
    for v in violations:
        targets = [", ".join(map(str, n.get("target", []))) for n in v.get("nodes", [])][:4]
        out.append(f"{name}: {v['id']} ({v.get('impact')}) at {targets}")
    return out


@pytest.mark.parametrize("width", WIDTHS)
async def test_every_page_and_email_has_no_axe_violation(chromium_path, width):
    shutil.rmtree(mail_dir(), ignore_errors=True)
    tour = await build()
    problems: list[str] = []
    visited: list[str] = []
    with running_server(worker=True, env=FAST_WORKER) as base:
        async with browser_page(chromium_path, width) as page:

            async def check(name: str, path: str | None = None) -> None:
                if path is not None:
                    try:
                        response = await page.goto(base + path, timeout=15_000)
                    except PlaywrightError as exc:
                        problems.append(f"{name}: {path} did not load ({str(exc).splitlines()[0]})")
                        return
                    if name == "settings" and response is not None and response.status == 404:
                        return  # the workspace's Settings page is not there yet
                visited.append(name)
                problems.extend(_found(name, await axe_violations(page)))

            for name, path in tour.public:
                await check(name, path)
            await register_in_browser(page, base, tour.event, "Rosalind Franklin", "rosalind@example.org")
            await check("registration-done")
            # The answers of the self-service forms, and the emails they cause.
            for name, path, address in (
                ("registration-link-sent", "/r/link", "ada@example.org"),
                ("subscription-link-sent", "/s/link", "lin@example.org"),
            ):
                await page.goto(base + path)
                await page.get_by_label("Email", exact=True).fill(address)
                await page.locator("main form button[type=submit]").first.click()
                await page.wait_for_load_state()
                await check(name)
            await page.goto(base + tour.personal + "/cancel")
            await page.locator("main form[method=post] button[type=submit]").first.click()
            await page.wait_for_load_state()
            await check("personal-page-cancelled")
            await page.goto(base + tour.event)
            await page.get_by_label("Your name").fill("")  # a mistake: every error next to its field
            await page.locator("main form button[type=submit]").filter(has_text="Register").first.click()
            await page.wait_for_load_state()
            await check("event-page-errors")

            await sign_in(page, base)
            for name, path in tour.staff:
                await check(name, path)
            await page.context.clear_cookies()  # signed out: the login form
            await check("staff-login", "/staff/login")

        # Every email the worker wrote for this tour (confirmations, invites, links, the issue).
        messages = [
            email.message_from_bytes(path.read_bytes(), policy=policy.default)
            for path in sorted(mail_dir().glob("*.eml"))
        ]
        assert messages, "the worker wrote no email"
        seen: set[str] = set()
        async with browser_page(chromium_path, width) as page:
            for msg in messages:
                subject = str(msg["Subject"])
                if subject in seen:
                    continue
                seen.add(subject)
                await show_email(page, msg)
                problems.extend(_found(f"email {subject!r}", await axe_violations(page, EMAIL_SKIPPED_RULES)))
                if width == "phone":
                    scroll = await page.evaluate("document.documentElement.scrollWidth")
                    if scroll > 390:
                        problems.append(f"email {subject!r}: {scroll} px wide on a 390 px screen")
    assert len(visited) >= len(tour.public) + len(tour.staff) - 1, visited  # Settings may be missing
    subjects = " | ".join(seen).lower()
    for kind in (
        "you're registered",
        "your registration link",
        "registration is cancelled",
        "subscription preferences",
        "please confirm your subscription",
        "november 2026",
    ):
        assert kind in subjects, (kind, subjects)  # fmt: skip
    assert not problems, f"{len(problems)} violations at {width}:\n" + "\n".join(problems)
