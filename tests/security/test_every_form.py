"""Hypothesis over every HTML form the app takes, public and staff.

The routes are read from the app itself (every POST outside `/api/`, which Schemathesis
searches), so a new form is searched without anyone remembering to add it. Field names come from
the templates (`name="..."`) and the event's questions, mixed with unknown ones; values include
empty and huge strings, NUL and control characters, invalid UTF-8, repeated keys and odd dates.
Path parameters are real tokens, slugs and ids as often as garbage. Each answer must be 2xx, 3xx
or 4xx, never 5xx, and a refused request (4xx) must leave the database as it was.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from factories import published_event
from security.fuzzing import mostly, snapshot

from events_app import db
from events_app.domain import issues, registrations, staff, subscriptions

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
FIELD_NAMES = sorted(set(re.findall(r'name="([a-z_]+)"', "".join(
    p.read_text() for p in TEMPLATES.rglob("*.html")))) - {"viewport"})
QUESTIONS = [
    {"key": "role", "label": "Role", "type": "single", "options": ["Student", "Staff"], "required": True},
    {"key": "topics", "label": "Topics", "type": "multiple", "options": ["A", "B", "C"], "required": True},
    {"key": "needs", "label": "Needs", "type": "multiple", "options": ["Captions", "Sign language"], "required": False},
    {"key": "about", "label": "About", "type": "text", "required": False},
    {"key": "agree", "label": "Agree", "type": "yesno", "required": True},
]
NASTY = st.sampled_from([
    "", " ", "\x00", "a\x00b", "\x1b[31m", "line\nbreak", "tab\there", "\r\n\r\n", "=1+2", "@SUM(A1)",
    "<script>alert(1)</script>", "../../etc/passwd", "%00", "\u202e", "😀" * 50, "x" * 70_000,
    "0", "-1", "99999999999999999999999", "1e309", "NaN", "true", "yes", "on",
    "0001-01-01T00:00", "9999-12-31T23:59", "2026-02-30T12:00", "2026-03-08T02:30", "24:00",
    "Etc/GMT+14", "Not/AZone", "America/Toronto", "Student", "A", "Captions", "bulletin", "events",
    "a@b.co", "ünï@example.org", "a,b@example.org", "x@example.org\r\nBcc: y@example.org",
])
VALUE = st.one_of(NASTY, st.text(max_size=40))
RAW_VALUE = st.one_of(VALUE.map(lambda s: s.encode("utf-8", "surrogatepass")),
                      st.binary(max_size=20))  # invalid UTF-8 reaches the form parser too


FIELD = mostly(st.sampled_from(FIELD_NAMES + [f"q_{q['key']}" for q in QUESTIONS]), st.text(max_size=12))


def _encode(pairs: list[tuple[str, bytes]]) -> bytes:
    return "&".join(
        quote_from_bytes(k.encode("utf-8", "surrogatepass")) + "=" + quote_from_bytes(v) for k, v in pairs
    ).encode()


@pytest.fixture
async def world():
    """Real things for the path parameters: an event with every question type, a registration,
    a confirmed subscriber, an issue, and a staff session with its CSRF token."""
    from events_app.web.staff.session import csrf_token

    member = await staff.create("fuzz@example.org", "correct horse battery", "Fuzz")
    cookie = await staff.start_session(member["id"])
    event = await published_event(questions=QUESTIONS, capacity=3)
    reg = await registrations.register(event, {"name": "Ada", "email": "ada@example.org",
                                               "answers": {"role": "Student", "topics": ["A"], "agree": "yes"}})
    reg_row = (await db.fetch("SELECT * FROM registration WHERE id = {}", reg["id"]))[0]
    await subscriptions.subscribe("sub@example.org", "Sub", await subscriptions.topic_ids(["bulletin"]))
    sub_row = (await db.fetch("SELECT * FROM subscriber WHERE email = {}", "sub@example.org"))[0]
    issue = await issues.create({"title": "October 2019", "issue_date": "2019-10-15", "body": "Hi"}, member["id"])
    return {
        "member": member, "cookie": cookie, "csrf": csrf_token(cookie),
        "slug": [event["slug"], "no-such-event", "x" * 300],
        "token": [registrations.personal_token(reg_row), subscriptions.manage_token(sub_row),
                  subscriptions.confirm_token(sub_row), "AAAA", "x" * 500],
        "int": [event["id"], reg["id"], issue["id"], member["id"], 0, 2**31, 2**63, 10**30],
        "action": ["cancel", "resend", "attended", "pause", "resume", "retry-failed", "delete", "nope"],
    }


def _form_routes(app) -> list[str]:
    paths = []
    for route in app.routes:
        if "POST" in getattr(route, "methods", ()) and not route.path.startswith("/api/"):
            paths.append(route.path)
    return sorted(paths)


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
async def test_no_form_answers_5xx_and_a_refusal_changes_nothing(app, client, world, data):
    route = path = data.draw(st.sampled_from(_form_routes(app)), label="route")
    for kind, choices in (("slug", world["slug"]), ("token", world["token"]), ("action", world["action"])):
        pattern = "{%s:str}" % kind
        while pattern in path:
            path = path.replace(pattern, quote_from_bytes(
                data.draw(mostly(st.sampled_from(choices), st.text(min_size=1, max_size=20)))
                .encode("utf-8", "surrogatepass"), safe=""), 1)
    path = re.sub(r"\{[a-z_]+:int\}", lambda _: str(data.draw(mostly(
        st.sampled_from(world["int"]), st.integers(min_value=-(2**70), max_value=2**70)))), path)
    pairs = data.draw(st.lists(st.tuples(FIELD, RAW_VALUE), max_size=12), label="fields")
    if path.startswith("/staff") and data.draw(mostly(st.just(True), st.just(False)), label="valid csrf"):
        pairs.append(("csrf_token", world["csrf"].encode()))
    if await staff.by_session(world["cookie"]) is None:  # signed out (or password changed) by an example
        from events_app.web.staff.session import csrf_token

        world["cookie"] = await staff.start_session(world["member"]["id"])
        world["csrf"] = csrf_token(world["cookie"])
        pairs = [(k, world["csrf"].encode() if k == "csrf_token" else v) for k, v in pairs]
    headers = {"content-type": "application/x-www-form-urlencoded"}
    headers["cookie"] = f"events_staff={world['cookie']}"
    before = await snapshot()
    answer = await client.post(path, content=_encode(pairs), headers=headers)
    event(f"{route} -> {answer.status_code}")
    assert answer.status_code < 500, (path, pairs, answer.status_code, answer.text[:500])
    if 400 <= answer.status_code < 500:
        assert await snapshot() == before, (path, pairs, answer.status_code, "a refused request changed the database")
