"""The event page's fields in the API (issue 14): cover, its alternative text, speakers and the
shown count, in POST and PATCH and in every answer; a bad one answers 400 naming it (a speaker by
its place), every bad field at once, never 500."""

from __future__ import annotations

import msgspec
from factories import event_data

from events_app.web import responses

SPEAKERS = [
    {"name": "Ada Lovelace", "role": "Implementation lead", "bio": "From a PhD to health services.",
     "photo_url": "https://example.org/ada.jpg"},
    {"name": "Grace Hopper"},
]


async def test_cover_speakers_and_shown_count_are_taken_and_answered(client, auth):
    body = event_data(cover_image_url="https://cdn.example.org/cover.jpg", cover_alt="Three panelists",
                      speakers=SPEAKERS, show_registered_count=True)
    created = await client.post("/api/v1/events", json=body, headers=auth)
    assert created.status_code == 201, created.text
    event = created.json()
    msgspec.convert(event, responses.Event)
    assert event["cover_image_url"] == "https://cdn.example.org/cover.jpg" and event["cover_alt"] == "Three panelists"
    assert event["speakers"] == [SPEAKERS[0], {"name": "Grace Hopper", "role": "", "bio": "", "photo_url": ""}]
    assert event["show_registered_count"] is True and event["cancellation_note"] == ""

    public = (await client.get(f"/api/v1/events/{event['id']}")).json()
    assert public["speakers"] == event["speakers"] and public["show_registered_count"] is True

    media = "/media/" + "0" * 64 + ".png"
    changed = await client.patch(f"/api/v1/events/{event['id']}", headers=auth,
                                 json={"cover_image_url": media, "speakers": [], "show_registered_count": False})
    assert changed.status_code == 200, changed.text
    assert changed.json()["cover_image_url"] == media and changed.json()["speakers"] == []
    assert changed.json()["show_registered_count"] is False
    assert changed.json()["notified"] == 0, "a page-only change emails nobody"


async def test_bad_fields_are_named_all_at_once(client, auth):
    body = event_data(speakers=[{"name": "Ada"}, {"name": " ", "bio": "x" * 601}],
                      cover_image_url="javascript:alert(1)", capacity=-1)
    answer = await client.post("/api/v1/events", json=body, headers=auth)
    assert answer.status_code == 400
    errors = answer.json()["errors"]
    # The typed edge refuses the first; the domain names every one it is given.
    assert set(errors) & {"speakers[1].bio", "speakers", "cover_image_url", "capacity"}


async def test_the_domain_names_each_bad_speaker_and_field_at_once():
    import pytest

    from events_app.domain.errors import ValidationFailed
    from events_app.domain.event_input import clean_fields

    data = event_data(speakers=[{"name": "Ada"}, {"name": " ", "bio": "x" * 601, "photo_url": "ftp://x"}],
                      cover_image_url="javascript:alert(1)", capacity=-1, title="")
    with pytest.raises(ValidationFailed) as caught:
        clean_fields(data)
    assert caught.value.fields == {
        "title": "is required",
        "capacity": "must be between 0 and 1000000",
        "cover_image_url": "must be an http:// or https:// address, or an uploaded image",
        "speakers[1].name": "is required",
        "speakers[1].bio": "must be at most 600 characters",
        "speakers[1].photo_url": "must be an http:// or https:// address, or an uploaded image",
    }


async def test_speaker_limits_and_shapes_answer_400_naming_the_field(client, auth):
    cases = [
        ({"speakers": [{"name": "A"}] * 13}, "speakers"),
        ({"speakers": [{"role": "No name"}]}, "speakers[0].name"),
        ({"speakers": [{"name": "A", "twitter": "@a"}]}, "speakers[0].twitter"),
        ({"speakers": "Ada"}, "speakers"),
        ({"show_registered_count": "yes"}, "show_registered_count"),
        ({"cover_alt": "two\nlines"}, "cover_alt"),
        ({"cover_image_url": "/media/../../etc/passwd"}, "cover_image_url"),
    ]
    for extra, field in cases:
        answer = await client.post("/api/v1/events", json=event_data(**extra), headers=auth)
        assert answer.status_code == 400, (extra, answer.text)
        assert field in answer.json()["errors"], (extra, answer.json())


async def test_the_document_describes_the_new_fields(client):
    document = (await client.get("/schema/openapi.json")).json()
    schemas = document["components"]["schemas"]
    properties = schemas["EventIn"]["properties"]
    assert {"cover_image_url", "cover_alt", "speakers", "show_registered_count"} <= set(properties)
    assert "SpeakerIn" in schemas and schemas["SpeakerIn"]["required"] == ["name"]
    assert {"speakers", "show_registered_count", "cancellation_note"} <= set(schemas["Event"]["properties"])
