"""The event page from its frame (web/present.py `render_event_page`): the whole template is
rendered once per event version, identity, state, full or not and cover, with stand-ins where
the state badge and the registered count go; a request renders those two and joins. Whatever
the event holds and whatever its seats, the page is byte for byte the page the template renders
whole from nothing, and a change by this process or another (event, seats, identity) is on the
next page."""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from factories import published_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2 import DictLoader, Environment

from events_app import db
from events_app import settings as app_settings
from events_app.domain import events, identity
from events_app.web import cache, present
from events_app.web.public import page_context


@pytest.fixture(autouse=True)
def uncached(monkeypatch):
    """Every GET renders the page (as bench/serve_uncached.py serves it), frames start empty."""
    monkeypatch.setattr(cache, "ENABLED", False)
    present._FRAMES.clear()
    present._PARTS.clear()


async def _reference(app, slug: str) -> bytes:
    """The page as the template renders it whole, from pieces built anew."""
    present._PARTS.clear()
    key = await events.page_key(slug)
    assert key is not None
    event = await events.get(key["id"])
    template = app.template_engine.get_template("events/detail.html")
    return template.render(**await page_context(event), request=None, csrf_input="").encode()


async def _set_taken(slug: str, taken: int) -> None:
    await db.fetch("UPDATE event SET taken = {} WHERE slug = {}", taken, slug)


@contextlib.contextmanager
def _counting():
    """Whether each frame build gave a frame, in order."""
    built: list = []
    real = present._build_frame

    def counted(template, context):
        frame = real(template, context)
        built.append(frame is not None)
        return frame

    present._build_frame = counted
    try:
        yield built
    finally:
        present._build_frame = real


_line = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=40).filter(
    lambda s: s.strip()
)
_tricky = st.sampled_from(
    [
        "</script><script>alert(1)</script>",
        "\"quoted\" & 'single'",
        "<!--",
        "]]>",
        "{{ 1 }}",
        "{% raw %}",
        "Ünïcödé — 日本語 🎉",
        "a\\u003cb",
        "x & y < z > w",
        "registered",
    ]
)
_text = st.lists(st.one_of(_tricky, _line), min_size=1, max_size=3).map(" ".join).map(str.strip).filter(bool)
_speaker = st.fixed_dictionaries(
    {"name": _text.map(lambda s: s[:80])},
    optional={"role": _text.map(lambda s: s[:80]), "bio": _text, "photo_url": st.just("https://example.org/p.jpg")},
)
# Seats scenarios: (capacity, the seats taken shown one after another with the version unchanged).
_SEATS = {
    "open": (40, [0, 7, 38]),
    "one left then full": (3, [2, 3, 1]),
    "full then waitlist": (2, [2, 2, 0]),
    "unlimited": (None, [0, 1, 250]),
}
_STATES = ["open", "cancelled", "past", "closed"]
_SLUGS = itertools.count()


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    title=_text.map(lambda s: s[:150]),
    summary=st.one_of(st.just(""), _text.map(lambda s: s[:300])),
    description=st.lists(
        st.one_of(_tricky, _line, st.just("**bold** and [a link](https://example.org)")), max_size=4
    ).map("\n\n".join),
    audience=st.one_of(st.just(""), _text.map(lambda s: s[:150])),
    speakers=st.lists(_speaker, max_size=2),
    zone=st.sampled_from(["UTC", "America/Toronto", "Asia/Kolkata", "Pacific/Chatham", "Europe/London"]),
    seats=st.sampled_from(sorted(_SEATS)),
    state=st.sampled_from(_STATES),
    show_count=st.booleans(),
    note=st.one_of(st.just(""), _text.map(lambda s: s[:300])),
)
async def test_the_page_from_its_frame_is_the_page_rendered_whole(
    client, app, title, summary, description, audience, speakers, zone, seats, state, show_count, note
):
    present._FRAMES.clear()
    slug = f"frame-{next(_SLUGS)}"
    capacity, taken_steps = _SEATS[seats]
    now = datetime.now(UTC).replace(microsecond=0)
    starts = now - timedelta(days=3) if state == "past" else now + timedelta(days=5)
    fields = dict(
        slug=slug,
        title=title,
        summary=summary,
        description=description,
        audience=audience,
        speakers=speakers,
        timezone=zone,
        capacity=capacity,
        show_registered_count=show_count,
        starts_at=starts.isoformat(),
        ends_at=(starts + timedelta(hours=2)).isoformat(),
    )
    if state == "closed":
        fields["registration_closes_at"] = (now - timedelta(hours=1)).isoformat()
    event = await published_event(**fields)
    if state == "cancelled":
        await events.cancel(event["id"], note=note)
    fullness = set()
    with _counting() as built:
        for taken in taken_steps:
            await _set_taken(slug, taken)
            answer = await client.get(f"/events/{slug}")
            assert answer.status_code == 200
            assert answer.content == await _reference(app, slug), (state, seats, taken)
            fullness.add(capacity is not None and taken >= capacity)
    # Every page came from a frame, one per fullness: seats alone render no whole template.
    assert built == [True] * len(fullness), built


async def test_seats_taken_by_another_process_show_on_the_next_page(client, app):
    """The frame holds no count: seats taken and a new title from another connection (a raw
    commit, as another process makes) are on the very next page."""
    cfg = app_settings.get()
    await published_event(slug="seen", capacity=10, show_registered_count=True)
    first = (await client.get("/events/seen")).text
    assert "10 seats left" in first and "0 registered" in first

    async def raw(sql_sqlite: str, sql_pg: str) -> None:
        if cfg.is_sqlite:
            conn = sqlite3.connect(cfg.sqlite_path, timeout=10)
            try:
                conn.execute(sql_sqlite)
                conn.commit()
            finally:
                conn.close()
        else:
            import asyncpg

            conn = await asyncpg.connect(cfg.database_url)
            try:
                await conn.execute(sql_pg)
            finally:
                await conn.close()

    await raw(*["UPDATE event SET taken = 9 WHERE slug = 'seen'"] * 2)
    page = (await client.get("/events/seen")).content
    assert b"1 seat left" in page and b"9 registered" in page
    assert page == await _reference(app, "seen")
    await raw(*["UPDATE event SET taken = 10, title = 'Renamed', version = version + 1 WHERE slug = 'seen'"] * 2)
    page = (await client.get("/events/seen")).content
    assert b"Full \xe2\x80\x93 waitlist open" in page and b"<h1>Renamed</h1>" in page
    assert page == await _reference(app, "seen")


async def test_a_settings_change_gives_the_frame_of_the_new_identity(client, app):
    """The organisation's name, colour, website and address are in every frame: a change shows
    on the next page, and going back gives the first page again, never a frame of the other."""
    await published_event(slug="org", capacity=5)
    first = (await client.get("/events/org")).content
    assert first == await _reference(app, "org")
    await identity.update(
        {
            "organisation_name": "Centre Two",
            "accent_colour": "#5b2a86",
            "website": "https://two.example.org",
            "postal_address": "1 Main St\nTown",
        }
    )
    second = (await client.get("/events/org")).content
    assert b"Centre Two" in second and b"#5b2a86" in second and b"1 Main St" in second
    assert second == await _reference(app, "org")
    await identity.update({"organisation_name": "", "accent_colour": "", "website": "", "postal_address": ""})
    third = (await client.get("/events/org")).content
    assert b"Centre Two" not in third and b"1 Main St" not in third
    assert third == await _reference(app, "org")
    # Only the favicon's version differs from the first page (the identity was stored since).
    assert third.replace(b"?v=2", b"?v=0") == first


async def test_a_cover_and_its_sizes_are_in_the_frame(client, app):
    """The cover (its picture, phone-width copies, text) is part of the page's frame."""
    import io

    from PIL import Image

    from events_app.domain import images

    out = io.BytesIO()
    Image.new("RGB", (2000, 1000), (20, 90, 160)).save(out, "JPEG")
    url = await images.store(out.getvalue(), field="cover")
    await published_event(slug="covered", capacity=3, cover_image_url=url, cover_alt='A "blue" <picture>')
    for taken in (0, 1, 3):
        await _set_taken("covered", taken)
        page = (await client.get("/events/covered")).content
        assert url.encode() in page and b"srcset=" in page
        assert page == await _reference(app, "covered")


async def test_an_identity_changed_while_the_page_was_built_keeps_no_frame(client, app):
    """The pieces were built for one identity and the template would print another (a settings
    change between the two): that page is rendered whole and no frame is kept for it."""
    await published_event(slug="race", capacity=5)
    key = await events.page_key("race")
    event = await events.for_page(key)
    context = await page_context(event)
    await identity.update({"organisation_name": "Changed Meanwhile"})
    template = app.template_engine.get_template("events/detail.html")
    body = present.render_event_page(template, context)
    assert body == template.render(**context, request=None, csrf_input="").encode()
    assert not present._FRAMES
    await identity.update({"organisation_name": ""})
    assert (await client.get("/events/race")).content == await _reference(app, "race")


async def test_a_form_shown_again_is_rendered_whole(client, app):
    """A refused registration shows what was typed: no frame stands for it."""
    await published_event(slug="form", capacity=5)
    answer = await client.post("/events/form/register", data={"name": "", "email": "not-an-address"})
    assert answer.status_code == 400 and "not-an-address" in answer.text
    assert not present._FRAMES


def _tiny(body: str):
    env = Environment(
        loader=DictLoader(
            {"page.html": body, "_macros.html": "{% macro state_badge(c) %}[{{ c.state }}]{% endmacro %}"}
        ),
        autoescape=True,
    )
    return env.get_template("page.html")


_CONTEXT = {
    "errors": {},
    "notice": None,
    "values": {"answers": {}},
    "cover": None,
    "links": None,
    "state": "open",
    "full": False,
    "seats_left": 3,
    "registered": 4,
    "event": {"title": "x"},
}


def test_a_template_that_compares_a_count_is_rendered_whole():
    """A slot only prints: a template that does more with the count never gets a frame."""
    template = _tiny("{% if registered > 3 %}many{% endif %} {{ registered }}")
    assert present._build_frame(template, _CONTEXT) is None


def test_a_mark_the_slots_did_not_print_is_no_frame():
    """Text holding a slot's mark (it cannot by chance: a NUL and 128 random bits) is no frame."""
    forged = f"\x00{present._NONCE}:registered\x00"
    template = _tiny("{{ badge }} {{ registered }} {{ event.title }}")
    assert present._build_frame(template, {**_CONTEXT, "event": {"title": present.Markup(forged)}}) is None
    frame = present._build_frame(template, _CONTEXT)
    assert frame is not None and frame[1] == ("badge", "registered")


async def test_a_miss_reads_the_page_key_once(client, monkeypatch):
    """CachedPages reads the key in front of routing; the route renders from that read."""
    await published_event(slug="once", capacity=5)
    reads: list[str] = []
    real = events.page_key

    async def counted(slug: str):
        reads.append(slug)
        return await real(slug)

    monkeypatch.setattr(events, "page_key", counted)
    for path in ("/events/once", "/events/once.ics", "/events/none"):
        reads.clear()
        answer = await client.get(path)
        assert answer.status_code == (404 if path.endswith("none") else 200)
        assert len(reads) == 1, (path, reads)
