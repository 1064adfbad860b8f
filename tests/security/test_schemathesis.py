"""Schemathesis against the running server's own `/schema/openapi.json`, with every check.

A real `events-app serve` (uvicorn, the suite's database) is searched by Schemathesis' CLI in
all its phases (examples, coverage, fuzzing, stateful), as staff (a bearer token), with ids
of real rows offered alongside random ones so that the handlers behind the 404s are reached.
`--checks all`: no 5xx, no dropped connection or time-out; every status, content type, header
and body as the document describes; data the schema forbids refused (the Structs of
web/schemas.py check what they document, strictly); staff operations refused without the token;
405 with Allow for methods a path does not take. The run also fails on Schemathesis' "schema
validation mismatch" warning (an operation that refused nearly everything it was sent).

One allowance, written out below: the schema gives a body's shape, the domain decides what it
means (a real time zone, an end after the start, answers to this event's questions, a topic
that exists, an address we can send to). Data of the right shape with such a meaning can be
refused with a 400 naming the field, so for the operations whose domain checks more than the
shape, `positive_data_acceptance` also takes 400. Every other check applies to them in full.
The seed is fixed so that a failure in CI can be replayed; bump it to search elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from factories import published_event
from server import running_server

from events_app.domain import issues, staff

SEED = 20261130
# Per database run; the whole suite runs twice (SQLite, PostgreSQL).
MAX_TIME_SECONDS = int(os.environ.get("EVENTS_SCHEMATHESIS_SECONDS", "100"))
CHECKS = "all"
# Operations whose domain checks what the values mean, beyond the shape the schema gives.
MEANING_CHECKED_BY_THE_DOMAIN = {
    "events_create": "zone, times in order and in range, URL, slug and text forms",
    "events_change": "the same, against the event's other fields",
    "events_change_preview": "the same as a change",
    "events_register": "the person's name and address, answers to this event's questions",
    "subscribers_subscribe": "the address, topics that exist",
    "list_subscribers": "a topic that exists, numbers in `after` and `limit`",
    "subscribers_csv": "a topic that exists, a known status",
    "issues_create": "slug and date forms, a topic that exists",
    "issues_change": "the same, and the topic only before release",
    "issues_test": "an address we can send to",
    "issues_release": "a time in the future",
    "settings_change": "an accent colour dark enough for AA contrast, an https logo, a usable address and website",
}


async def _seed() -> dict[str, list[int]]:
    await staff.create("fuzz@example.org", "correct horse battery", "Fuzz")
    event = await published_event(
        capacity=2,
        questions=[
            # Not required: a registration of the documented example's shape can succeed.
            {"key": "role", "label": "Role", "type": "single", "options": ["Student", "Staff"], "required": False},
            {"key": "topics", "label": "Topics", "type": "multiple", "options": ["A", "B"], "required": False},
        ],
    )
    # Registrations get an event of their own: the search cancels, closes and moves the others.
    # (Drafts are covered by tests/web/test_api.py: offered here, every case built on one
    # answered 409 and none reached an open event.)
    open_event = await published_event(title="Open for registrations", capacity=2)
    issue_ids = [
        (await issues.create({"title": f"Issue {n}", "issue_date": "2019-10-15", "body": "Hello"}))["id"]
        for n in range(6)
    ]
    return {"event_id": [event["id"]], "issue_id": issue_ids, "open_event": [open_event["id"]]}


# "Schema validation mismatch" (an operation that refused every valid-looking case of a phase)
# fails the run, except here: a registration's `answers` are keyed by that event's own questions,
# which no document can list, and the search cancels, closes and drafts events while it runs, so
# a phase can end with every registration refused (400 for an unknown question, 409 for a closed
# event) though the schema matches. tests/web/test_api.py and security/test_registration_door.py
# check registrations by hand.
# Likewise a release: one per issue (409 after it) and `release_at` ahead of now, a bound that
# moves; a phase that meets only released issues refuses everything. Several issues are offered
# so that most phases find one to release.
MISMATCH_EXPLAINED = {"POST /api/v1/events/{event_id}/registrations", "POST /api/v1/issues/{issue_id}/release"}
# An event's end must follow its start: the schema gives each time's form, the domain this rule
# (and a minimal case has both times equal). Half the searched events get this pair.
TIMES = {"starts_at": ["2030-11-29T12:00:00-05:00"], "ends_at": ["2030-11-29T13:00:00-05:00"]}


def _config(tmp: Path, ids: dict[str, list[int]]) -> Path:
    lines = []
    for name, values in {**ids, **TIMES}.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(values)}", ""]
    lines.append("[parameters]")
    for name in ("event_id", "issue_id"):
        lines.append(f'"path.{name}" = {{ dictionary = "{name}", probability = 0.5 }}')
    for name in TIMES:
        lines.append(f'"body.{name}" = {{ dictionary = "{name}", probability = 0.5 }}')
    lines += ["", "[[operations]]", 'include-operation-id = "events_register"', "[operations.parameters]",
              '"path.event_id" = { dictionary = "open_event", probability = 0.8 }']
    for operation_id in MEANING_CHECKED_BY_THE_DOMAIN:
        lines += ["", "[[operations]]", f'include-operation-id = "{operation_id}"',
                  "[operations.checks.positive_data_acceptance]",
                  'expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "429"]']
    path = tmp / "schemathesis.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_schema(tmp_path):
    ids = await _seed()
    token = await staff.new_token("fuzz@example.org", "schemathesis")
    config = _config(tmp_path, ids)
    st = Path(sys.executable).with_name("st")
    with running_server() as base:
        run = subprocess.run(
            [str(st), "--config-file", str(config), "run", f"{base}/schema/openapi.json",
             "-H", f"Authorization: Bearer {token}", "--checks", CHECKS,
             "--seed", str(SEED), "--max-time", str(MAX_TIME_SECONDS),
             # One worker: CPython 3.11.7's ast module is not thread-safe in Hypothesis' lambda
             # descriptions ("AST constructor recursion depth mismatch" inside Schemathesis).
             "--workers", "1", "--request-timeout", "10", "--generation-database", "none",
             "--no-color", "--report", "junit", "--report-dir", str(tmp_path / "report")],
            capture_output=True, text=True, timeout=MAX_TIME_SECONDS + 240, cwd=tmp_path,
        )
    output = run.stdout + run.stderr
    summary = output[output.rfind("SUMMARY"):] if "SUMMARY" in output else output[-4000:]
    assert run.returncode == 0, f"schemathesis found problems (exit {run.returncode}):\n{output[-12000:]}"
    assert "Tested:" in summary, output[-4000:]
    mismatch = output[output.find("Schema validation mismatch"):output.find("💡", output.find("Schema validation mismatch"))]
    flagged = {line.strip()[2:] for line in mismatch.splitlines() if line.strip().startswith("- ")}
    assert flagged <= MISMATCH_EXPLAINED, output[-12000:]
    assert "failures" not in summary.lower() or "0 failures" in summary.lower(), summary
