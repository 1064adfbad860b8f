"""Public pages from the cache: ETag, 304, and never a stale page after a change, whichever
process made it (web/cache.py)."""

from __future__ import annotations

import httpx

from events_app import db
from factories import published_event
from server import running_server

PAGES = ("/events/careers", "/events/careers.ics", "/events", "/calendar.ics")


async def test_every_public_page_has_an_etag_and_answers_304_to_it(client):
    await published_event(slug="careers", title="Non-Academic Careers with Impact")
    for path in PAGES:
        first = await client.get(path)
        assert first.status_code == 200 and "Careers with Impact" in first.text.replace("\r\n ", "")
        tag = first.headers["etag"]
        assert tag.startswith('W/"')
        again = await client.get(path, headers={"If-None-Match": tag})
        assert again.status_code == 304, path
        assert again.content == b"" and again.headers["etag"] == tag
        # The cached copy is the same page as the first rendering.
        assert (await client.get(path)).content == first.content
        other = await client.get(path, headers={"If-None-Match": 'W/"something-else"'})
        assert other.status_code == 200 and other.content == first.content


async def test_a_change_through_the_api_gives_a_new_page_and_etag(client, auth):
    event = await published_event(slug="careers", title="Old title")
    before = {path: (await client.get(path)).headers["etag"] for path in PAGES}
    answer = await client.patch(f"/api/v1/events/{event['id']}", json={"title": "New title"}, headers=auth)
    assert answer.status_code == 200
    for path in PAGES:
        page = await client.get(path, headers={"If-None-Match": before[path]})
        assert page.status_code == 200, f"{path} answered 304 for content that changed"
        assert "New title" in page.text and "Old title" not in page.text
        assert page.headers["etag"] != before[path]


async def test_seats_taken_change_the_event_page(client):
    event = await published_event(slug="careers", capacity=3)
    first = await client.get("/events/careers")
    assert "3 seats left" in first.text
    await client.post(f"/api/v1/events/{event['id']}/registrations", json={"name": "Ada", "email": "ada@example.org"})
    page = await client.get("/events/careers", headers={"If-None-Match": first.headers["etag"]})
    assert page.status_code == 200 and "2 seats left" in page.text


async def test_a_change_made_elsewhere_is_seen_at_once(client):
    """Another process changing the row (here: SQL behind this process's back) raises the
    version; the next request reads the new key and never serves the kept page."""
    await published_event(slug="careers", title="Old title")
    old = await client.get("/events/careers")
    await db.fetch("UPDATE event SET title = 'Renamed elsewhere', version = version + 1 WHERE slug = 'careers'")
    page = await client.get("/events/careers", headers={"If-None-Match": old.headers["etag"]})
    assert page.status_code == 200 and "Renamed elsewhere" in page.text
    await db.fetch("UPDATE event SET status = 'draft', version = version + 1 WHERE slug = 'careers'")
    assert (await client.get("/events/careers")).status_code == 404
    assert "Renamed elsewhere" not in (await client.get("/events")).text


async def test_two_processes_agree_on_etags_and_see_each_others_changes(client, auth):
    event = await published_event(slug="careers", title="Old title")
    here = await client.get("/events/careers")
    with running_server() as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as other:
            there = await other.get("/events/careers")
            assert there.headers["etag"] == here.headers["etag"]
            assert (
                await other.get("/events/careers", headers={"If-None-Match": here.headers["etag"]})
            ).status_code == 304
            # The other process changes the event; this one shows it at once, and back.
            answer = await other.patch(f"/api/v1/events/{event['id']}", json={"title": "Changed there"}, headers=auth)
            assert answer.status_code == 200
            mine = await client.get("/events/careers", headers={"If-None-Match": here.headers["etag"]})
            assert mine.status_code == 200 and "Changed there" in mine.text
            theirs = await other.get("/events/careers")
            assert theirs.headers["etag"] == mine.headers["etag"]


async def test_the_page_follows_the_clock_when_registration_closes(client):
    """Closing time passing changes no row and no version; the key's state still moves (here
    the closing time is moved into the past behind the version's back, as time would)."""
    from datetime import datetime, timedelta, timezone

    event = await published_event(slug="careers")
    open_page = await client.get("/events/careers")
    assert 'action="/events/careers/register"' in open_page.text
    past = datetime.now(timezone.utc) - timedelta(minutes=1)
    await db.fetch("UPDATE event SET registration_closes_at = {} WHERE id = {}", past, event["id"])
    page = await client.get("/events/careers", headers={"If-None-Match": open_page.headers["etag"]})
    assert page.status_code == 200 and "Registration closed" in page.text
    assert 'action="/events/careers/register"' not in page.text


async def test_the_fast_path_answers_hits_as_the_route_does_and_passes_everything_else_on(app, auth):
    """web/public.py CachedPages in front of routing: a kept page, its 304 and its .ics go out
    byte for byte and header for header as through the route (security headers and HEAD
    included, Edge still wraps it); a miss, an unknown slug, a draft, a POST and other paths go
    on to Litestar; a change is seen by the next request through it."""
    from events_app.web.public import CachedPages

    app.asgi_handler.app = CachedPages(app.asgi_handler.app)
    passed: list[str] = []
    inner = app.asgi_handler.app.app

    async def watching(scope, receive, send):
        passed.append(f"{scope['method']} {scope['path']}")
        await inner(scope, receive, send)

    app.asgi_handler.app.app = watching
    event = await published_event(slug="careers", title="Old title", capacity=5)
    await published_event(slug="hidden", status="draft")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as fast:
        for path in ("/events/careers", "/events/careers.ics"):
            first = await fast.get(path)  # a miss: rendered by the route, and kept
            assert passed[-1] == f"GET {path}"
            passed.clear()
            again = await fast.get(path)
            assert passed == [], f"{path}: a kept page went through routing"
            assert again.content == first.content and dict(again.headers) == dict(first.headers)
            head = await fast.head(path)
            assert head.content == b"" and head.headers["etag"] == first.headers["etag"]
            assert head.headers["content-length"] == first.headers["content-length"]
            not_modified = await fast.get(path, headers={"If-None-Match": first.headers["etag"]})
            assert not_modified.status_code == 304 and not_modified.content == b""
            assert "content-security-policy" in not_modified.headers
        for method, path in (
            ("GET", "/events/nothing"),
            ("GET", "/events/hidden"),
            ("POST", "/events/careers"),
            ("GET", "/events/careers/registered"),
            ("GET", "/events"),
        ):
            passed.clear()
            answer = await fast.request(method, path)
            assert passed == [f"{method} {path}"]
            assert answer.status_code in (200, 303, 404, 405), (method, path, answer.status_code)
        tag = (await fast.get("/events/careers")).headers["etag"]
        await db.fetch("UPDATE event SET title = 'New title', version = version + 1 WHERE id = {}", event["id"])
        page = await fast.get("/events/careers", headers={"If-None-Match": tag})
        assert page.status_code == 200 and "New title" in page.text and page.headers["etag"] != tag
