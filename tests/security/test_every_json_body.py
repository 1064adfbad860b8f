"""Hypothesis over every JSON body the API takes, including bodies that are not JSON at all.

Schemathesis (test_schemathesis.py) searches the documented shapes; this searches below them:
truncated and malformed JSON, invalid UTF-8, lone surrogates, deep nesting, huge numbers, NUL,
wrong top-level types and odd values in real field names, sent to every POST and PATCH under
`/api/` as staff. Each answer is below 500, a 400 names what was wrong (`errors`), and a
refused request (4xx) leaves the database as it was.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from factories import published_event
from security.fuzzing import mostly, snapshot

from events_app.domain import issues

FIELDS = ["title", "starts_at", "ends_at", "timezone", "slug", "summary", "description", "audience", "tags",
          "capacity", "join_url", "registration_closes_at", "questions", "reminders", "recording_url",
          "retention_days", "status", "name", "email", "answers", "subscribe", "topics", "issue_date", "body",
          "topic", "release_at", "include_bounced", "again", "to"]
LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30), st.sampled_from(["", "\x00", "a\x00b", "\ud800", "x" * 5000, "2026-13-40T25:61",
                                           "0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59Z", "America/Toronto",
                                           "published", "draft", "bulletin", "a@b.co", "Student"]),
)
JSON_VALUE = st.recursive(LEAF, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                          max_leaves=12)
BODY = st.one_of(
    st.dictionaries(mostly(st.sampled_from(FIELDS), st.text(max_size=10)), JSON_VALUE, max_size=8)
    .map(lambda d: json.dumps(d, allow_nan=False).encode("utf-8", "surrogatepass")),
    JSON_VALUE.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")),
    st.binary(max_size=64),
    st.sampled_from([b"", b"{", b'{"title": "x"', b"[" * 5000 + b"]" * 5000, b'{"a":' * 3000, b"\xff\xfe{}",
                     b'{"email": "\\ud800"}', b'{"capacity": 1e999}', b"null", b"[]", b'"x"', b"123"]),
)


@pytest.fixture
async def ids(auth):
    event = await published_event(capacity=2, questions=[
        {"key": "role", "label": "Role", "type": "single", "options": ["Student", "Staff"], "required": True}])
    issue = await issues.create({"title": "October 2019", "issue_date": "2019-10-15", "body": "Hi"}, None)
    return {"event_id": [event["id"], 2**40, 0], "issue_id": [issue["id"], 2**40]}


def _json_routes(app) -> list[tuple[str, str]]:
    found = []
    for route in app.routes:
        if route.path.startswith("/api/"):
            for method in ("POST", "PATCH"):
                if method in getattr(route, "methods", ()):
                    found.append((method, route.path))
    return sorted(found)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
async def test_no_json_body_answers_5xx_and_a_refusal_changes_nothing(app, client, auth, ids, data):
    method, path = data.draw(st.sampled_from(_json_routes(app)), label="route")
    route = path
    for name, choices in ids.items():
        path = path.replace("{%s:int}" % name, str(data.draw(mostly(st.just(choices[0]), st.sampled_from(choices)))))
    body = data.draw(BODY, label="body")
    staff = data.draw(mostly(st.just(True), st.just(False)), label="as staff")
    headers = {"content-type": "application/json", **(auth if staff else {})}
    before = await snapshot()
    answer = await client.request(method, path, content=body, headers=headers)
    event(f"{method} {route} -> {answer.status_code}")
    assert answer.status_code < 500, (method, path, body[:200], answer.status_code, answer.text[:500])
    if answer.status_code == 400:
        assert answer.json().get("errors"), (path, body[:200], answer.text[:300])
    if 400 <= answer.status_code < 500:
        assert await snapshot() == before, (method, path, body[:200], answer.status_code)
