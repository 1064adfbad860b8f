"""The registrants CSV as a spreadsheet opens it (issue 14): question labels as column headers,
times to the second with the offset of the event's zone, no formulas."""

from __future__ import annotations

import csv
import io
import re

from events_app import db
from events_app.domain import exports, registrations
from factories import published_event

QUESTIONS = [
    {"key": "where_are_you_in_your_career", "label": "Where are you in your career?", "type": "single",
     "options": ["Graduate student", "Recent graduate"], "required": True},
    {"key": "topics", "label": "Topics", "type": "multiple", "options": ["Policy", "Industry"]},
    {"key": "email_2", "label": "Email", "type": "text"},  # clashes with a fixed column
    {"key": "note", "label": "=Note", "type": "text"},  # a label spreadsheets would run
]


async def test_headers_are_the_question_labels_and_times_iso_to_the_second(client, csrf):
    event = await published_event(questions=QUESTIONS, timezone="America/Toronto")
    reg = await registrations.register(event, {
        "name": "Ada Lovelace", "email": "ada@example.org",
        "answers": {"where_are_you_in_your_career": "Graduate student", "topics": ["Policy", "Industry"],
                    "email_2": "other@example.org", "note": "-1"}})
    await db.fetch("UPDATE registration SET attended_at = created_at WHERE id = {}", reg["id"])
    answer = await client.get(f"/staff/events/{event['id']}/registrants.csv")
    reader = csv.reader(io.StringIO(answer.text))
    header = next(reader)
    assert header == ["id", "name", "email", "status", "waitlist_position", "registered_at", "attended_at",
                      "Where are you in your career?", "Topics", "Email (email_2)", "'=Note"]
    (row,) = list(csv.DictReader(io.StringIO(answer.text)))
    assert row["Where are you in your career?"] == "Graduate student" and row["Topics"] == "Policy; Industry"
    assert row["'=Note"] == "'-1"
    # ISO 8601, no microseconds, the offset of Toronto (EST or EDT), parseable by spreadsheets.
    for column in ("registered_at", "attended_at"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d-0[45]:00", row[column]), row[column]
    (made,) = await db.fetch("SELECT created_at FROM registration WHERE id = {}", reg["id"])
    from datetime import datetime

    assert datetime.fromisoformat(row["registered_at"]) == made["created_at"].replace(microsecond=0)
    # The API's download is the same file.
    assert (await exports.registrants_csv(event["id"]))[1] == answer.text


def test_question_headers_fall_back_to_the_key_and_stay_unique():
    assert exports.question_headers([
        {"key": "a", "label": "Stage"}, {"key": "b", "label": "stage"}, {"key": "c", "label": ""}]) == [
        "Stage (a)", "stage (b)", "c"]
