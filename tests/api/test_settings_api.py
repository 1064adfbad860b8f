"""GET and PATCH /api/v1/settings: the organisation's identity, staff only, every bad field at
once, an audit entry and a new version per change, and what the document says of them."""

from __future__ import annotations

import io

import pytest

from events_app.domain import audit, identity


async def _reset() -> None:
    identity.forget()


async def test_staff_read_the_defaults_before_anything_is_stored(client, auth):
    try:
        answer = await client.get("/api/v1/settings", headers=auth)
        assert answer.status_code == 200
        assert answer.json() == {
            "organisation_name": "Events",
            "logo_url": "",
            "accent_colour": identity.DEFAULT_ACCENT,
            "website": "",
            "reply_to": "",
            "postal_address": "",
            "version": 0,
        }
    finally:
        await _reset()


async def test_settings_need_a_staff_token(client):
    from events_app.tables import OrgSettings

    assert (await client.get("/api/v1/settings")).status_code == 401
    refused = await client.patch("/api/v1/settings", json={"organisation_name": "X"})
    assert refused.status_code == 401
    assert (await client.get("/api/v1/settings", headers={"Authorization": "Bearer nope"})).status_code == 401
    # The refused change stored nothing: no settings row, and the name people see is the default.
    assert await OrgSettings.count() == 0
    identity.forget()
    assert (await identity.load()).name == "Events"


async def test_a_change_is_stored_cleaned_versioned_and_audited(client, auth):
    try:
        answer = await client.patch(
            "/api/v1/settings",
            headers=auth,
            json={
                "organisation_name": "  Implementation   Science Centre ",
                "accent_colour": "#1A4D2E",
                "website": "https://example.org/",
                "reply_to": "Hello@Example.org",
                "postal_address": "100 College Street\r\n\r\nToronto ON M5G 1L5\nCanada\n",
            },
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["organisation_name"] == "Implementation Science Centre"
        assert body["accent_colour"] == "#1a4d2e"
        assert body["reply_to"] == "hello@example.org"
        assert body["postal_address"] == "100 College Street\nToronto ON M5G 1L5\nCanada"
        assert body["version"] == 1
        assert identity.snapshot().name == "Implementation Science Centre"
        # Another process reads it from the database.
        identity.forget()
        assert (await identity.load()).website == "https://example.org/"
        entries = await audit.recent()
        assert entries[0]["action"] == "settings.change"
        assert "Organisation name" in entries[0]["summary"] and "Implementation Science Centre" in entries[0]["summary"]
        # A second change grows the version; sending the same values changes nothing.
        again = await client.patch("/api/v1/settings", headers=auth, json={"website": "https://example.com"})
        assert again.json()["version"] == 2 and again.json()["organisation_name"] == "Implementation Science Centre"
        same = await client.patch("/api/v1/settings", headers=auth, json={"website": "https://example.com"})
        assert same.json()["version"] == 2
        assert [e["action"] for e in await audit.recent()].count("settings.change") == 2
        # "" or null restores a default.
        reset = await client.patch("/api/v1/settings", headers=auth, json={"organisation_name": "", "website": None})
        assert reset.json()["organisation_name"] == "Events" and reset.json()["website"] == ""
        assert (await client.get("/api/v1/settings", headers=auth)).json() == reset.json()
    finally:
        await _reset()


async def test_every_bad_field_is_named_at_once_in_plain_words(client, auth):
    try:
        answer = await client.patch(
            "/api/v1/settings",
            headers=auth,
            json={
                "accent_colour": "#ffdd00",
                "website": "ftp://example.org",
                "reply_to": "not an address",
                "organisation_name": "Two\nlines",
                "logo_url": "javascript:alert(1)",
                "postal_address": "\n".join(f"line {n}" for n in range(12)),
            },
        )
        assert answer.status_code == 400
        errors = answer.json()["errors"]
        assert set(errors) == {
            "accent_colour",
            "website",
            "reply_to",
            "organisation_name",
            "logo_url",
            "postal_address",
        }, errors
        assert "too light" in errors["accent_colour"] and "4.5:1" in errors["accent_colour"]
        assert "http://" in errors["website"]
        assert "email address" in errors["reply_to"]
        assert "single line" in errors["organisation_name"]
        assert "at most 8 lines" in errors["postal_address"]
        # Nothing was stored.
        assert (await client.get("/api/v1/settings", headers=auth)).json()["version"] == 0
    finally:
        await _reset()


@pytest.mark.parametrize(
    ("given", "accepted"),
    [
        ("#0b5cad", True),
        ("#000000", True),
        ("#767676", False),  # 4.54:1 on white but 4.2:1 on the light-grey header
        ("#6b6b6b", True),
        ("#ffffff", False),
        ("#f5a623", False),
        ("0b5cad", True),
        ("#abc", False),
        ("#123", True),
        ("blue", False),
        ("#12345g", False),
    ],
)
async def test_the_accent_colour_must_keep_white_text_and_links_readable(client, auth, given, accepted):
    try:
        answer = await client.patch("/api/v1/settings", headers=auth, json={"accent_colour": given})
        assert (answer.status_code == 200) is accepted, answer.text
        if accepted:
            chosen = answer.json()["accent_colour"]
            assert min(identity.contrast(chosen, bg) for bg in identity.PAGE_BACKGROUNDS) >= 4.5
    finally:
        await _reset()


async def test_shapes_are_refused_by_the_schema_naming_the_field(client, auth):
    for body, field in [
        ({"organisation_name": 5}, "organisation_name"),
        ({"postal_address": "x" * 501}, "postal_address"),
        ({"colour": "#000000"}, "colour"),
    ]:
        answer = await client.patch("/api/v1/settings", headers=auth, json=body)
        assert answer.status_code == 400, body
        assert field in answer.json()["errors"], answer.json()


async def test_a_logo_may_be_an_uploaded_picture_or_an_outside_address(client, auth):
    from PIL import Image

    from events_app.domain import images

    out = io.BytesIO()
    Image.new("RGB", (120, 40), (11, 92, 173)).save(out, "PNG")
    try:
        url = await images.store(out.getvalue(), field="logo")
        answer = await client.patch("/api/v1/settings", headers=auth, json={"logo_url": url})
        assert answer.status_code == 200 and answer.json()["logo_url"] == url
        outside = await client.patch(
            "/api/v1/settings", headers=auth, json={"logo_url": "https://cdn.example.org/logo.svg"}
        )
        assert outside.status_code == 200
        bad = await client.patch("/api/v1/settings", headers=auth, json={"logo_url": "/media/../../etc/passwd"})
        assert bad.status_code == 400 and "logo_url" in bad.json()["errors"]
        # Pages load pictures from this site or over https only (their Content-Security-Policy).
        plain = await client.patch("/api/v1/settings", headers=auth, json={"logo_url": "http://cdn.example.org/l.png"})
        assert plain.status_code == 400 and "https://" in plain.json()["errors"]["logo_url"]
    finally:
        await _reset()


async def test_the_document_names_the_settings_bodies_and_answers(client):
    document = (await client.get("/schema/openapi.json")).json()
    operation = document["paths"]["/api/v1/settings"]
    assert operation["get"]["operationId"] == "settings_show"
    assert operation["patch"]["operationId"] == "settings_change"
    assert operation["patch"]["security"] == [{"BearerToken": []}]
    change = document["components"]["schemas"]["OrganisationChange"]
    assert change["additionalProperties"] is False
    ok = operation["patch"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/Organisation")
