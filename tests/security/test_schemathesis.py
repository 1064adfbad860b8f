"""Schemathesis against the running server's own `/schema/openapi.json`.

A real `events-app serve` (uvicorn, the suite's database) is searched by Schemathesis' CLI in
all its phases (examples, coverage, fuzzing, stateful), as staff (a bearer token), with ids
of real rows offered alongside random ones so that the handlers behind the 404s are reached.
The run fails on any 5xx, on a dropped connection or time-out (Schemathesis reports those as
errors), and on a response whose status, content type or body the schema does not describe.
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
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"


async def _seed() -> dict[str, list[int]]:
    await staff.create("fuzz@example.org", "correct horse battery", "Fuzz")
    event = await published_event(
        capacity=2,
        questions=[
            {"key": "role", "label": "Role", "type": "single", "options": ["Student", "Staff"], "required": True},
            {"key": "topics", "label": "Topics", "type": "multiple", "options": ["A", "B"], "required": False},
        ],
    )
    draft = await published_event(title="Draft", status="draft")
    issue = await issues.create({"title": "October 2019", "issue_date": "2019-10-15", "body": "Hello"}, None)
    return {"event_id": [event["id"], draft["id"]], "issue_id": [issue["id"]]}


def _config(tmp: Path, ids: dict[str, list[int]]) -> Path:
    lines = []
    for name, values in ids.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(values)}", ""]
    lines.append("[parameters]")
    for name in ids:
        lines.append(f'"path.{name}" = {{ dictionary = "{name}", probability = 0.5 }}')
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
