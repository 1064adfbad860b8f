"""The JSON API as an integration would use it: staff create and change events, anyone registers."""

from __future__ import annotations

from datetime import UTC, datetime

from factories import event_data

from events_app import db


async def test_staff_creates_publishes_and_reads_an_event(client, auth):
    answer = await client.post("/api/v1/events", json=event_data(status="draft", slug="careers-webinar"), headers=auth)
    assert answer.status_code == 201
    created = answer.json()
    assert created["slug"] == "careers-webinar" and created["status"] == "draft" and created["id"] > 0

    # A draft is invisible to the public, visible to staff.
    assert (await client.get(f"/api/v1/events/{created['id']}")).status_code == 404
    assert (await client.get("/api/v1/events")).json() == []
    assert (await client.get(f"/api/v1/events/{created['id']}", headers=auth)).json()["status"] == "draft"

    published = await client.post(f"/api/v1/events/{created['id']}/publish", headers=auth)
    assert published.json()["status"] == "published"
    public = (await client.get(f"/api/v1/events/{created['id']}")).json()
    assert public["title"] == "Non-Academic Careers with Impact"
    assert "join_url" not in public, "the meeting link is for staff and registrants only"
    assert public["seats_left"] == 50
    assert datetime.fromisoformat(public["starts_at"]).tzinfo is not None
    staff_view = (await client.get(f"/api/v1/events/{created['id']}", headers=auth)).json()
    assert staff_view["join_url"] == "https://meet.example.org/room"


async def test_naive_times_are_read_in_the_event_zone(client, auth):
    answer = await client.post(
        "/api/v1/events",
        json=event_data(starts_at="2030-11-29T12:00", ends_at="2030-11-29T13:00"),
        headers=auth,
    )
    event = answer.json()
    assert event["starts_at"] == "2030-11-29T17:00:00+00:00"
    assert event["when"] == "Friday 29 November 2030, 12:00–1:00 PM EST"


async def test_staff_endpoints_refuse_without_a_valid_token(client, auth):
    assert (await client.post("/api/v1/events", json=event_data())).status_code == 401
    bad = {"Authorization": "Bearer not-a-token"}
    answer = await client.post("/api/v1/events", json=event_data(), headers=bad)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert (await db.fetch("SELECT COUNT(*) AS n FROM event"))[0]["n"] == 0


async def test_invalid_event_input_names_the_field(client, auth):
    cases = [
        ({"title": ""}, "title"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"starts_at": "next tuesday"}, "starts_at"),
        ({"ends_at": "2000-01-01T00:00:00+00:00"}, "ends_at"),
        ({"capacity": -1}, "capacity"),
        ({"capacity": "many"}, "capacity"),
        ({"join_url": "javascript:alert(1)"}, "join_url"),
        ({"questions": [{"label": "Pick", "type": "single", "options": ["only one"]}]}, "questions[0].options"),
        ({"reminders": ["soon"]}, "reminders"),
        ({"colour": "blue"}, "colour"),
    ]
    for override, field in cases:
        answer = await client.post("/api/v1/events", json=event_data(**override), headers=auth)
        assert answer.status_code == 400, (override, answer.text)
        assert field in answer.json()["errors"], (override, answer.json())
    for body in ("[1, 2]", "not json", '"text"'):
        answer = await client.post("/api/v1/events", content=body, headers={**auth, "Content-Type": "application/json"})
        assert answer.status_code == 400, body
    assert (await db.fetch("SELECT COUNT(*) AS n FROM event"))[0]["n"] == 0


async def test_unknown_and_out_of_range_ids_are_404_not_500(client, auth):
    for path in ("/api/v1/events/999", "/api/v1/events/99999999999999", "/api/v1/events/0"):
        assert (await client.get(path)).status_code == 404
        assert (
            await client.post(path + "/registrations", json={"name": "A", "email": "a@example.org"})
        ).status_code == 404
    assert (await client.get("/api/v1/events/abc")).status_code in (400, 404)


async def test_registration_by_api_and_the_same_email_again(client, auth):
    event = (await client.post("/api/v1/events", json=event_data(capacity=1), headers=auth)).json()
    path = f"/api/v1/events/{event['id']}/registrations"
    first = await client.post(path, json={"name": "Ada", "email": "Ada@Example.org"})
    assert first.status_code == 201
    body = first.json()
    assert body["status"] == "registered" and body["email"] == "ada@example.org"
    assert "token" not in first.text.lower() and "salt" not in first.text

    assert body["id"] is None, "an anonymous answer carries no row id (it would tell old from new)"

    # The same address again takes no second seat and answers as a new address would now: the
    # only seat is Ada's, so "waitlisted", first place (her own mailbox gets the truth).
    again = await client.post(path, json={"name": "Ada L.", "email": "ada@example.org"})
    assert again.status_code == 201
    assert again.json() == {**body, "name": "Ada L.", "status": "waitlisted", "waitlist_position": 1}

    second = await client.post(path, json={"name": "Grace", "email": "grace@example.org"})
    assert second.json()["status"] == "waitlisted" and second.json()["waitlist_position"] == 1
    seats = await db.fetch("SELECT taken FROM event WHERE id = {}", event["id"])
    assert seats[0]["taken"] == 1

    listing = (await client.get(path, headers=auth)).json()
    assert [(r["email"], r["status"]) for r in listing] == [
        ("ada@example.org", "registered"),
        ("grace@example.org", "waitlisted"),
    ]
    assert (await client.get(path)).status_code == 401


async def test_registration_errors_are_400_with_every_field(client, auth):
    event = (
        await client.post(
            "/api/v1/events",
            json=event_data(
                questions=[
                    {
                        "key": "stage",
                        "label": "Career stage",
                        "type": "single",
                        "options": ["Student", "Graduate"],
                        "required": True,
                    },
                    {"key": "topics", "label": "Topics", "type": "multiple", "options": ["Jobs", "Skills"]},
                    {"key": "first", "label": "First webinar?", "type": "yesno"},
                ]
            ),
            headers=auth,
        )
    ).json()
    path = f"/api/v1/events/{event['id']}/registrations"
    answer = await client.post(
        path, json={"name": "", "email": "nope", "answers": {"topics": ["Cooking"], "first": "maybe"}}
    )
    assert answer.status_code == 400
    assert set(answer.json()["errors"]) == {"name", "email", "answers.stage", "answers.topics", "answers.first"}
    ok = await client.post(
        path,
        json={
            "name": "Ada",
            "email": "ada@example.org",
            "answers": {"stage": "Student", "topics": ["Jobs"], "first": True},
        },
    )
    assert ok.status_code == 201
    assert ok.json()["answers"] == {"stage": "Student", "topics": ["Jobs"], "first": True}
    assert (await db.fetch("SELECT COUNT(*) AS n FROM registration"))[0]["n"] == 1


async def test_closed_draft_cancelled_and_past_events_refuse_with_409(client, auth):
    past = (
        await client.post(
            "/api/v1/events", json=event_data(starts_at="2022-11-29T12:00", ends_at="2022-11-29T13:00"), headers=auth
        )
    ).json()
    closed = (
        await client.post(
            "/api/v1/events",
            json=event_data(registration_closes_at=datetime(2020, 1, 1, tzinfo=UTC).isoformat()),
            headers=auth,
        )
    ).json()
    cancelled = (await client.post("/api/v1/events", json=event_data(), headers=auth)).json()
    await client.post(f"/api/v1/events/{cancelled['id']}/cancel", headers=auth)
    draft = (await client.post("/api/v1/events", json=event_data(status="draft"), headers=auth)).json()
    person = {"name": "Ada", "email": "ada@example.org"}
    for event, reason in ((past, "past"), (closed, "closed"), (cancelled, "cancelled")):
        answer = await client.post(f"/api/v1/events/{event['id']}/registrations", json=person)
        assert answer.status_code == 409 and answer.json()["reason"] == reason
    # Drafts are hidden from the public altogether; staff get the reason.
    assert (await client.post(f"/api/v1/events/{draft['id']}/registrations", json=person)).status_code == 404
    staff_try = await client.post(f"/api/v1/events/{draft['id']}/registrations", json=person, headers=auth)
    assert staff_try.status_code == 409 and staff_try.json()["reason"] == "draft"
    assert (await db.fetch("SELECT COUNT(*) AS n FROM registration"))[0]["n"] == 0


async def test_csv_export_lists_registrants_with_answers(client, auth):
    event = (
        await client.post(
            "/api/v1/events",
            json=event_data(questions=[{"key": "stage", "label": "Career stage", "type": "text"}]),
            headers=auth,
        )
    ).json()
    await client.post(
        f"/api/v1/events/{event['id']}/registrations",
        json={"name": "=HYPERLINK(1)", "email": "ada@example.org", "answers": {"stage": "PhD"}},
    )
    answer = await client.get(f"/api/v1/events/{event['id']}/registrations.csv", headers=auth)
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    lines = answer.text.strip().splitlines()
    assert lines[0].split(",")[-1] == "Career stage"  # the question's label heads its column
    assert "'=HYPERLINK(1)" in lines[1] and "ada@example.org" in lines[1] and lines[1].endswith("PhD")


async def test_health_and_openapi(client):
    assert (await client.get("/health")).json() == {"status": "ok"}
    schema = (await client.get("/schema/openapi.json")).json()
    assert "/api/v1/events/{event_id}/registrations" in schema["paths"]


async def test_staff_see_how_many_a_change_will_email_before_saving(client, auth):
    event = (await client.post("/api/v1/events", json=event_data(capacity=2), headers=auth)).json()
    for who in ("ada", "grace", "alan"):  # alan is waitlisted: holds no invite
        await client.post(
            f"/api/v1/events/{event['id']}/registrations", json={"name": who, "email": f"{who}@example.org"}
        )
    path = f"/api/v1/events/{event['id']}"
    preview = await client.post(
        path + "/change-preview", json={"join_url": "https://meet.example.org/new"}, headers=auth
    )
    assert preview.json() == {"would_email": 2}
    assert (await client.post(path + "/change-preview", json={"summary": "Words only"}, headers=auth)).json() == {
        "would_email": 0
    }
    assert (await client.get(path, headers=auth)).json()["join_url"] == "https://meet.example.org/room", (
        "preview saves nothing"
    )
    assert (await db.fetch("SELECT COUNT(*) AS n FROM outbox WHERE kind = 'event_changed'"))[0]["n"] == 0
    changed = await client.patch(path, json={"join_url": "https://meet.example.org/new"}, headers=auth)
    assert changed.json()["notified"] == 2 and changed.json()["join_url"] == "https://meet.example.org/new"
    rows = await db.fetch("SELECT recipient FROM outbox WHERE kind = 'event_changed' ORDER BY recipient")
    assert [r["recipient"] for r in rows] == ["ada@example.org", "grace@example.org"]
    bad = await client.post(path + "/change-preview", json={"starts_at": "soon"}, headers=auth)
    assert bad.status_code == 400 and "starts_at" in bad.json()["errors"]


async def test_a_preview_refuses_what_the_change_would_refuse_whatever_the_event_state(client, auth):
    """Found by Schemathesis' stateful phase: the preview of a draft's change answered 200
    `{"would_email": 0}` without checking the fields, so a value the PATCH refuses (and the
    document forbids) was accepted."""
    draft = (await client.post("/api/v1/events", json=event_data(status="draft"), headers=auth)).json()
    assert draft["status"] == "draft"
    path = f"/api/v1/events/{draft['id']}"
    for body, field in (({"audience": "grad\fstudents"}, "audience"), ({"starts_at": "soon"}, "starts_at")):
        bad = await client.post(path + "/change-preview", json=body, headers=auth)
        assert bad.status_code == 400 and field in bad.json()["errors"], (body, bad.text)
        assert (await client.patch(path, json=body, headers=auth)).status_code == 400
    assert (await client.post(path + "/change-preview", json={"summary": "Fine"}, headers=auth)).json() == {
        "would_email": 0
    }


async def test_doors_and_follow_up_settings(client, auth):
    created = await client.post(
        "/api/v1/events", json=event_data(doors_open_minutes=30, follow_up_minutes=60), headers=auth
    )
    assert created.json()["doors_open_minutes"] == 30 and created.json()["follow_up_minutes"] == 60
    bad = await client.post("/api/v1/events", json=event_data(doors_open_minutes=-5), headers=auth)
    assert bad.status_code == 400 and "doors_open_minutes" in bad.json()["errors"]


async def test_a_registration_answers_what_litestars_response_would(client):
    """The registration route answers with a pre-encoded JSON answer (web/api.py JsonAnswer):
    status, headers and body are those a Litestar Response gives for the same value."""
    import httpx
    from factories import published_event
    from litestar import Litestar, post

    event = await published_event()
    answer = await client.post(
        f"/api/v1/events/{event['id']}/registrations", json={"name": "Ada Lovelace", "email": "ada@example.org"}
    )
    assert answer.status_code == 201
    value = answer.json()

    @post("/", status_code=201)
    async def same() -> dict:
        return value

    transport = httpx.ASGITransport(app=Litestar(route_handlers=[same]))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as bare:
        litestar_answer = await bare.post("/")
    assert answer.content == litestar_answer.content
    ours = [(name, val) for name, val in answer.headers.raw if name.lower() in (b"content-type", b"content-length")]
    assert ours == litestar_answer.headers.raw
