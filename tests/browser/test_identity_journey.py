"""Staff give the organisation its identity in Settings, in a real browser against a real server,
at desktop and phone widths: a colour too light is refused next to its field (the chosen logo is
kept meanwhile), then the saved name, logo, colour, website and postal address show on the public
pages; axe-core on the settings page (with its errors and after saving) and on a public page.
Screenshots go to $IDENTITY_SHOTS when set (e.g. /tmp/identity-shots)."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest
from browserkit import WIDTHS, assert_accessible, browser_page
from factories import published_event
from PIL import Image
from playwright.async_api import expect
from server import running_server

from events_app.domain import identity, staff

EMAIL, PASSWORD = "lead@example.org", "correct horse battery"
NAME = "Implementation Science Centre"


def logo_file(tmp_path) -> str:
    img = Image.new("RGBA", (360, 120), (0, 0, 0, 0))
    img.paste((26, 77, 46, 255), (10, 10, 110, 110))
    img.paste((26, 77, 46, 255), (130, 40, 350, 80))
    out = io.BytesIO()
    img.save(out, "PNG")
    path = tmp_path / "logo.png"
    path.write_bytes(out.getvalue())
    return str(path)


@pytest.mark.parametrize("width", WIDTHS)
async def test_staff_set_the_identity_and_public_pages_wear_it(chromium_path, tmp_path, width):
    await staff.create(EMAIL, PASSWORD, "Team Lead")
    event = await published_event(title="Non-Academic Careers with Impact", slug="careers")
    try:
        with running_server() as base:
            async with browser_page(chromium_path, width) as page:
                shots = Path(os.environ["IDENTITY_SHOTS"]) if os.environ.get("IDENTITY_SHOTS") else None

                async def shot(name: str) -> None:
                    if shots:
                        shots.mkdir(parents=True, exist_ok=True)
                        await page.screenshot(path=str(shots / f"{width}-{name}.png"), full_page=True)

                await page.goto(f"{base}/staff/settings")
                assert "/staff/login" in page.url
                await page.get_by_label("Email").fill(EMAIL)
                await page.get_by_label("Password").fill(PASSWORD)
                await page.get_by_role("button", name="Sign in").click()
                await expect(page).to_have_url(re.compile(r"/staff/settings$"))
                nav = page.get_by_role("navigation", name="Staff workspace")
                await expect(nav.get_by_role("link", name="Settings")).to_have_attribute("aria-current", "page")
                await expect(page.get_by_role("heading", level=1, name="Settings")).to_be_visible()
                await assert_accessible(page)

                # Everything filled in, with a colour too light for white text on it.
                await page.get_by_label("Organisation name").fill(NAME)
                await page.get_by_label("Accent colour").fill("#ffdd00")
                await page.get_by_label("Website").fill("https://example.org")
                await page.get_by_label("Reply-to address").fill("events@example.org")
                await page.get_by_label("Postal address").fill("100 College Street\nToronto ON M5G 1L5\nCanada")
                await page.get_by_label("Logo").set_input_files(logo_file(tmp_path))
                await page.get_by_role("button", name="Save settings").click()
                error = page.locator("#err-accent_colour")
                await expect(error).to_be_visible()
                await expect(error).to_contain_text("Accent colour is too light")
                colour = page.get_by_label("Accent colour")
                await expect(colour).to_have_attribute("aria-invalid", "true")
                assert "err-accent_colour" in (await colour.get_attribute("aria-describedby") or "")
                await expect(page.get_by_role("alert")).to_contain_text("Please correct 1 field")
                # The logo chosen is kept while the colour is corrected.
                await expect(page.get_by_role("img", name="The logo you chose (not saved yet)")).to_be_visible()
                await assert_accessible(page)
                await shot("settings-errors")

                await colour.fill("#1a4d2e")
                await page.get_by_role("button", name="Save settings").click()
                await expect(page).to_have_url(re.compile(r"/staff/settings\?done=saved$"))
                await expect(page.get_by_role("status")).to_contain_text("Settings saved")
                await expect(page.get_by_label("Organisation name")).to_have_value(NAME)
                await assert_accessible(page)
                await shot("settings-saved")

                # A public page wears the identity: header, title, logo, colour, footer.
                await page.goto(f"{base}/events/{event['slug']}")
                title = await page.title()
                assert title.endswith(f" · {NAME}") and title.count(NAME) == 1, title
                brand = page.get_by_role("banner").get_by_role("link", name=NAME)
                await expect(brand).to_be_visible()
                logo = brand.get_by_role("img", name=NAME)
                await expect(logo).to_be_visible()
                assert await logo.evaluate("img => img.complete && img.naturalWidth > 0"), "the logo did not load"
                accent = await page.evaluate(
                    "getComputedStyle(document.documentElement).getPropertyValue('--accent').trim()"
                )
                assert accent == "#1a4d2e"
                footer = page.get_by_role("contentinfo")
                await expect(footer.get_by_role("link", name="example.org")).to_have_attribute(
                    "href", "https://example.org"
                )
                await expect(footer).to_contain_text("Toronto ON M5G 1L5")
                icon = await page.locator("link[rel=icon]").get_attribute("href")
                answer = await page.request.get(base + icon)
                assert answer.ok and "#1a4d2e" in await answer.text()
                await assert_accessible(page)
                await shot("event-page")
                await page.goto(f"{base}/events")
                await expect(page.get_by_role("banner")).to_contain_text(NAME)
                await assert_accessible(page)
    finally:
        identity.forget()
