"""Public calendars and registrant-facing links: one copy of an event per calendar."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import icalendar

from events_app import db, settings
from events_app.domain import events, registrations
from events_app.mail import messages

from factories import published_event


async def test_single_event_ics_and_feeds_have_a_name_an_organizer_and_no_calname_on_one_event(client):
    await published_event(slug="careers", tags=["career"])
    await published_event(slug="other", title="Other")
    one = await client.get("/events/careers.ics")
    assert one.headers["content-type"].count("charset") <= 1
    assert b"X-WR-CALNAME" not in one.content
    cal = icalendar.Calendar.from_ical(one.content)
    assert str(cal["METHOD"]) == "PUBLISH"
    [vevent] = cal.walk("VEVENT")
    assert str(vevent["ORGANIZER"]) == "mailto:events@example.org"
    org = settings.get().org_name
    feed = icalendar.Calendar.from_ical((await client.get("/calendar.ics")).content)
    assert str(feed["NAME"]) == str(feed["X-WR-CALNAME"]) == f"{org} events"
    assert all(str(v["ORGANIZER"]) == "mailto:events@example.org" for v in feed.walk("VEVENT"))
    tagged = icalendar.Calendar.from_ical((await client.get("/calendar.ics?tag=career")).content)
    assert str(tagged["NAME"]) == f"{org} career events"
    assert len(tagged.walk("VEVENT")) == 1


async def test_past_events_stay_in_the_feed_for_thirty_days(client):
    now = datetime.now(timezone.utc)
    for slug, days in (("last-week", 7), ("long-ago", 40)):
        await published_event(slug=slug, starts_at=(now - timedelta(days=days, hours=1)).isoformat(),
                              ends_at=(now - timedelta(days=days)).isoformat())
    feed = icalendar.Calendar.from_ical((await client.get("/calendar.ics")).content)
    urls = [str(v["URL"]) for v in feed.walk("VEVENT")]
    assert [u.rsplit("/", 1)[1] for u in urls] == ["last-week"]


async def test_registrant_facing_links_offer_only_the_invite_itself(client):
    event = await published_event(slug="careers")
    reg = await registrations.register(await events.get(event["id"]), {"name": "Ada", "email": "ada@example.org"})
    row = (await db.fetch("SELECT * FROM registration WHERE id = {}", reg["id"]))[0]
    token = registrations.personal_token(row)
    [outbox] = await db.fetch("SELECT * FROM outbox")
    message = await messages.build(outbox, settings.get())
    bodies = [p.get_content() for p in message.walk() if p.get_content_type() in ("text/plain", "text/html")]
    for body in bodies:
        assert "calendar.google.com" not in body and "outlook.live.com" not in body, body
        assert f"/events/careers.ics" not in body
        assert f"http://testserver/r/{token}.ics" in body
    page = (await client.get(f"/r/{token}")).text
    assert "calendar.google.com" not in page and "outlook.live.com" not in page
    assert f"/r/{token}.ics" in page and "/events/careers.ics" not in page
    thanks = (
        await client.post(
            "/events/careers/register", data={"name": "Bob", "email": "bob@example.org"}, follow_redirects=True
        )
    ).text
    assert "registered" in thanks
    assert "calendar.google.com" not in thanks and "/events/careers.ics" not in thanks
    # visitors still get add-to-calendar links on the public page
    assert "calendar.google.com" in (await client.get("/events/careers")).text
