"""The event page people judge (issue 14): cover, speakers, the register call to action, the
shown count, add-to-calendar only where it makes sense, the waitlist's terms, a cancellation's
note, and the thank-you page reached by a redirect that can be reopened."""

from __future__ import annotations

import io
import re
from urllib.parse import parse_qs, urlsplit

from factories import published_event
from PIL import Image

from events_app import db
from events_app.domain import events, identity, images

SPEAKERS = [
    {
        "name": "Ada Lovelace",
        "role": "Implementation lead",
        "bio": "Moved from a PhD to health services.",
        "photo_url": "https://example.org/ada.jpg",
    },
    {"name": "Grace Hopper", "role": "Programme manager"},
]


def _jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 90, 160)).save(out, "JPEG")
    return out.getvalue()


async def test_cover_speakers_and_a_call_to_action_before_the_description(client):
    cover = await images.store(_jpeg(1600, 900), field="cover")
    await published_event(
        slug="careers",
        cover_image_url=cover,
        cover_alt="Three panelists on a video call",
        speakers=SPEAKERS,
        description="Long description. " * 200,
    )
    page = (await client.get("/events/careers")).text
    img = re.search(r'<img class="cover"[^>]*>', page).group(0)
    assert f'src="{cover}"' in img and 'alt="Three panelists on a video call"' in img
    assert 'width="1200"' in img and 'height="628"' in img
    srcset = re.search(r'srcset="([^"]+)"', img).group(1)
    assert " 800w" in srcset and " 1600w" in srcset, "the phone-width copy is offered"
    # The call to action comes before the cover and the description, and leads to the form.
    cta = page.index('href="#register"')
    assert cta < page.index('class="cover"') < page.index('class="description"')
    assert 'id="register"' in page and page.index('id="register"') < page.index('action="/events/careers/register"')
    # Speakers: name, role, bio, photo, or initials when there is none.
    assert "Ada Lovelace" in page and "Implementation lead" in page and "Moved from a PhD" in page
    assert 'src="https://example.org/ada.jpg"' in page
    assert re.search(r'class="initials"[^>]*>GH<', page)
    assert "Hosts and speakers" in page


async def test_registered_count_only_where_staff_want_it(client):
    event = await published_event(slug="careers")
    await client.post("/events/careers/register", data={"name": "Ada", "email": "ada@example.org"})
    assert "1 registered" not in (await client.get("/events/careers")).text
    await events.update(event["id"], {"show_registered_count": True})
    assert '<span class="badge" id="registered-count">1 registered</span>' in (await client.get("/events/careers")).text


async def test_add_to_calendar_only_for_an_event_ahead_that_is_not_cancelled(client):
    ahead = await published_event(slug="ahead")
    await published_event(slug="past", starts_at="2022-11-29T12:00", ends_at="2022-11-29T13:00")
    assert "calendar.google.com" in (await client.get("/events/ahead")).text
    assert "calendar.google.com" not in (await client.get("/events/past")).text
    await events.cancel(ahead["id"], note="The speakers are ill; we will run it in the spring.")
    page = (await client.get("/events/ahead")).text
    assert "calendar.google.com" not in page and "Add to your calendar" not in page
    assert "This event has been cancelled" in page
    assert "The speakers are ill; we will run it in the spring." in page
    assert 'href="#register"' not in page


async def test_a_full_event_says_what_the_waitlist_gives(client):
    await published_event(slug="careers", capacity=1)
    await client.post("/events/careers/register", data={"name": "Ada", "email": "ada@example.org"})
    page = (await client.get("/events/careers")).text
    terms = re.search(r'<div class="notice" id="waitlist-terms">(.*?)</div>', page, re.S).group(1)
    assert "place in line" in terms and "seat frees up" in terms and "leave the waitlist" in terms
    assert ">Join the waitlist</a>" in page


async def test_registering_redirects_to_a_thank_you_page_that_can_be_reopened(client):
    await published_event(slug="careers", capacity=1)
    answer = await client.post("/events/careers/register", data={"name": "Ada", "email": "ada@example.org"})
    assert answer.status_code == 303
    where = answer.headers["location"]
    assert where.startswith("/events/careers/registered?") and "ada" not in where
    for _ in range(2):  # a reload shows the same and registers nobody again
        page = await client.get(where)
        assert page.status_code == 200 and "You're registered" in page.text
        assert "<strong>ada@example.org</strong>" in page.text  # this browser's own cookie
        assert page.headers["cache-control"] == "private, no-store"
    assert (await db.fetch("SELECT COUNT(*) AS n FROM registration"))[0]["n"] == 1
    assert "you still have your one seat" in page.text and "sent the confirmation again" in page.text

    # Someone given the address (no cookie) sees no address at all.
    client.cookies.clear()
    stranger = await client.get(where)
    assert stranger.status_code == 200 and "ada@example.org" not in stranger.text
    assert "the address you gave" in stranger.text

    waiting = await client.post("/events/careers/register", data={"name": "Eve", "email": "eve@example.org"})
    page = (await client.get(waiting.headers["location"])).text
    assert "You're on the waitlist" in page and "number <strong>1</strong>" in page


async def test_a_forged_thank_you_address_leads_to_the_event_page(client):
    await published_event(slug="careers")
    answer = await client.post("/events/careers/register", data={"name": "Ada", "email": "ada@example.org"})
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    forged = f"/events/careers/registered?status=waitlisted&place=1&sig={query['sig'][0]}"
    refused = await client.get(forged)
    assert refused.status_code == 303 and refused.headers["location"] == "/events/careers"
    assert (await client.get("/events/careers/registered")).status_code == 303


async def test_a_repeat_registration_answers_like_a_first_one(client):
    await published_event(slug="careers", capacity=5)
    first = await client.post("/events/careers/register", data={"name": "Ada", "email": "ada@example.org"})
    again = await client.post("/events/careers/register", data={"name": "Ada L", "email": "ada@example.org"})
    other = await client.post("/events/careers/register", data={"name": "Bob", "email": "bob@example.org"})
    assert first.headers["location"] == again.headers["location"] == other.headers["location"]
    assert (await db.fetch("SELECT taken FROM event"))[0]["taken"] == 2


async def test_the_calendar_feed_is_named_after_the_organisation(client):
    identity.forget()  # the first defaults, whatever an earlier test stored
    await published_event(slug="careers")
    assert "X-WR-CALNAME:Events events" in (await client.get("/calendar.ics")).text
    try:
        await identity.update({"organisation_name": "Implementation Centre"})
        feed = (await client.get("/calendar.ics")).text
        assert "X-WR-CALNAME:Implementation Centre events" in feed, "a changed name shows at once (the key names it)"
    finally:
        identity.forget()


async def test_the_page_changes_when_what_it_shows_changes(client):
    """The page cache's key follows the event's version: a new cover, speaker or note shows at once."""
    event = await published_event(slug="careers")
    assert "Grace Hopper" not in (await client.get("/events/careers")).text
    await events.update(event["id"], {"speakers": [{"name": "Grace Hopper"}]})
    assert "Grace Hopper" in (await client.get("/events/careers")).text
    await events.update(event["id"], {"cover_image_url": "https://example.org/c.jpg", "cover_alt": "A cover"})
    assert 'alt="A cover"' in (await client.get("/events/careers")).text


async def test_every_public_page_has_one_meta_description(client):
    """Search engines and link previews take one description: the event page's own, not also the
    site's default beside it (it had both)."""
    await published_event(slug="careers", summary="A one-hour webinar on careers.")
    await published_event(slug="plain", summary="")
    for path in ("/events", "/events/careers", "/events/plain", "/bulletin", "/bulletin/subscribe", "/r/link"):
        page = (await client.get(path)).text
        found = re.findall(r'<meta name="description" content="([^"]*)"', page)
        assert len(found) == 1, (path, found)
    careers = (await client.get("/events/careers")).text
    assert re.findall(r'<meta name="description" content="([^"]*)"', careers) == ["A one-hour webinar on careers."]


async def test_pieces_built_once_per_version_give_the_page_a_fresh_build_gives(client, auth, app):
    """web/present.py keeps what depends only on the event's version (times, description, speakers,
    meta description, JSON-LD, add-to-calendar links) per process: the page from those pieces is
    byte for byte the page built from nothing, the JSON-LD written once reads as the template's
    own `tojson`, and a change of the event (a new version) is on the next page."""
    from events_app.web import cache, present
    from events_app.web.public import page_context

    questions = [{"key": "stage", "label": "Stage", "type": "single", "options": ["A", "B"], "required": True}]
    event = await published_event(
        slug="careers",
        speakers=SPEAKERS,
        questions=questions,
        capacity=1,
        description="Meet **them** & <b>us</b>.",
        summary="",
    )
    first = (await client.get("/events/careers")).content
    cache.clear()
    present._PARTS.clear()
    assert (await client.get("/events/careers")).content == first
    template = app.template_engine.get_template("events/detail.html")
    context = await page_context(await events.get(event["id"]))
    assert "json_ld_script" in context
    built = template.render(**context, request=None, csrf_input="")
    del context["json_ld_script"]
    assert template.render(**context, request=None, csrf_input="") == built
    # A registration fills the only seat: the offer's availability moves, and it shows.
    await client.post(
        f"/api/v1/events/{event['id']}/registrations",
        json={"name": "A", "email": "a@example.org", "answers": {"stage": "A"}},
    )
    assert "SoldOut" in (await client.get("/events/careers")).text
    answer = await client.patch(
        f"/api/v1/events/{event['id']}", json={"description": "Now **other** words."}, headers=auth
    )
    assert answer.status_code == 200
    page = (await client.get("/events/careers")).text
    assert "<strong>other</strong>" in page and "<strong>them</strong>" not in page
