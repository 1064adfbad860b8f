"""The `events-app` command as an operator uses it, run as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from events_app import db

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, stdin: str = "", env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "events_app.cli", *args],
        input=stdin, capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})},
    )


async def test_migrate_twice_is_harmless_and_seeds_topics():
    for _ in range(2):
        result = cli("migrate")
        assert result.returncode == 0, result.stderr
    topics = await db.fetch("SELECT slug, name FROM topic ORDER BY slug")
    assert [(t["slug"], t["name"]) for t in topics] == [
        ("bulletin", "Implementation in Action"), ("careers", "Career events"), ("events", "Events"),
    ]


async def test_staff_create_and_token_from_stdin():
    made = cli("staff", "create", "lead@example.org", "--name", "Team Lead", stdin="a long enough password\n")
    assert made.returncode == 0, made.stderr
    token = cli("staff", "token", "lead@example.org", "--label", "ci")
    assert token.returncode == 0
    assert len(token.stdout.strip().splitlines()) == 1 and len(token.stdout.strip()) >= 40
    from events_app.domain import staff

    assert (await staff.by_token(token.stdout.strip()))["email"] == "lead@example.org"
    again = cli("staff", "create", "lead@example.org", stdin="a long enough password\n")
    assert again.returncode == 2 and "already has a staff account" in again.stderr
    short = cli("staff", "create", "other@example.org", stdin="short\n")
    assert short.returncode == 2 and "at least 10 characters" in short.stderr


async def test_staff_password_sets_a_new_password_and_ends_sessions():
    from events_app.domain import staff

    assert cli("staff", "create", "lead@example.org", stdin="the first password\n").returncode == 0
    member = await staff.get_by_email("lead@example.org")
    session = await staff.start_session(member["id"])
    changed = cli("staff", "password", "lead@example.org", stdin="the second password\n")
    assert changed.returncode == 0, changed.stderr
    assert await staff.by_session(session) is None
    assert (await staff.authenticate("lead@example.org", "the second password"))["email"] == "lead@example.org"
    unknown = cli("staff", "password", "nobody@example.org", stdin="a long enough password\n")
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1 and "Traceback" not in unknown.stderr
    short = cli("staff", "password", "lead@example.org", stdin="short\n")
    assert short.returncode == 2 and "at least 10 characters" in short.stderr


async def test_demo_loads_once():
    first = cli("demo")
    assert first.returncode == 0, first.stderr
    assert "staff@example.org with password" in first.stdout
    password = first.stdout.split("with password: ")[1].split()[0]
    second = cli("demo")
    assert second.returncode == 0 and password not in second.stdout and "Added" not in second.stdout
    # A second run says the content is there and how to get in without the lost password.
    assert "already here" in second.stdout and "events-app staff password staff@example.org" in second.stdout
    rows = await db.fetch("SELECT slug, starts_at, timezone, status FROM event ORDER BY starts_at")
    assert len(rows) == 2
    assert rows[0]["starts_at"].isoformat() == "2022-11-29T17:00:00+00:00"  # 12:00 in Toronto
    assert all(r["status"] == "published" and r["timezone"] == "America/Toronto" for r in rows)


def test_bad_arguments_and_environment_exit_2_with_one_line():
    cases = [
        (("frobnicate",), {}),
        (("serve", "--port", "eighty"), {}),
        (("migrate",), {"EVENTS_DATABASE_URL": "mysql://nope"}),
        (("migrate",), {"EVENTS_RATE_LIMITS": "sometimes"}),
        (("serve",), {"EVENTS_SERVE_WORKER": "thread"}),
        (("migrate",), {"EVENTS_ENV": "production", "EVENTS_SECRET_KEY": ""}),
        (("staff", "token", "nobody@example.org"), {}),
    ]
    for args, env in cases:
        result = cli(*args, env=env)
        assert result.returncode == 2, (args, env, result.stderr)
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)


def test_a_bad_log_level_is_refused_by_every_command_naming_the_variable():
    # Read once, with the rest of the environment: `serve` passed it to uvicorn as it was and
    # `inbound` quietly logged at info instead.
    for args in (("migrate",), ("inbound",)):
        result = cli(*args, stdin="Subject: hello\n\nhi\n", env={"EVENTS_LOG_LEVEL": "loud"})
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.strip() == (
            "events-app: EVENTS_LOG_LEVEL must be one of debug, info, warning, error, critical, not 'loud'"
        )
    quiet = cli("inbound", stdin="Subject: hello\n\nhi\n", env={"EVENTS_LOG_LEVEL": "ERROR"})
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


def test_a_server_address_that_cannot_be_used_is_refused_before_anything_runs():
    # The SMTP and PostgreSQL URLs are parsed once, by the settings: a port that is not a number
    # passed the scheme check and raised later, in the worker or the engine, as a traceback.
    cases = [
        ({"EVENTS_SMTP_URL": "smtp://mail.example.org:25x"}, "EVENTS_SMTP_URL"),
        ({"EVENTS_DATABASE_URL": "postgresql://db.example.org:54x2/events"}, "EVENTS_DATABASE_URL"),
    ]
    for env, name in cases:
        result = cli("migrate", env=env)
        assert result.returncode == 2, (env, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and name in result.stderr, result.stderr


def test_wheel_ships_templates_and_email_templates(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("events_app-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "events_app/templates/base.html" in names
    assert "events_app/templates/events/detail.html" in names
    assert any(n.startswith("events_app/emails/registration_confirmed/") for n in names)
    assert any(n.startswith("events_app/migrations/events_app_") for n in names)


def test_serve_says_where_to_look_and_warns_when_links_would_miss_it():
    from dataclasses import replace

    from events_app import settings
    from events_app.cli import serve_banner

    config = replace(settings.get(), base_url="http://127.0.0.1:8000", smtp_url=None)
    lines, warning = serve_banner(config, "127.0.0.1", 8000, True)
    assert lines[0].startswith("Open http://127.0.0.1:8000/events") and warning is None
    assert ".eml files to" in lines[1] and "a worker process started with this server sends it" in lines[1]
    lines, warning = serve_banner(replace(config, serve_worker="task"), "127.0.0.1", 8000, True)
    assert "this process sends it" in lines[1]
    lines, warning = serve_banner(config, "127.0.0.1", 8001, False)
    assert "an `events-app worker` must run" in lines[1]
    assert warning is not None and "EVENTS_BASE_URL=http://127.0.0.1:8001" in warning
    # Behind a proxy the public address has its own port: no warning.
    public = replace(config, base_url="https://events.example.org", smtp_url="smtp://mail.example.org:587")
    lines, warning = serve_banner(public, "0.0.0.0", 8000, True)
    assert warning is None and "sent through mail.example.org:587" in lines[1]
