"""Issue 11, the registration door and staff input: what an anonymous caller and a clumsy or
hurried staff member can send, and what they get back.

Each test names the fault of issue 11 it keeps closed. The last two search (hypothesis) over the
registration API body and the registration form of an event with every question type."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from events_app import db
from events_app.domain import events, registrations
from events_app.domain import validation as v
from events_app.domain.errors import ValidationFailed
from factories import event_data, published_event

QUESTIONS = [
    {"key": "stage", "label": "Career stage", "type": "single", "options": ["Student", "Graduate"], "required": True},
    {"key": "topics", "label": "Topics", "type": "multiple", "options": ["Jobs", "Skills", "Networks"]},
    {"key": "must", "label": "Formats", "type": "multiple", "options": ["Talk", "Panel"], "required": True},
    {"key": "first", "label": "First webinar?", "type": "yesno"},
    {"key": "needs", "label": "Access needs", "type": "text"},
    {"key": "why", "label": "Why come?", "type": "text", "required": True},
]
GOOD = {"stage": "Student", "must": ["Talk"], "why": "Curious"}


async def _counts() -> tuple[int, int]:
    regs = await db.fetch("SELECT COUNT(*) AS n FROM registration")
    mail = await db.fetch("SELECT COUNT(*) AS n FROM outbox")
    return regs[0]["n"], mail[0]["n"]


async def _api_event(client, auth, **overrides) -> dict:
    answer = await client.post("/api/v1/events", json=event_data(**overrides), headers=auth)
    assert answer.status_code == 201, answer.text
    return answer.json()


# 1. A "multiple" question with no box ticked -------------------------------------------------

async def test_form_with_no_box_ticked_keeps_the_input_or_registers(client):
    await published_event(slug="careers", questions=QUESTIONS)
    typed = {"name": "Ada Lovelace", "email": "ada@example.org", "q_stage": "Graduate", "q_why": "Jobs talk"}
    refused = await client.post("/events/careers/register", data=typed)
    assert refused.status_code == 400, "a required multiple question left empty is the person's slip"
    assert 'id="err-answers-must"' in refused.text and "is required" in refused.text
    assert 'value="Ada Lovelace"' in refused.text and 'value="ada@example.org"' in refused.text
    assert 'value="Jobs talk"' in refused.text and re.search(r'value="Graduate" checked', refused.text)
    assert await _counts() == (0, 0)

    # The optional one ("topics") left empty registers.
    done = await client.post("/events/careers/register", data={**typed, "q_must": "Panel"}, follow_redirects=True)
    assert done.status_code == 200 and "You're registered" in done.text
    row = (await db.fetch("SELECT answers FROM registration"))[0]
    assert json.loads(row["answers"]) == {"stage": "Graduate", "must": ["Panel"], "why": "Jobs talk"}


# 2. A repeat registration answers like a first one ----------------------------------------------

def _masked(text: str, *sent: str) -> str:
    for value in sent:
        text = text.replace(value, "<SENT>")
    return text


async def test_a_repeat_answers_exactly_like_a_new_address_and_shows_nothing_stored(client, auth, worker, smtp_server):  # noqa: F811
    event = await _api_event(client, auth, capacity=1, questions=[
        {"key": "needs", "label": "Access needs", "type": "text"}])
    path = f"/api/v1/events/{event['id']}/registrations"
    ada = {"name": "Ada Lovelace", "email": "ada@example.org", "answers": {"needs": "wheelchair access"}}
    assert (await client.post(path, json=ada)).json()["status"] == "registered"

    # Someone who knows Ada's address, and someone new, send the same name and answers.
    probe = {"name": "Mallory", "answers": {"needs": "none"}}
    known = await client.post(path, json={**probe, "email": "ada@example.org"})
    unknown = await client.post(path, json={**probe, "email": "new@example.org"})
    assert known.status_code == unknown.status_code == 201
    assert "Ada Lovelace" not in known.text and "wheelchair" not in known.text
    assert known.json()["status"] == "waitlisted" and known.json()["waitlist_position"] == 1, \
        "the event is full: a new address would be waitlisted first, so a known one answers that too"
    assert _masked(known.text, "ada@example.org") == _masked(unknown.text, "new@example.org")
    # Now a new address would be second on the waitlist, and so is the answer for a known one.
    again = await client.post(path, json={**probe, "email": "ada@example.org"})
    newer = await client.post(path, json={**probe, "email": "newer@example.org"})
    assert again.json()["waitlist_position"] == newer.json()["waitlist_position"] == 2
    assert _masked(again.text, "ada@example.org") == _masked(newer.text, "newer@example.org")

    # Ada's own mailbox tells her the truth (her name, her seat); nothing she stored changed.
    await db.fetch("UPDATE registration SET confirmation_sent_at = {} WHERE email = 'ada@example.org'",
                   datetime.now(timezone.utc) - timedelta(hours=1))
    await client.post(path, json={**probe, "email": "ada@example.org"})
    await worker.run_once()
    last = smtp_server.to("ada@example.org")[-1]
    body = last.get_body(("plain",)).get_content()
    assert "Ada Lovelace" in body and "Mallory" not in body and "waitlist" not in last["Subject"].lower()
    staff = (await client.get(path, headers=auth)).json()
    assert [(r["name"], r["status"], r["answers"]) for r in staff][0] == (
        "Ada Lovelace", "registered", {"needs": "wheelchair access"})
    assert (await db.fetch("SELECT taken FROM event"))[0]["taken"] == 1


async def test_the_thank_you_page_is_the_same_for_a_known_and_a_new_address(client):
    await published_event(slug="careers", capacity=1)
    form = {"name": "Ada", "email": "ada@example.org"}
    assert "You're registered" in (await client.post("/events/careers/register", data=form, follow_redirects=True)).text
    known = await client.post(
        "/events/careers/register", data={"name": "Eve", "email": "ada@example.org"}, follow_redirects=True
    )
    unknown = await client.post(
        "/events/careers/register", data={"name": "Eve", "email": "eve@example.org"}, follow_redirects=True
    )
    assert known.status_code == unknown.status_code == 200
    assert "You're on the waitlist" in known.text and "number <strong>1</strong>" in known.text
    assert _masked(known.text, "ada@example.org") == _masked(unknown.text, "eve@example.org")


# 3. Answers are sets of offered options; text is bounded and free of control characters -----------

async def test_multiple_answers_are_sets_of_offered_options(client):
    event = await published_event(questions=QUESTIONS)
    path = f"/api/v1/events/{event['id']}/registrations"
    ok = await client.post(path, json={"name": "Ada", "email": "ada@example.org",
                                       "answers": {**GOOD, "topics": ["Networks", "Jobs", "Networks"]}})
    assert ok.status_code == 201
    stored = json.loads((await db.fetch("SELECT answers FROM registration"))[0]["answers"])
    assert stored["topics"] == ["Jobs", "Networks"], "deduplicated, in the offered order"
    before = await _counts()
    for topics in (["Jobs"] * 5_000, ["Jobs", "Skills", "Networks", "Jobs"], ["Jobs", 5], [["Jobs"]]):
        refused = await client.post(path, json={"name": "Bo", "email": "bo@example.org", "answers": {**GOOD, "topics": topics}})
        assert refused.status_code == 400 and "answers.topics" in refused.json()["errors"], topics[:5]
    huge = await client.post(path, json={"name": "Bo", "email": "bo@example.org", "answers": {**GOOD, "needs": "x" * 5001}})
    assert huge.status_code == 400 and "answers.needs" in huge.json()["errors"]
    assert await _counts() == before


@pytest.mark.parametrize("name, field", [
    ("Ada\x00", "name"), ("Ada\nBcc: x", "name"), ("Ada\u2028Lovelace", "name"), ("A\x1bda", "name"), ("A\x85da", "name"),
])
async def test_names_are_one_line_without_control_characters(client, name, field):
    event = await published_event(questions=QUESTIONS)
    refused = await client.post(f"/api/v1/events/{event['id']}/registrations",
                                json={"name": name, "email": "ada@example.org", "answers": GOOD})
    assert refused.status_code == 400 and field in refused.json()["errors"]
    assert await _counts() == (0, 0)


async def test_text_answers_may_span_lines_but_hold_no_nul(client):
    event = await published_event(questions=QUESTIONS)
    path = f"/api/v1/events/{event['id']}/registrations"
    nul = await client.post(path, json={"name": "Ada", "email": "ada@example.org", "answers": {**GOOD, "needs": "a\x00b"}})
    assert nul.status_code == 400 and "answers.needs" in nul.json()["errors"]
    lines = await client.post(path, json={"name": "Ada", "email": "ada@example.org",
                                          "answers": {**GOOD, "needs": "Captions\n\tand a break"}})
    assert lines.status_code == 201


async def test_lone_surrogates_are_refused_by_every_caller_of_validation_text():
    event = await published_event(questions=QUESTIONS)
    for data, field in (({"name": "Ada\ud800", "email": "ada@example.org", "answers": GOOD}, "name"),
                        ({"name": "Ada", "email": "ada@example.org", "answers": {**GOOD, "needs": "\udc80"}}, "answers.needs")):
        with pytest.raises(ValidationFailed) as refused:
            await registrations.register(event, data)
        assert field in refused.value.fields
    for value in ("\ud800", "x\x00", "x\x7f"):
        with pytest.raises(ValidationFailed):
            v.text({"title": value}, "title")
        with pytest.raises(ValidationFailed):
            v.text({"body": value}, "body")  # issues' body: many lines, still no NUL
    assert v.text({"body": "one\r\ntwo\tthree"}, "body") == "one\r\ntwo\tthree"
    with pytest.raises(ValidationFailed):
        v.text({"name": "one\ntwo"}, "name")  # subscriptions' display name
    assert await _counts() == (0, 0)


async def test_staff_text_fields_refuse_control_characters(client, auth):
    for override, field in (({"title": "Talk\x00"}, "title"), ({"title": "Two\nlines"}, "title"),
                            ({"description": "ok\x00"}, "description"), ({"join_url": "https://x.org/\x00"}, "join_url"),
                            ({"tags": ["career\x00"]}, "tags")):
        answer = await client.post("/api/v1/events", json=event_data(**override), headers=auth)
        assert answer.status_code == 400 and field in answer.json()["errors"], (override, answer.text)
    fine = await client.post("/api/v1/events", json=event_data(description="Line one\n\n\tLine two"), headers=auth)
    assert fine.status_code == 201
    assert (await db.fetch("SELECT COUNT(*) AS n FROM event"))[0]["n"] == 1


# 4. Email addresses we could never send to ---------------------------------------------------

async def test_addresses_with_control_or_non_ascii_characters_are_refused_clearly(client):
    event = await published_event()
    path = f"/api/v1/events/{event['id']}/registrations"
    for address in ("a\x01b@example.org", "ad\x7fa@example.org", "a\x00@example.org"):
        answer = await client.post(path, json={"name": "Ada", "email": address})
        assert answer.status_code == 400 and "email" in answer.json()["errors"], repr(address)
    for address in ("josé@example.org", "ada@bücher.de", "\u0430da@example.org"):
        answer = await client.post(path, json={"name": "Ada", "email": address})
        assert answer.status_code == 400
        assert "non-ASCII" in answer.json()["errors"]["email"], answer.text
    assert await _counts() == (0, 0)
    assert v.email(" Ada.Lovelace+events@Example.ORG ") == "ada.lovelace+events@example.org"


# 5. Cancelling after the end ----------------------------------------------------------------

async def _two_people(capacity: int = 1, **overrides) -> tuple[dict, str, str]:
    event = await published_event(capacity=capacity, slug="careers", **overrides)
    tokens = []
    for email in ("ada@example.org", "bob@example.org"):
        await registrations.register(event, {"name": email[:3].title(), "email": email})
        row = (await db.fetch("SELECT * FROM registration WHERE email = {}", email))[0]
        tokens.append(registrations.personal_token(row))
    return event, tokens[0], tokens[1]


async def _statuses() -> list[str]:
    return [r["status"] for r in await db.fetch("SELECT status FROM registration ORDER BY id")]


async def test_cancelling_after_the_end_changes_nothing_and_offers_no_seat(client):
    event, ada, _bob = await _two_people()
    now = datetime.now(timezone.utc)
    await db.fetch("UPDATE event SET starts_at = {}, ends_at = {}, version = version + 1 WHERE id = {}",
                   now - timedelta(hours=2), now - timedelta(hours=1), event["id"])
    page = await client.get(f"/r/{ada}")
    assert "Cancel my registration" not in page.text
    before = (await _counts(), await _statuses())
    answer = await client.post(f"/r/{ada}/cancel", follow_redirects=False)
    assert answer.status_code == 409 and "over" in answer.text
    assert (await _counts(), await _statuses()) == before == ((2, 2), ["registered", "waitlisted"])
    assert not await db.fetch("SELECT id FROM outbox WHERE kind = 'registration_promoted'")


async def test_after_registration_closes_a_cancel_frees_the_seat_but_offers_it_to_nobody(client):
    event, ada, _bob = await _two_people()
    await events.update(event["id"], {"registration_closes_at": (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()})
    assert "Cancel my registration" in (await client.get(f"/r/{ada}")).text
    answer = await client.post(f"/r/{ada}/cancel", follow_redirects=False)
    assert answer.status_code == 303
    assert await _statuses() == ["cancelled", "waitlisted"]
    assert not await db.fetch("SELECT id FROM outbox WHERE kind = 'registration_promoted'")
    assert (await db.fetch("SELECT taken FROM event"))[0]["taken"] == 0


async def test_raising_the_capacity_after_the_end_offers_no_seat():
    event, _ada, _bob = await _two_people()
    now = datetime.now(timezone.utc)
    await db.fetch("UPDATE event SET starts_at = {}, ends_at = {}, version = version + 1 WHERE id = {}",
                   now - timedelta(hours=2), now - timedelta(hours=1), event["id"])
    await events.update(event["id"], {"capacity": 5})
    assert await _statuses() == ["registered", "waitlisted"]
    assert not await db.fetch("SELECT id FROM outbox WHERE kind = 'registration_promoted'")


# 6. Caps on staff input ---------------------------------------------------------------------

async def test_staff_input_is_capped_where_a_slip_would_mass_mail_people(client, auth):
    question = {"label": "Pick", "type": "single", "options": ["a", "b"]}
    cases = [
        ({"reminders": list(range(1, 86_401))}, "reminders"),
        ({"reminders": [5, 10, 15, 20, 25, 30]}, "reminders"),
        ({"reminders": [1]}, "reminders"),
        ({"reminders": [60 * 24 * 31]}, "reminders"),
        ({"questions": [dict(question, key=f"q{i}") for i in range(5000)]}, "questions"),
        ({"questions": [dict(question, options=[f"o{i}" for i in range(51)])]}, "questions[0].options"),
        ({"questions": [dict(question, options=["a" * 201, "b"])]}, "questions[0].options"),
        ({"questions": [dict(question, options=["a", "a"])]}, "questions[0].options"),
        ({"questions": [dict(question, label="Two\nlines")]}, "questions[0].label"),
        ({"tags": [f"t{i}" for i in range(21)]}, "tags"),
        ({"tags": ["x" * 51]}, "tags"),
        ({"starts_at": "0001-01-01T00:00:00+05:00", "ends_at": "0001-01-01T01:00:00+05:00"}, "starts_at"),
        ({"starts_at": "9999-12-31T23:00:00-05:00", "ends_at": "9999-12-31T23:30:00-05:00"}, "starts_at"),
        ({"registration_closes_at": "0001-01-01T00:00:00"}, "registration_closes_at"),
    ]
    for override, field in cases:
        answer = await client.post("/api/v1/events", json=event_data(**override), headers=auth)
        assert answer.status_code == 400, (field, answer.text[:300])
        assert field in answer.json()["errors"], (field, answer.json())
    assert (await client.post("/api/v1/events", json=event_data(reminders=list(range(1, 86_401))), headers=auth)
            ).json()["errors"]["reminders"] == "at most 5 reminders"
    ok = await _api_event(client, auth, reminders=[60, 5, 60, 43_200])
    assert ok["reminders"] == [43_200, 60, 5]
    # A PATCH cannot move an event to year 1 either (that is how one arose before).
    patched = await client.patch(f"/api/v1/events/{ok['id']}", headers=auth,
                                 json={"starts_at": "0001-01-01T00:00:00+00:00", "ends_at": "0001-01-01T01:00:00+00:00"})
    assert patched.status_code == 400 and "starts_at" in patched.json()["errors"]
    assert (await db.fetch("SELECT COUNT(*) AS n FROM event"))[0]["n"] == 1


async def test_a_year_one_event_already_stored_still_has_a_public_calendar_file(client):
    event = await published_event(slug="ancient")
    await db.fetch("UPDATE event SET starts_at = {}, ends_at = {}, version = version + 1 WHERE id = {}",
                   datetime(1, 1, 1, tzinfo=timezone.utc), datetime(1, 1, 1, 1, tzinfo=timezone.utc), event["id"])
    answer = await client.get("/events/ancient.ics")
    assert answer.status_code == 200 and "BEGIN:VEVENT" in answer.text
    assert "DTSTART" in answer.text


# 7. Per-event retention ---------------------------------------------------------------------

async def test_retention_days_is_accepted_stored_and_shown_to_staff_only(client, auth):
    created = await _api_event(client, auth, retention_days=30)
    assert created["retention_days"] == 30
    path = f"/api/v1/events/{created['id']}"
    assert "retention_days" not in (await client.get(path)).json()
    assert (await client.get(path, headers=auth)).json()["retention_days"] == 30
    assert (await client.patch(path, json={"retention_days": None}, headers=auth)).json()["retention_days"] is None
    for bad in (0, 3651, "soon", True, 1.5):
        answer = await client.patch(path, json={"retention_days": bad}, headers=auth)
        assert answer.status_code == 400 and "retention_days" in answer.json()["errors"], bad
    assert (await db.fetch("SELECT retention_days FROM event"))[0]["retention_days"] is None
    assert (await _api_event(client, auth))["retention_days"] is None, "null: the installation's default"


# 8. The registrants CSV holds no formulas -----------------------------------------------------

async def test_every_csv_cell_a_person_typed_is_neutralised(client, auth):
    event = await _api_event(client, auth, questions=[{"key": "needs", "label": "Needs", "type": "text"}])
    path = f"/api/v1/events/{event['id']}/registrations"
    people = [("=HYPERLINK(1)", "=1+2@example.org", "+SUM(1)"), ("@cmd", "-2@example.org", "-1"),
              ("Ada", "+ada@example.org", "@A1")]
    for name, email, needs in people:
        assert (await client.post(path, json={"name": name, "email": email, "answers": {"needs": needs}})).status_code == 201
    answer = await client.get(path.replace("registrations", "registrations.csv"), headers=auth)
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert len(rows) == 3
    for row in rows:
        for column in ("name", "email", "Needs"):  # a question's column is headed by its label
            assert row[column][:1] not in ("=", "+", "-", "@"), (column, row[column])
    assert {r["email"] for r in rows} == {"'=1+2@example.org", "'-2@example.org", "'+ada@example.org"}


# 9. Ids past the integer columns ------------------------------------------------------------

async def test_every_event_route_answers_404_for_ids_out_of_range(client, auth):
    for bad in ("-1", "0", str(2**31), str(2**63), str(2**64), "9" * 30):
        base = f"/api/v1/events/{bad}"
        calls = [("GET", base, None), ("PATCH", base, {"title": "x"}), ("POST", base + "/change-preview", {}),
                 ("POST", base + "/publish", None), ("POST", base + "/cancel", None),
                 ("POST", base + "/registrations", {"name": "A", "email": "a@example.org"}),
                 ("GET", base + "/registrations", None), ("GET", base + "/registrations.csv", None)]
        for method, path, body in calls:
            answer = await client.request(method, path, json=body, headers=auth)
            assert answer.status_code == 404, (method, path, answer.status_code)


# The search: every answer is 2xx or a 4xx naming the field; a refusal writes nothing ----------

_NASTY = st.sampled_from(["", " ", "\x00", "Ada\x00", "a\nb", "a\r\nb", "\t", "\x1b[31m", "\x85", "\ud800", "x\udfff",
                          "\u2028", "é@example.org", "a\x01@example.org", "=1+1", "Jobs\x00"])
_texts = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.characters(max_codepoint=0xA0), max_size=10),
    _NASTY,
    st.sampled_from(["Student", "Graduate", "Jobs", "Talk", "yes", "no", "true", "ada@example.org"]),
    st.integers(5000, 70_000).map(lambda n: "x" * n),
)
_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70), st.floats(allow_nan=False, allow_infinity=False), _texts)
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(_texts, inner, max_size=3)), max_leaves=12)
_answer_values = st.one_of(_values, st.lists(st.sampled_from(["Jobs", "Skills", "Networks", "Talk", "Panel", "x"]), max_size=8))
_VALID = {"name": "Ada Lovelace", "email": "ada@example.org", "subscribe": False,
          "answers": {"stage": "Student", "topics": ["Jobs"], "must": ["Talk", "Panel"], "first": True,
                      "needs": "Captions,\nplease", "why": "Curious"}}
_FIELDS = ["name", "email", "subscribe", "answers", *[f"answers.{q['key']}" for q in QUESTIONS], "answers.nope"]


def _changed(changes: dict, dropped: list[str], person: int) -> dict:
    """A valid body with a few fields given other values (or removed): one bad field among good
    ones is what the search must find refused by name."""
    body = json.loads(json.dumps(_VALID))
    body["email"] = f"p{person}@example.org"  # mostly new people, some repeats
    for path, value in changes.items():
        if path.startswith("answers.") and isinstance(body.get("answers"), dict):
            body["answers"][path.split(".", 1)[1]] = value
        elif not path.startswith("answers."):
            body[path] = value
    for path in dropped:
        if path.startswith("answers.") and isinstance(body.get("answers"), dict):
            body["answers"].pop(path.split(".", 1)[1], None)
        else:
            body.pop(path, None)
    return body


_bodies = st.one_of(
    _values,
    st.builds(_changed, st.dictionaries(st.sampled_from(_FIELDS), st.one_of(_NASTY, _answer_values), max_size=1),
              st.just([]), st.integers(0, 1000)),
    st.builds(_changed, st.dictionaries(st.sampled_from(_FIELDS), st.one_of(_NASTY, _answer_values), max_size=3),
              st.lists(st.sampled_from(_FIELDS), max_size=2), st.integers(0, 1000)),
)

def _names_a_field(answer) -> bool:
    body = answer.json()
    if body.get("errors"):
        return all(isinstance(k, str) and k for k in body["errors"])
    # The JSON decoder refuses the whole body before any field is read (e.g. a lone surrogate).
    detail = body.get("detail", "")
    return answer.status_code == 400 and ("JSON" in detail or "truncated" in detail)


def _dumped(body) -> bytes:
    return json.dumps(body, allow_nan=False).encode("utf-8", "surrogatepass")


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=_bodies)
async def test_search_the_registration_api(client, body):
    event = await events.get_by_slug("search") if await db.fetch("SELECT id FROM event WHERE slug = 'search'") \
        else await published_event(slug="search", capacity=2, questions=QUESTIONS)
    before = await _counts()
    answer = await client.post(f"/api/v1/events/{event['id']}/registrations", content=_dumped(body),
                               headers={"content-type": "application/json"})
    assert answer.status_code < 500, (body, answer.text[:300])
    if answer.status_code >= 400:
        assert answer.status_code in (400, 409, 413), answer.text[:300]  # 413: the body is over the cap
        assert answer.status_code != 400 or _names_a_field(answer), answer.text[:300]
        assert await _counts() == before, "a refused request wrote nothing"
    else:
        assert answer.status_code == 201 and answer.json()["status"] in ("registered", "waitlisted")
        await _stored_clean()


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


async def _stored_clean() -> None:
    """What an accepted request stored: one-line names, clean text, answers that are offered options."""
    for row in await db.fetch("SELECT name, email, answers FROM registration"):
        assert not _CONTROL.search(row["name"]) and "\n" not in row["name"], repr(row["name"])
        assert row["email"].isascii() and not _CONTROL.search(row["email"]), repr(row["email"])
        answers = json.loads(row["answers"]) if isinstance(row["answers"], str) else row["answers"]
        for q in QUESTIONS:
            given = answers.get(q["key"])
            if q["type"] == "multiple" and given is not None:
                assert given == [o for o in q["options"] if o in given] and len(given) <= len(q["options"])
            elif q["type"] == "single" and given is not None:
                assert given in q["options"]
            elif q["type"] == "text" and given is not None:
                assert isinstance(given, str) and len(given) <= 5000 and not _CONTROL.search(given)


_form_text = st.one_of(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30),
                       st.sampled_from(["", "Ada", "ada@example.org", "bob@example.org", "Student", "Talk", "Panel",
                                        "Jobs", "yes", "no", "\x00", "a\r\nb", "x" * 6000]))
_form = st.dictionaries(
    st.sampled_from(["name", "email", "subscribe", *[f"q_{q['key']}" for q in QUESTIONS], "q_nope", "answers"]),
    st.one_of(_form_text, st.lists(_form_text, max_size=5)),
    max_size=9,
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(form=_form)
async def test_search_the_registration_form(client, form):
    if not await db.fetch("SELECT id FROM event WHERE slug = 'search'"):
        await published_event(slug="search", capacity=2, questions=QUESTIONS)
    before = await _counts()
    answer = await client.post("/events/search/register", data=form, follow_redirects=True)
    assert answer.status_code < 500, (form, answer.text[:300])
    if answer.status_code >= 400:
        assert answer.status_code == 400 and 'class="error"' in answer.text, answer.text[-2000:]
        assert await _counts() == before, "a refused form wrote nothing"
    else:
        assert answer.status_code == 200 and ("You're registered" in answer.text or "waitlist" in answer.text)
        await _stored_clean()
