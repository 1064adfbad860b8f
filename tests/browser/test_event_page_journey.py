"""The event page and its editor in a real browser (Debian's Chromium driven by Playwright) against
a real server, at desktop and phone widths (issue 14): the register call to action is in the first
screen and its click reaches the form; the cover (its phone-width copy on a phone) and the speakers
show; registering lands on a thank-you page that survives a reload and the back button; past and
cancelled events offer no add-to-calendar; staff upload a cover, add a speaker and meet every
error beside its field with the field's label. axe-core on every page on the way."""

from __future__ import annotations

import io
import re

import pytest
from browserkit import FAST_WORKER, WIDTHS, assert_accessible, browser_page
from factories import published_event
from PIL import Image
from playwright.async_api import expect
from server import running_server

from events_app import db
from events_app.domain import events, images, staff

TITLE = "Non-Academic Careers with Impact: Implementation Positions You Never Knew Existed"
DESCRIPTION = "\n\n".join(
    f"Part {n}. Implementation roles sit between research and practice: you will hear how three people "
    "found them, what they do all day and what they wish they had known." for n in range(1, 7))
EMAIL, PASSWORD = "lead@example.org", "correct horse battery staple"


def _png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("width", WIDTHS)
async def test_event_page_register_and_the_editor(chromium_path, width):
    cover = await images.store(_png(1600, 838, (20, 80, 150)), field="cover")
    photo = await images.store(_png(200, 200, (150, 60, 20)), field="photo")
    event = await published_event(
        slug="careers", title=TITLE, capacity=3, description=DESCRIPTION, show_registered_count=True,
        summary="Three practitioners on the jobs that turn research into practice.",
        audience="Graduate students, recent graduates and professionals moving into implementation roles",
        cover_image_url=cover, cover_alt="Three panelists smiling on a video call",
        speakers=[{"name": "Ada Lovelace", "role": "Implementation lead, City Health", "photo_url": photo,
                   "bio": "Left a PhD in epidemiology for health services; now leads a team of six."},
                  {"name": "Grace Hopper", "role": "Host"}],
    )
    await published_event(slug="last-year", title="Last year's panel", starts_at="2022-11-29T12:00",
                          ends_at="2022-11-29T13:00")
    gone = await published_event(slug="called-off", title="Called-off panel")
    await events.cancel(gone["id"], note="Our speakers are unwell; we will run it again in the spring.")
    await staff.create(EMAIL, PASSWORD, "Lead")

    with running_server(worker=True, env=FAST_WORKER) as base:
        async with browser_page(chromium_path, width) as page:
            await page.goto(f"{base}/events")
            await assert_accessible(page)
            await page.get_by_role("link", name=re.compile("Non-Academic Careers")).first.click()
            await expect(page.get_by_role("heading", level=1)).to_have_text(TITLE)

            # The call to action is on the first screen, before any scrolling, and reaches the form.
            cta = page.locator("section.glance").get_by_role("link", name="Register")
            await expect(cta).to_be_in_viewport()
            await expect(page.locator("#registered-count")).to_have_text("0 registered")
            cover_img = page.get_by_role("img", name="Three panelists smiling on a video call")
            await expect(cover_img).to_be_visible()
            await cover_img.scroll_into_view_if_needed()
            await page.wait_for_function("document.querySelector('img.cover').complete")
            loaded = await cover_img.evaluate("i => [i.naturalWidth, i.currentSrc, window.devicePixelRatio]")
            assert loaded[0] > 0, "the cover loaded"
            variants = dict(await images.variants(cover))
            if width == "phone" and loaded[2] == 1:
                assert loaded[1].endswith(min(variants, key=variants.get)), "a phone gets the phone-width copy"
            await expect(page.get_by_role("heading", name="Ada Lovelace")).to_be_visible()
            await expect(page.get_by_text("Implementation lead, City Health")).to_be_visible()
            await expect(page.locator(".speaker .initials")).to_have_text("GH")
            await expect(page.get_by_role("heading", name="Add to your calendar")).to_be_visible()
            await assert_accessible(page)

            await page.evaluate("window.scrollTo(0, 0)")
            await cta.click()
            await expect(page).to_have_url(re.compile(r"#register$"))
            await expect(page.get_by_label("Your name")).to_be_in_viewport()
            await page.get_by_label("Your name").fill("Ada Reader")
            await page.get_by_label("Email").fill("reader@example.org")
            await page.locator("form").get_by_role("button", name="Register").click()

            # The thank-you page is its own address: a reload and the back button post nothing.
            await expect(page.get_by_role("heading", name="You're registered")).to_be_visible()
            assert "/events/careers/registered?" in page.url
            await expect(page.get_by_text("reader@example.org")).to_be_visible()
            await assert_accessible(page)
            await page.reload()
            await expect(page.get_by_role("heading", name="You're registered")).to_be_visible()
            await page.go_back()
            await expect(page.get_by_role("heading", level=1)).to_have_text(TITLE)
            assert (await db.fetch("SELECT COUNT(*) AS n FROM registration"))[0]["n"] == 1
            await page.goto(f"{base}/events/careers")
            await expect(page.locator("#registered-count")).to_have_text("1 registered")

            # Past and cancelled events: no add-to-calendar; the cancellation says why.
            await page.goto(f"{base}/events/last-year")
            await expect(page.get_by_text("This event is over.")).to_be_visible()
            assert await page.get_by_role("heading", name="Add to your calendar").count() == 0
            await page.goto(f"{base}/events/called-off")
            await expect(page.get_by_text("we will run it again in the spring")).to_be_visible()
            assert await page.get_by_role("heading", name="Add to your calendar").count() == 0
            assert await page.get_by_role("link", name="Register").count() == 0
            await assert_accessible(page)

            # Staff: sign in, meet the errors beside their fields, upload a cover, add a speaker.
            await page.goto(f"{base}/staff/events/{event['id']}")
            await page.get_by_label("Email").fill(EMAIL)
            await page.get_by_label("Password").fill(PASSWORD)
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.get_by_role("heading", level=1)).to_contain_text("Non-Academic Careers")
            await assert_accessible(page)
            await page.locator("#title").fill("")
            await page.locator("#capacity").fill("-2")
            await page.locator("#s-2-role").fill("Panelist")  # a speaker without a name
            await page.locator("#cover_file").set_input_files(
                files=[{"name": "new-cover.png", "mimeType": "image/png", "buffer": _png(1400, 733, (10, 120, 60))}])
            await page.get_by_role("button", name="Save changes").click()
            summary = page.locator("#error-summary")
            await expect(summary).to_be_visible()
            for label in ("Title", "Seats", "Speaker 3: name"):
                await expect(summary.get_by_role("link", name=label, exact=True)).to_be_visible()
            assert "capacity" not in await summary.inner_text()
            await expect(page.locator("#err-title")).to_have_text("is required")
            await expect(page.locator("#err-speakers-2-name")).to_have_text("is required")
            await assert_accessible(page)
            await summary.get_by_role("link", name="Speaker 3: name").click()
            await page.locator("#s-2-name").fill("Linus Pauling")
            await page.locator("#title").fill(TITLE)
            await page.locator("#capacity").fill("3")
            await page.get_by_role("button", name="Save changes").click()
            await expect(page.get_by_text(re.compile("^Saved\\."))).to_be_visible()
            saved = await events.get(event["id"])
            assert saved["cover_image_url"] not in ("", cover), "the uploaded cover was kept through the error"
            assert [p["name"] for p in saved["speakers"]] == ["Ada Lovelace", "Grace Hopper", "Linus Pauling"]

            await page.goto(f"{base}/events/careers")
            await expect(page.get_by_role("heading", name="Linus Pauling")).to_be_visible()
            assert await page.locator("img.cover").get_attribute("src") == saved["cover_image_url"]
