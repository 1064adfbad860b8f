"""Attendee self-service (issue 14): "email me my registration link" with the same answer for any
address, a confirmation step before cancelling, and correcting one's name and answers from the
personal page, checked by the registration's own rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from factories import published_event
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from events_app import db
from events_app.domain import registrations
from events_app.mail import render

QUESTIONS = [
    {
        "key": "stage",
        "label": "Where are you in your career?",
        "type": "single",
        "options": ["Graduate student", "Recent graduate"],
        "required": True,
    },
    {"key": "topics", "label": "Topics you care about", "type": "multiple", "options": ["Policy", "Health", "Data"]},
    {"key": "first", "label": "First time with us?", "type": "yesno"},
    {"key": "note", "label": "Anything we should know?", "type": "text"},
]


async def _register(event: dict, email: str, name: str = "Ada Lovelace", **answers) -> str:
    view = await registrations.register(
        event, {"name": name, "email": email, "answers": answers or {"stage": "Graduate student"}}
    )
    row = (await db.fetch("SELECT * FROM registration WHERE id = {}", view["id"]))[0]
    return registrations.personal_token(row)


async def _stored(token: str) -> dict:
    row = await registrations.by_token(token)
    return {"name": row["name"], "answers": json.loads(row["answers"]), "status": row["status"]}


# -- "email me my registration link" ------------------------------------------------------------


async def test_the_link_form_answers_alike_for_known_and_unknown_addresses(client):
    event = await published_event(slug="careers", questions=QUESTIONS)
    await _register(event, "ada@example.org")
    form = await client.get("/r/link")
    assert form.status_code == 200 and 'name="email"' in form.text and 'action="/r/link"' in form.text

    known = await client.post("/r/link", data={"email": "ada@example.org"})
    unknown = await client.post("/r/link", data={"email": "zed@example.org"})
    assert known.status_code == unknown.status_code == 200
    assert known.text.replace("ada@", "zed@") == unknown.text  # only the typed address differs
    rows = await db.fetch("SELECT kind, recipient, payload FROM outbox WHERE kind = 'registration_links'")
    assert [(r["kind"], r["recipient"]) for r in rows] == [("registration_links", "ada@example.org")]


async def test_the_link_form_refuses_a_malformed_address_next_to_the_field(client):
    answer = await client.post("/r/link", data={"email": "ada@example"})
    assert answer.status_code == 400
    assert 'id="err-email"' in answer.text and 'aria-describedby="err-email"' in answer.text
    assert not await db.fetch("SELECT id FROM outbox WHERE kind = 'registration_links'")


async def test_only_active_upcoming_registrations_are_listed(client):
    soon = await published_event(slug="soon", title="Soon", questions=QUESTIONS)
    later = await published_event(slug="later", title="Later", questions=QUESTIONS)
    gone = await published_event(slug="gone", title="Gone", questions=QUESTIONS)
    await _register(soon, "ada@example.org")
    await _register(later, "ADA@example.org")
    await registrations.cancel(await _register(gone, "ada@example.org"))
    await client.post("/r/link", data={"email": "Ada@Example.org"})
    [row] = await db.fetch("SELECT payload FROM outbox WHERE kind = 'registration_links'")
    ids = json.loads(row["payload"])["registration_ids"]
    items = await registrations.link_items(ids, "ada@example.org")
    assert sorted(i["title"] for i in items) == ["Later", "Soon"]
    assert all(i["url"].startswith("http") and "/r/" in i["url"] for i in items)
    # The time is shown in the event's zone, with the zone.
    assert all(any(z in i["when"] for z in ("EST", "EDT", "UTC", "GMT")) for i in items)
    # Read again at send time: one cancelled since is left out; another address gets nothing.
    later_row = (await db.fetch("SELECT * FROM registration WHERE event = {}", later["id"]))[0]
    await registrations.cancel(registrations.personal_token(later_row))
    assert [i["title"] for i in await registrations.link_items(ids, "ada@example.org")] == ["Soon"]
    assert await registrations.link_items(ids, "zed@example.org") == []


async def test_the_links_email_renders_every_link_in_both_parts():
    event = await published_event(slug="careers", title="Careers & <Impact>", questions=QUESTIONS)
    token = await _register(event, "ada@example.org")
    row = await registrations.by_token(token)
    items = await registrations.link_items([row["id"]], "ada@example.org")
    context = {
        "name": "Ada",
        "registrations": items,
        "organizer_name": "Events",
        "site_host": "testserver",
        "links": {
            "site": "http://testserver/",
            "events": "http://testserver/events",
            "request": "http://testserver/r/link",
        },
    }
    subject, text, html = render.render("registration_links", context)
    assert subject == "Your registration link"
    assert f"/r/{token}" in text and f"/r/{token}" in html
    assert "Careers &amp; &lt;Impact&gt;" in html and "Careers & <Impact>" in text


# -- cancelling takes a confirmation step -------------------------------------------------------


async def test_the_personal_page_leads_to_a_confirmation_that_changes_nothing(client):
    event = await published_event(slug="careers", capacity=1, questions=QUESTIONS)
    ada = await _register(event, "ada@example.org")
    page = (await client.get(f"/r/{ada}")).text
    assert f'<form method="get" action="/r/{ada}/cancel">' in page
    before = await db.fetch("SELECT status, sequence FROM registration")
    ask = await client.get(f"/r/{ada}/cancel")
    assert ask.status_code == 200 and "Cancel your registration for" in ask.text
    assert f'<form method="post" action="/r/{ada}/cancel">' in ask.text and "Yes, cancel my registration" in ask.text
    assert await db.fetch("SELECT status, sequence FROM registration") == before
    done = await client.post(f"/r/{ada}/cancel", follow_redirects=False)
    assert done.status_code == 303
    assert (await _stored(ada))["status"] == "cancelled"
    again = await client.get(f"/r/{ada}/cancel")
    assert again.status_code == 200 and "already cancelled" in again.text and "Yes, cancel" not in again.text


# -- correcting one's details -------------------------------------------------------------------


async def test_the_personal_page_shows_the_answers_with_their_labels(client):
    event = await published_event(slug="careers", questions=QUESTIONS)
    ada = await _register(event, "ada@example.org", stage="Recent graduate", topics=["Data", "Policy"], first=True)
    page = (await client.get(f"/r/{ada}")).text
    for label, answer in [
        ("Where are you in your career?", "Recent graduate"),
        ("Topics you care about", "Policy; Data"),
        ("First time with us?", "Yes"),
    ]:
        assert f"<dt>{label}</dt><dd>{answer}</dd>" in page
    assert '<dt>Anything we should know?</dt><dd><span class="muted">No answer</span></dd>' in page


async def test_correcting_the_name_and_an_answer(client):
    event = await published_event(slug="careers", capacity=1, questions=QUESTIONS)
    ada = await _register(event, "ada@example.org", name="Ada Lovelase")
    seat = (await db.fetch("SELECT taken FROM event"))[0]["taken"]
    answer = await client.post(
        f"/r/{ada}",
        data={"name": "Ada Lovelace", "q_stage": "Recent graduate", "q_topics": ["Health", "Policy"], "q_first": "no"},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == f"/r/{ada}?notice=saved"
    assert await _stored(ada) == {
        "name": "Ada Lovelace",
        "status": "registered",
        "answers": {"stage": "Recent graduate", "topics": ["Policy", "Health"], "first": False},
    }
    assert (await db.fetch("SELECT taken FROM event"))[0]["taken"] == seat
    page = (await client.get(answer.headers["location"])).text
    assert "Your details are saved." in page and "<dt>Name</dt><dd>Ada Lovelace</dd>" in page


async def test_every_error_at_once_next_to_its_field_and_nothing_saved(client):
    event = await published_event(slug="careers", questions=QUESTIONS)
    ada = await _register(event, "ada@example.org")
    before = await _stored(ada)
    answer = await client.post(f"/r/{ada}", data={"name": "", "q_stage": "Astronaut", "q_note": "kept"})
    assert answer.status_code == 400
    page = answer.text
    assert 'id="err-name"' in page and 'id="err-answers-stage"' in page
    assert '<a href="#name">Your name</a>: is required' in page
    assert '<a href="#q_stage">Where are you in your career?</a>' in page
    assert 'value="kept"' in page  # what was typed is shown again
    assert await _stored(ada) == before


async def test_no_corrections_once_cancelled_or_over(client):
    now = datetime.now(UTC)
    event = await published_event(slug="careers", questions=QUESTIONS)
    ada = await _register(event, "ada@example.org")
    await registrations.cancel(ada)
    page = (await client.get(f"/r/{ada}")).text
    assert "Save my details" not in page
    refused = await client.post(f"/r/{ada}", data={"name": "Eve", "q_stage": "Graduate student"})
    assert refused.status_code == 409 and (await _stored(ada))["name"] == "Ada Lovelace"

    past = await published_event(slug="past", questions=QUESTIONS)
    grace = await _register(past, "grace@example.org", name="Grace")
    await db.fetch(
        "UPDATE event SET starts_at = {}, ends_at = {}, version = version + 1 WHERE id = {}",
        now - timedelta(hours=2),
        now - timedelta(hours=1),
        past["id"],
    )
    refused = await client.post(f"/r/{grace}", data={"name": "Eve", "q_stage": "Graduate student"})
    assert refused.status_code == 409 and (await _stored(grace))["name"] == "Grace"


async def test_a_bad_token_is_404_for_every_door(client):
    for method, path in [("GET", "/r/nope/cancel"), ("POST", "/r/nope")]:
        assert (await client.request(method, path, data={"name": "x"})).status_code == 404


TEXT = st.text(st.characters(codec="utf-8"), max_size=60)
HYPOTHESIS = hsettings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@given(name=TEXT, stage=TEXT, topics=st.lists(TEXT, max_size=4), first=TEXT, note=st.text(max_size=300))
@example(name="Ada\nLovelace", stage="Graduate student", topics=["Data"], first="yes", note="")
@example(name="  Ada  ", stage="Recent graduate", topics=["Policy", "Policy"], first="maybe", note="x" * 290)
@HYPOTHESIS
async def test_any_correction_is_saved_clean_or_refused_whole(client, name, stage, topics, first, note):
    await db.fetch("DELETE FROM outbox")
    await db.fetch("DELETE FROM registration")
    await db.fetch("DELETE FROM event")
    from events_app.domain import events

    events.forget()
    event = await published_event(slug="careers", questions=QUESTIONS)
    ada = await _register(event, "ada@example.org")
    before = await _stored(ada)
    answer = await client.post(
        f"/r/{ada}",
        data={"name": name, "q_stage": stage, "q_topics": topics, "q_first": first, "q_note": note},
        follow_redirects=False,
    )
    assert answer.status_code in (303, 400), answer.text[:500]
    after = await _stored(ada)
    if answer.status_code == 400:
        assert after == before
        assert 'class="error"' in answer.text
        return
    assert after["name"] == name.strip() and "\n" not in after["name"]
    assert after["answers"]["stage"] == stage.strip() and stage.strip() in QUESTIONS[0]["options"]
    assert set(after["answers"].get("topics", [])) == {t.strip() for t in topics if t.strip()}
    assert after["status"] == "registered"


# -- rate limit -----------------------------------------------------------------------------------


async def test_the_link_form_is_rate_limited_with_the_other_link_door():
    """/r/link spends the same `link` budget as /s/link (web/limits.py): a script cannot use it to
    email an address over and over, and reading the form is never limited."""
    import dataclasses

    import httpx

    from events_app import settings
    from events_app.app import create_app
    from events_app.web import limits

    saved = settings._current
    settings._current = dataclasses.replace(settings.get(), rate_limits=True, redis_url=None)
    try:
        app = create_app()
        transport = httpx.ASGITransport(app=app, client=("10.9.8.7", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            statuses = [
                (await http.post("/r/link", data={"email": f"p{n}@example.org"})).status_code
                for n in range(limits.LINK.requests)
            ]
            assert set(statuses) == {200}
            assert (await http.post("/r/link", data={"email": "p@example.org"})).status_code == 429
            assert (await http.post("/s/link", data={"email": "p@example.org"})).status_code == 429
            assert (await http.get("/r/link")).status_code == 200
    finally:
        settings._current = saved
