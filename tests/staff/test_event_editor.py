"""The event editor's new parts (issue 14): cover upload or address with its description,
speakers as repeated rows without JavaScript, "show the number registered", the time-zone list
(common first, canonical names only), every error at once next to its field with the field's
label, old and new values before a change that emails people, and a cancellation's message in
the page and the email."""

from __future__ import annotations

import io
import re

from factories import published_event
from PIL import Image

from events_app import db
from events_app.domain import events
from events_app.mail import messages

from .conftest import assert_refused
from .test_events import form_for, next_week_noon


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(out, "PNG")
    return out.getvalue()


def _speaker_rows(*people: dict) -> dict:
    rows = {"speaker_count": str(len(people) + 1)}
    for i, person in enumerate(people):
        rows.update({f"s-{i}-{k}": v for k, v in person.items()})
    return rows


async def test_create_with_an_uploaded_cover_speakers_and_the_shown_count(client, csrf):
    new = (await client.get("/staff/events/new")).text
    assert 'enctype="multipart/form-data"' in new and 'name="cover_file"' in new
    assert new.count('name="s-') >= 4 * 3, "three empty speaker rows without JavaScript"
    form = {**form_for(next_week_noon()), "csrf_token": csrf, "cover_alt": "The panel on a video call",
            "cover_image_url": "", "show_registered_count": "yes", "publish_now": "yes",
            **_speaker_rows({"name": "Ada Lovelace", "role": "Host", "bio": "Runs the programme.", "photo_url": ""},
                            {"name": "", "role": "", "bio": "", "photo_url": ""},
                            {"name": "Grace Hopper", "role": "Panelist", "bio": "", "photo_url": ""})}
    files = {"cover_file": ("cover.png", _png(1600, 840), "image/png"),
             "s-2-photo_file": ("grace.png", _png(300, 300), "image/png")}
    answer = await client.post("/staff/events", data=form, files=files)
    assert answer.status_code == 303, answer.text[-3000:]
    event_id = int(re.search(r"/staff/events/(\d+)", answer.headers["location"]).group(1))
    event = await events.get(event_id)
    assert re.fullmatch(r"/media/[0-9a-f]{64}\.png", event["cover_image_url"])
    assert event["cover_alt"] == "The panel on a video call" and event["show_registered_count"] is True
    assert [p["name"] for p in event["speakers"]] == ["Ada Lovelace", "Grace Hopper"], "an empty row is no speaker"
    assert event["speakers"][0]["photo_url"] == ""
    assert re.fullmatch(r"/media/[0-9a-f]{64}\.png", event["speakers"][1]["photo_url"]), "her uploaded photo"
    assert (await client.get(event["cover_image_url"])).status_code == 200

    editor = (await client.get(f"/staff/events/{event_id}")).text
    assert 'value="Ada Lovelace"' in editor and 'value="Grace Hopper"' in editor
    assert re.search(r'name="show_registered_count" value="yes" checked', editor)
    assert "Saved time: <strong>" in editor and (" EST</strong>" in editor or " EDT</strong>" in editor)

    # Removing a speaker and the cover, without touching anything else.
    values = {**form, "cover_alt": "", "s-0-remove": "yes", "remove_cover": "yes", "publish_now": ""}
    values.pop("publish_now")
    saved = await client.post(f"/staff/events/{event_id}", data=values)
    assert saved.status_code == 303, saved.text[-3000:]
    event = await events.get(event_id)
    assert [p["name"] for p in event["speakers"]] == ["Grace Hopper"] and event["cover_image_url"] == ""


async def test_every_error_at_once_next_to_its_field_with_its_label(client, csrf):
    start = next_week_noon()
    form = {**form_for(start, title="", capacity="-3", join_url="meet.example.org",
                       ends_at=start.strftime("%Y-%m-%dT%H:%M")),
            "csrf_token": csrf, "cover_alt": "", "cover_image_url": "",
            **_speaker_rows({"name": "", "role": "Host", "bio": "x" * 700, "photo_url": "ftp://x"})}
    answer = await client.post("/staff/events", data=form, files={
        "cover_file": ("cover.png", b"not a picture", "image/png"),
        "s-0-photo_file": ("me.png", b"nor this", "image/png")})
    assert answer.status_code == 400
    page = answer.text
    summary = re.search(r'<div class="notice" role="alert" id="error-summary".*?</div>', page, re.S).group(0)
    for label in ("Title", "Seats", "Meeting link", "Ends", "Cover picture", "Speaker 1: name", "Speaker 1: short bio",
                  "Speaker 1: photo"):
        assert f">{label}</a>:" in summary, label
    assert "must be after the start" in summary, "a reason names fields in words"
    for name in ("starts_at", "ends_at", "join_url", "capacity", "s-0-name"):
        assert not re.search(rf">{name}</", summary), name
    # Each message sits by its field, which points to it.
    assert re.search(r'id="s-0-name"[^>]*aria-invalid="true" aria-describedby="err-speakers-0-name"', page)
    assert 'id="err-speakers-0-name"' in page and 'id="err-cover_image_url"' in page
    # A field with a hint is described by both, once (a second aria-describedby would be ignored).
    assert re.search(r'id="capacity"[^>]*aria-describedby="cap-hint err-capacity" aria-invalid="true"', page)
    assert re.search(r'id="cover_file"[^>]*aria-describedby="cover-hint err-cover_image_url" aria-invalid="true"', page)
    assert not re.search(r'<[^>]*aria-describedby=[^>]*aria-describedby=', page)
    assert 'value="Host"' in page, "what was typed stays"
    assert (await db.fetch("SELECT COUNT(*) AS n FROM event"))[0]["n"] == 0


async def test_time_zones_common_first_then_canonical_names_only(client, csrf):
    page = (await client.get("/staff/events/new")).text
    common = re.search(r'<optgroup label="Common">(.*?)</optgroup>', page, re.S).group(1)
    names = re.findall(r'<option value="([^"]+)"', common)
    assert names[:5] == ["America/Toronto", "America/New_York", "America/Chicago", "America/Denver",
                         "America/Los_Angeles"]
    assert {"Europe/London", "Europe/Paris", "UTC"} <= set(names)
    every = re.findall(r'<option value="([^"]+)"', re.search(r'<optgroup label="All zones">(.*?)</optgroup>',
                                                               page, re.S).group(1))
    assert "Europe/Helsinki" in every and "Asia/Kolkata" not in every  # common ones are not repeated
    for alias in ("US/Eastern", "Canada/Eastern", "Asia/Calcutta", "Europe/Kiev", "EST5EDT", "Etc/GMT+5"):
        assert alias not in every and alias not in names, alias
    assert len(set(every)) == len(every)


async def test_a_change_that_emails_people_shows_old_and_new_values_first(client, csrf):
    event = await published_event(slug="careers", starts_at="2030-11-29T12:00", ends_at="2030-11-29T13:00",
                                  title="Careers")
    await client.post("/events/careers/register", data={"name": "Ada", "email": "ada@example.org"})
    form = {**form_for(next_week_noon()), "csrf_token": csrf, "title": "Careers beyond academia",
            "starts_at": "2030-11-29T14:00", "ends_at": "2030-11-29T15:00", "timezone": "America/Toronto",
            "slug": "careers", "question_count": "0", "speaker_count": "0", "cover_image_url": "", "cover_alt": ""}
    confirm = await client.post(f"/staff/events/{event['id']}", data=form)
    assert confirm.status_code == 200 and 'data-would-email="1"' in confirm.text
    table = re.search(r'<table id="changes">.*?</table>', confirm.text, re.S).group(0)
    assert "<th scope=\"row\">Title</th><td>Careers</td><td><strong>Careers beyond academia</strong></td>" in table
    assert "Friday 29 November 2030, 12:00 PM EST" in table and "Friday 29 November 2030, 2:00 PM EST" in table
    assert (await events.get(event["id"]))["title"] == "Careers", "nothing saved before confirming"

    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', confirm.text))
    saved = await client.post(f"/staff/events/{event['id']}", data=hidden)
    assert saved.status_code == 303
    row = (await db.fetch("SELECT payload FROM outbox WHERE kind = 'event_changed'"))[0]
    import json

    payload = json.loads(row["payload"]) if isinstance(row["payload"], str) else row["payload"]
    assert payload["before"] == {"when": "Friday 29 November 2030, 12:00–1:00 PM EST", "title": "Careers"}

    # The email says old and new: built from the queued row (whether or not the builder hands the
    # old values on yet, it must build), and its template with them.
    from events_app import settings
    from events_app.mail import render

    row = (await db.fetch("SELECT * FROM outbox WHERE kind = 'event_changed'"))[0]
    built = (await messages.build(row, settings.get())).get_body(("plain",)).get_content()
    assert "Careers beyond academia" in built and "2:00–3:00 PM EST" in built
    changed = await events.get(event["id"])
    context = {"name": "Ada", "event": changed, "when": "Friday 29 November 2030, 2:00–3:00 PM EST",
               "links": {k: "https://x.example/" + k for k in ("site", "events", "event", "manage", "join", "ics")},
               "organizer_name": "Events", "site_host": "x.example", "has_invite": True, "show_join": True,
               "status": "registered", "resend": False, "time_changed": True, "before": payload["before"],
               "changes": ["The time has changed.", "The title has changed.", "The meeting link has changed."]}
    _, text, html = render.render("event_changed", context)
    assert "was: Friday 29 November 2030, 12:00–1:00 PM EST\n  now: Friday 29 November 2030, 2:00–3:00 PM EST" in text
    assert "was: Careers\n  now: Careers beyond academia" in text
    assert "The meeting link has changed." in text and "The time has changed." not in text
    assert "<s>Friday 29 November 2030, 12:00–1:00 PM EST</s>" in html


async def test_cancelling_takes_a_message_shown_on_the_page_and_in_the_email(client, csrf, app):
    event = await published_event(slug="careers")
    await client.post("/events/careers/register", data={"name": "Ada", "email": "ada@example.org"})
    page = (await client.get(f"/staff/events/{event['id']}/cancel")).text
    assert '<label for="cancellation_note">Message to registrants' in page
    await assert_refused(app, client, csrf, {f"/staff/events/{event['id']}/cancel": {"cancellation_note": "x"}})
    assert (await events.get(event["id"]))["status"] == "published"
    too_long = await client.post(f"/staff/events/{event['id']}/cancel",
                                 data={"csrf_token": csrf, "cancellation_note": "x" * 2001})
    assert too_long.status_code == 400 and 'id="err-cancellation_note"' in too_long.text
    assert (await events.get(event["id"]))["status"] == "published"

    note = "Our speakers are unwell.\r\nWe will run it again in the spring."
    done = await client.post(f"/staff/events/{event['id']}/cancel", data={"csrf_token": csrf, "cancellation_note": note})
    assert done.status_code == 303
    cancelled = await events.get(event["id"])
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancellation_note"] == "Our speakers are unwell.\nWe will run it again in the spring."
    assert "We will run it again in the spring." in (await client.get("/events/careers")).text

    from events_app import settings

    row = (await db.fetch("SELECT * FROM outbox WHERE kind = 'event_cancelled'"))[0]
    message = await messages.build(row, settings.get())
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "A message from the organisers:" in text and "We will run it again in the spring." in text
    assert "We will run it again in the spring." in html
