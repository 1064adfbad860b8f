"""A site with demo-like content and a list of every page, for whole-site tours: the
accessibility test (tests/browser/test_accessibility.py) and the screenshot gallery
(tests/screenshots.py, `make screenshots`).

`build()` loads the demo (events_app/demo.py) and adds what a tour must see: the organisation's
identity with an uploaded logo, the upcoming webinar with a cover and panelists shown with its
registered count, a cancelled event, registrants (a personal page and a join link), a confirmed
subscriber (preferences) and a pending one (confirmation page), a released issue with a delivery,
and a staff member whose password the tour knows. Everything goes through the domain, as people
would make it; tokens come from the domain's token functions.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from events_app import db, demo
from events_app.domain import events, identity, images, issues, registrations, staff, subscriptions
from events_app.domain.errors import ValidationFailed
from events_app.tables import OrgSettings

ORG_NAME = "Centre for Implementation Research"
STAFF_EMAIL = "tour@example.org"
STAFF_PASSWORD = "a tour password of enough length"
ZONE = "America/Toronto"
ISSUE_BODY = """Where does implementation training lead outside academia? Three of our alumni answer.

## What the work looks like

> "Every week I translate evidence into a plan a hospital unit can actually run."
> — an implementation specialist

| Role | Where | What it asks for |
|------|-------|------------------|
| Implementation specialist | Hospitals, health authorities | Facilitation, evaluation |
| Knowledge broker | Charities, government | Writing, networks |

Read more at https://example.org/careers/implementation-science/alumni-stories/2019/october/full-interviews
"""


@dataclass
class Tour:
    """The addresses a tour visits (paths, to be joined to the server's base URL)."""

    event: str
    cancelled: str
    past: str
    personal: str
    join: str
    issue: str
    subscribe_confirm: str
    preferences: str
    unsubscribe: str
    event_id: int
    issue_id: int
    delivery: str
    staff: list[tuple[str, str]] = field(default_factory=list)  # (name, path)
    public: list[tuple[str, str]] = field(default_factory=list)


def picture(width: int, height: int, colour: tuple[int, int, int], words: str = "") -> bytes:
    """A PNG of one colour with a lighter band and `words` in white (Pillow), to upload as a
    logo or a cover."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (width, height), colour)
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, height * 5 // 6, width, height), fill=(240, 244, 250))
    if words:
        try:
            font = ImageFont.load_default(size=min(height // 3, int(width * 0.8 / (0.6 * len(words)))))
        except TypeError:  # Pillow before 10.1: one small bitmap font
            font = ImageFont.load_default()
        draw.text((height // 6, height // 5), words, fill=(255, 255, 255), font=font)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


async def _identity() -> None:
    if await db.fetch("SELECT id FROM org_settings WHERE id = 1"):
        return
    logo = await images.store(picture(480, 120, (11, 92, 173), "CIR"), field="logo")
    await OrgSettings.insert(
        OrgSettings(
            id=1,
            organisation_name=ORG_NAME,
            logo_url=logo,
            accent_colour="#0b5cad",
            website="https://implementation.example.org",
            reply_to="hello@implementation.example.org",
            postal_address="155 College Street, Suite 400\nToronto, ON M5T 1P8\nCanada",
            version=2,
        )
    ).run()
    identity.forget()
    await identity.load()


async def _dress(event: dict) -> dict:
    """The webinar as staff would present it: a cover, panelists, the registered count."""
    cover = await images.store(picture(1200, 630, (30, 64, 120), "Careers with impact"), field="cover_image_url")
    dressed = {
        "cover_image_url": cover,
        "cover_alt": "Four panelists on a stage in front of a screen reading 'Careers with impact'",
        "speakers": [
            {"name": "Dr. Maya Chen", "role": "Implementation specialist, Toronto General", "bio": "Moved from a postdoc to hospital implementation in 2019.", "photo_url": ""},
            {"name": "Samuel Okafor", "role": "Knowledge broker, Health Canada", "bio": "Turns research into policy briefs.", "photo_url": ""},
        ],
        "show_registered_count": True,
    }  # fmt: skip
    try:
        return (await events.update(event["id"], dressed))[0]
    except (ValidationFailed, KeyError, TypeError):  # a column not in use yet: the page without it
        return event


async def build() -> Tour:
    """Demo content plus what every page of a tour needs (see the module doc); idempotent enough
    for one database (run it once)."""
    await demo.load(lambda line: None)
    await _identity()
    upcoming = await events.get_by_slug("non-academic-careers-with-impact")
    upcoming = await _dress(upcoming)
    past = await events.get_by_slug("non-academic-careers-with-impact-2022")

    start = (datetime.now(ZoneInfo(ZONE)) + timedelta(days=21)).replace(hour=12, minute=0, second=0, microsecond=0)
    cancelled = await events.create(
        {
            "title": "Grant writing for implementation projects",
            "summary": "A workshop on writing the implementation plan of a grant.",
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=2)).isoformat(),
            "timezone": ZONE,
            "capacity": 40,
            "join_url": "https://meet.example.org/grants",
            "status": "published",
        }
    )
    await events.cancel(cancelled["id"])

    people = [
        ("Ada Lovelace", "ada@example.org"),
        ("Grace Hopper", "grace@example.org"),
        ("Alan Turing", "alan@example.org"),
    ]
    rows = []
    for name, address in people:
        rows.append(
            await registrations.register(
                await events.get(upcoming["id"]),
                {
                    "name": name,
                    "email": address,
                    "answers": {"stage": "Graduate student", "question": "How did you start?"},
                },
            )
        )
    [ada] = await db.fetch("SELECT * FROM registration WHERE id = {}", rows[0]["id"])  # with its token salt

    topics = await subscriptions.all_topics()
    ids = {t["slug"]: t["id"] for t in topics}
    await subscriptions.subscribe("lin@example.org", "Lin", ids)
    await subscriptions.subscribe("noor@example.org", "Noor", ids)
    [lin] = await db.fetch("SELECT id FROM subscriber WHERE email = 'lin@example.org'")
    [noor] = await db.fetch("SELECT id FROM subscriber WHERE email = 'noor@example.org'")
    lin_row = await subscriptions.get(lin["id"])
    await subscriptions.confirm(subscriptions.confirm_token(lin_row))
    lin_row = await subscriptions.get(lin["id"])
    noor_row = await subscriptions.get(noor["id"])

    issue = await issues.create(
        {"title": "November 2026", "issue_date": datetime.now(ZoneInfo(ZONE)).date().isoformat(), "body": ISSUE_BODY,
         "summary": "Where implementation training leads outside academia."}
    )  # fmt: skip
    await issues.release(issue["id"])
    if not await db.fetch("SELECT id FROM staff_user WHERE email = {}", STAFF_EMAIL):
        await staff.create(STAFF_EMAIL, STAFF_PASSWORD, "Tour Staff")

    manage = subscriptions.manage_token(lin_row)
    tour = Tour(
        event=f"/events/{upcoming['slug']}",
        cancelled=f"/events/{cancelled['slug']}",
        past=f"/events/{past['slug']}",
        personal=f"/r/{registrations.personal_token(ada)}",
        join=f"/j/{registrations.join_token(ada)}",
        issue=f"/bulletin/{demo.ISSUE_SLUG}",
        subscribe_confirm=f"/s/confirm/{subscriptions.confirm_token(noor_row)}",
        preferences=f"/s/{manage}",
        unsubscribe=f"/s/{manage}/unsubscribe",
        event_id=upcoming["id"],
        issue_id=issue["id"],
        delivery=f"/staff/issues/{issue['id']}/progress",
    )
    tour.public = [
        ("event-list", "/events"),
        ("event-page", tour.event),
        ("event-cancelled", tour.cancelled),
        ("event-past", tour.past),
        ("personal-page", tour.personal),
        ("personal-cancel", tour.personal + "/cancel"),
        ("registration-link", "/r/link"),
        ("join", tour.join),
        ("bulletin", "/bulletin"),
        ("issue-page", tour.issue),
        ("subscribe", "/bulletin/subscribe"),
        ("subscribe-confirm", tour.subscribe_confirm),
        ("preferences", tour.preferences),
        ("preferences-delete", tour.preferences + "/delete"),
        ("unsubscribe", tour.unsubscribe),
        ("subscription-link", "/s/link"),
        ("not-found", "/events/no-such-event"),
    ]
    tour.staff = [
        ("dashboard", "/staff"),
        ("staff-events", "/staff/events"),
        ("event-editor-new", "/staff/events/new"),
        ("event-editor", f"/staff/events/{upcoming['id']}"),
        ("event-preview", f"/staff/events/{upcoming['id']}/preview"),
        ("event-cancel", f"/staff/events/{upcoming['id']}/cancel"),
        ("registrants", f"/staff/events/{upcoming['id']}/registrants"),
        ("announce", f"/staff/events/{upcoming['id']}/announce"),
        ("issues", "/staff/issues"),
        ("issue-editor-new", "/staff/issues/new"),
        ("issue-editor", f"/staff/issues/{issue['id']}"),
        ("issue-release", f"/staff/issues/{issue['id']}/release"),
        ("delivery", tour.delivery),
        ("subscribers", "/staff/subscribers"),
        ("mail", "/staff/mail"),
        ("audit", "/staff/audit"),
        ("account", "/staff/account"),
        ("settings", "/staff/settings"),
    ]
    return tour


async def sign_in(page, base: str) -> None:
    """Sign the browser page in to the workspace as the tour's staff member."""
    await page.goto(f"{base}/staff/login")
    await page.get_by_label("Email").fill(STAFF_EMAIL)
    await page.get_by_label("Password").fill(STAFF_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(lambda url: "/staff/login" not in url)


async def register_in_browser(page, base: str, path: str, name: str, address: str) -> None:
    """Register on the event page at `path` as a visitor would, ending on the thank-you page."""
    await page.goto(base + path)
    await page.get_by_label("Your name").fill(name)
    await page.get_by_label("Email", exact=True).fill(address)
    radios = page.locator("form input[type=radio]")
    if await radios.count():
        await radios.first.check()
    await (
        page.locator("form button[type=submit]")
        .filter(has_text="Register")
        .or_(page.locator("form button[type=submit]").filter(has_text="waitlist"))
        .first.click()
    )
    await page.wait_for_url(lambda url: "/registered" in url)
