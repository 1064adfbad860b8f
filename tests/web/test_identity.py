"""The organisation's identity in the workspace's Settings page and on every page: header, title,
accent colour, footer, favicon; fresh whichever process changed it, and never a stale cached page."""

from __future__ import annotations

import io
import re
import struct
import zlib

from conftest import STAFF_EMAIL, STAFF_PASSWORD
from PIL import Image

from events_app import db
from events_app.domain import audit, identity

GOOD = {
    "organisation_name": "Implementation Science Centre",
    "accent_colour": "#1a4d2e",
    "website": "https://example.org",
    "reply_to": "events@example.org",
    "postal_address": "100 College Street\nToronto ON M5G 1L5\nCanada",
}


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def sign_in(client) -> str:
    """Sign in through the form (the `member` fixture made the account); the session's CSRF token."""
    token = csrf_of((await client.get("/staff/login")).text)
    answer = await client.post(
        "/staff/login", data={"csrf_token": token, "email": STAFF_EMAIL, "password": STAFF_PASSWORD}
    )
    assert answer.status_code == 303
    return csrf_of((await client.get("/staff/settings")).text)


def png(size=(240, 80), colour=(11, 92, 173)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    data = png((1, 1))
    chunk = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return data[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF) + data[33:]


async def save(client, csrf: str, data: dict, logo: tuple | None = None):
    files = {"logo": logo or ("", b"", "application/octet-stream")}
    return await client.post("/staff/settings", data={"csrf_token": csrf, **data}, files=files)


def error_next_to(html: str, field: str) -> str:
    found = re.search(rf'<p class="error" id="err-{field}">([^<]*)</p>', html)
    assert found, f"no error shown for {field}"
    return found.group(1)


async def test_the_settings_page_needs_a_session_and_is_in_the_workspace_menu(client, member):
    try:
        stranger = await client.get("/staff/settings")
        assert stranger.status_code == 303 and stranger.headers["location"].startswith("/staff/login")
        await sign_in(client)
        answer = await client.get("/staff/settings")
        assert answer.status_code == 200
        assert '<a href="/staff/settings" aria-current="page">Settings</a>' in answer.text
        for label in ("Organisation name", "Logo", "Accent colour", "Website", "Reply-to address", "Postal address"):
            assert f">{label}</label>" in answer.text
        assert 'enctype="multipart/form-data"' in answer.text
        # The default name is offered as the placeholder, and the title names the organisation.
        assert 'placeholder="Events"' in answer.text
        assert "<title>Settings – Staff · Events</title>" in answer.text
    finally:
        identity.forget()


async def test_saving_shows_the_identity_on_public_pages_and_in_the_favicon(client, member):
    try:
        csrf = await sign_in(client)
        before = await client.get("/events")
        answer = await save(client, csrf, GOOD, ("logo.png", png(), "image/png"))
        assert answer.status_code == 303 and answer.headers["location"] == "/staff/settings?done=saved"
        shown = await client.get(answer.headers["location"])
        assert 'role="status">Settings saved.' in shown.text
        assert 'value="Implementation Science Centre"' in shown.text
        page = await client.get("/events")
        assert page.status_code == 200
        assert page.headers["etag"] != before.headers["etag"], "the cached list must not outlive the change"
        html = page.text
        assert "<title>Events · Implementation Science Centre</title>" in html
        logo = re.search(r'<a class="brand" href="/events"><img src="(/media/[0-9a-f]{64}\.png)" alt="([^"]+)">', html)
        assert logo and logo.group(2) == "Implementation Science Centre"
        assert (await client.get(logo.group(1))).status_code == 200
        assert "--accent:#1a4d2e;" in html and '<meta name="theme-color" content="#1a4d2e">' in html
        assert '<a href="https://example.org">example.org</a>' in html
        assert "<address>100 College Street<br>Toronto ON M5G 1L5<br>Canada</address>" in html
        assert re.search(r'<link rel="icon" href="/favicon\.svg\?v=\d+" type="image/svg\+xml">', html)
        assert '<meta name="description" content="' in html
        icon = await client.get("/favicon.svg")
        assert icon.headers["content-type"].startswith("image/svg+xml")
        assert 'fill="#1a4d2e"' in icon.text and ">I</text>" in icon.text
        assert (await client.get("/favicon.ico")).content == icon.content
        entries = [e for e in await audit.recent() if e["action"] == "settings.change"]
        assert len(entries) == 1 and "Accent colour" in entries[0]["summary"]
        # The error page wears it too.
        missing = await client.get("/events/no-such-event")
        assert missing.status_code == 404 and "<title>Not found · Implementation Science Centre</title>" in missing.text
    finally:
        identity.forget()


async def test_every_error_at_once_next_to_its_field_with_its_label(client, member):
    try:
        csrf = await sign_in(client)
        answer = await save(
            client,
            csrf,
            {**GOOD, "accent_colour": "#ffdd00", "website": "example.org", "reply_to": "nobody"},
            ("logo.pdf", b"%PDF-1.4 a document", "application/pdf"),
        )
        assert answer.status_code == 400
        html = answer.text
        assert error_next_to(html, "accent_colour").startswith("Accent colour is too light")
        assert error_next_to(html, "website").startswith("Website must be an http:// or https:// address")
        assert error_next_to(html, "reply_to").startswith("Reply-to address must be an email address")
        assert error_next_to(html, "logo").startswith("Logo must be a picture in JPEG, PNG, WebP or GIF format")
        assert "Please correct 4 fields" in html
        for field in ("accent_colour", "website", "reply_to", "logo"):
            assert f'<a href="#{field}">' in html
            assert re.search(rf'id="{field}"[^>]*aria-describedby="{field}-hint err-{field}" aria-invalid="true"', html)
        # What was typed is shown again; nothing was stored.
        assert 'value="#ffdd00"' in html and 'value="Implementation Science Centre"' in html
        assert (await identity.stored())["organisation_name"] == ""
        assert identity.snapshot().name == "Events"
    finally:
        identity.forget()


async def test_a_logo_that_is_not_a_usable_picture_is_refused_naming_the_logo(client, member):
    whole = io.BytesIO()
    Image.new("RGB", (600, 400), (200, 10, 10)).save(whole, "JPEG", quality=95)
    cases = {
        "a text file": (b"hello", "must be a picture"),
        "a huge picture": (png_claiming(50_000, 50_000), "too many pixels"),
        "a truncated file": (whole.getvalue()[: len(whole.getvalue()) // 2], "damaged or cut short"),
    }
    try:
        csrf = await sign_in(client)
        for name, (data, words) in cases.items():
            answer = await save(client, csrf, GOOD, ("logo.png", data, "image/png"))
            assert answer.status_code == 400, name
            reason = error_next_to(answer.text, "logo")
            assert reason.startswith("Logo ") and words in reason, (name, reason)
        assert (await identity.stored())["logo_url"] == ""
    finally:
        identity.forget()


async def test_an_accepted_logo_is_kept_while_another_field_is_corrected(client, member):
    try:
        csrf = await sign_in(client)
        refused = await save(client, csrf, {**GOOD, "accent_colour": "#eeeeee"}, ("logo.png", png(), "image/png"))
        assert refused.status_code == 400
        pending = re.search(r'name="pending_logo" value="(/media/[0-9a-f]{64}\.png)"', refused.text)
        assert pending, "the accepted logo should travel with the form"
        fixed = await save(client, csrf, {**GOOD, "pending_logo": pending.group(1)})
        assert fixed.status_code == 303
        assert (await identity.stored())["logo_url"] == pending.group(1)
        # Removing it: the name is shown alone.
        removed = await save(client, csrf, {**GOOD, "remove_logo": "yes"})
        assert removed.status_code == 303 and (await identity.stored())["logo_url"] == ""
        assert '<a class="brand" href="/events">Implementation Science Centre</a>' in (await client.get("/events")).text
    finally:
        identity.forget()


async def test_the_form_needs_its_csrf_token(client, member):
    try:
        await sign_in(client)
        answer = await client.post("/staff/settings", data=GOOD, files={"logo": ("", b"", "application/octet-stream")})
        assert answer.status_code == 403
        assert (await identity.stored())["organisation_name"] == ""
    finally:
        identity.forget()


async def test_a_change_made_by_another_process_shows_with_a_new_etag(client, monkeypatch):
    try:
        first = await client.get("/events")
        assert "<title>Events</title>" in first.text  # the default name is the page title already
        # Another process changed the row: this one learns it at its next check.
        await identity.update({"organisation_name": "Centre A"})
        identity.forget()
        await identity.load()
        await db.fetch("UPDATE org_settings SET organisation_name = {}, version = version + 1", "Centre B")
        monkeypatch.setattr(identity, "FRESH_SECONDS", 0.0)
        page = await client.get("/events", headers={"If-None-Match": first.headers["etag"]})
        assert page.status_code == 200 and "<title>Events · Centre B</title>" in page.text
        assert '<a class="brand" href="/events">Centre B</a>' in page.text
        again = await client.get("/events", headers={"If-None-Match": page.headers["etag"]})
        assert again.status_code == 304
    finally:
        identity.forget()


async def test_an_unreadable_database_keeps_the_last_identity_without_an_error(monkeypatch):
    try:
        await identity.update({"organisation_name": "Kept Centre"})

        async def away(sql, *args):
            raise ConnectionRefusedError("database away")

        monkeypatch.setattr(db, "fetch", away)
        monkeypatch.setattr(identity, "FRESH_SECONDS", 0.0)
        assert (await identity.fresh()).name == "Kept Centre"
        identity.forget()
        assert (await identity.fresh()).name == "Events"  # the first defaults, not an error
    finally:
        identity.forget()


async def test_a_stored_colour_that_is_not_a_plain_colour_never_reaches_the_css(client):
    try:
        await identity.update({"organisation_name": "Centre"})
        await db.fetch("UPDATE org_settings SET accent_colour = {}, version = version + 1", "red}x{")
        identity.forget()
        html = (await client.get("/events")).text
        assert f"--accent:{identity.DEFAULT_ACCENT};" in html and "red}x{" not in html
    finally:
        identity.forget()


async def test_a_page_title_naming_the_organisation_already_is_not_doubled(client):
    from factories import published_event

    try:
        await identity.update({"organisation_name": "Centre"})
        event = await published_event(slug="careers", title="Careers")
        html = (await client.get(f"/events/{event['slug']}")).text
        title = re.search(r"<title>([^<]*)</title>", html)
        assert title and title.group(1).endswith(" · Centre") and title.group(1).count("Centre") == 1
    finally:
        identity.forget()


async def test_a_change_made_in_another_process_reaches_a_running_server_by_itself():
    """A real server process, and the change made here (another process): its pages show the
    new name after its next check (at most about a second later), with no restart and no signal."""
    import asyncio
    import time

    import httpx
    from server import running_server

    try:
        with running_server() as base:
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                first = await http.get("/events")
                assert first.status_code == 200 and "Centre Elsewhere" not in first.text
                await identity.update({"organisation_name": "Centre Elsewhere", "accent_colour": "#5b2a86"})
                deadline = time.monotonic() + 15
                while True:
                    page = await http.get("/events", headers={"If-None-Match": first.headers["etag"]})
                    if page.status_code == 200 and "<title>Events · Centre Elsewhere</title>" in page.text:
                        break
                    assert time.monotonic() < deadline, "the server never showed the new name"
                    await asyncio.sleep(0.2)
                assert "--accent:#5b2a86;" in page.text and page.headers["etag"] != first.headers["etag"]
    finally:
        identity.forget()


async def test_a_wide_logo_is_shown_from_its_phone_width_copy(client, member):
    from events_app.domain import images

    try:
        csrf = await sign_in(client)
        assert (await save(client, csrf, GOOD, ("wide.png", png((2400, 300)), "image/png"))).status_code == 303
        stored = (await identity.stored())["logo_url"]
        (small, width), (original, _) = await images.variants(stored)
        assert width == 800 and original == stored
        html = (await client.get("/events")).text
        assert f'<img src="{small}" alt="Implementation Science Centre">' in html
        identity.forget()  # another process loading it finds the same copy
        await identity.load()
        assert identity.snapshot().logo_small_url == small
    finally:
        identity.forget()
