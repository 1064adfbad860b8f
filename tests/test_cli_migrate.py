"""`events-app migrate` says what it did, and `events-app demo` names the seed organisation, run as
real subprocesses on the engine of this run (a database of their own for the first migration)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from events_app.cli import migration_descriptions
from events_app.demo import ORGANISATION
from events_app.domain import identity


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "events_app.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@contextmanager
def empty_database(tmp_path: Path):
    """The URL of a database nobody has migrated, on the engine this run uses."""
    url = os.environ["EVENTS_DATABASE_URL"]
    if url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    import asyncio

    import asyncpg

    name = f"events_migrate_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(url)
    admin = urlunsplit((parts.scheme, parts.netloc, "/postgres", "", ""))

    async def run(statement: str) -> None:
        conn = await asyncpg.connect(admin, timeout=10)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_migrate_lists_what_it_applied_then_says_there_was_nothing_to_do(tmp_path):
    described = migration_descriptions()
    assert len(described) >= 8 and "initial schema" in described.values()
    with empty_database(tmp_path) as url:
        first = cli("migrate", env={"EVENTS_DATABASE_URL": url})
        assert first.returncode == 0, first.stderr
        lines = first.stdout.strip().splitlines()
        assert lines[0] == f"Applied {len(described)} migrations:"
        assert lines[-1] == "Database is up to date."
        # One line per migration, oldest first: its day and what it does.
        listed = lines[1:-1]
        assert listed == [f"  {ident[:10]}  {what}" for ident, what in sorted(described.items())]
        assert any("organisation identity" in line for line in listed)
        second = cli("migrate", env={"EVENTS_DATABASE_URL": url})
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip() == f"Database is up to date ({len(described)} migrations applied before)."


async def test_demo_names_the_organisation_once_and_keeps_a_name_staff_chose():
    try:
        first = cli("demo")
        assert first.returncode == 0, first.stderr
        assert f"Named the organisation '{ORGANISATION}'" in first.stdout
        assert (await identity.stored())["organisation_name"] == ORGANISATION
        await identity.update({"organisation_name": "Our Own Centre"})
        second = cli("demo")
        assert second.returncode == 0 and "Named the organisation" not in second.stdout
        assert (await identity.stored())["organisation_name"] == "Our Own Centre"
    finally:
        identity.forget()


async def test_demo_leaves_the_name_chosen_in_the_environment(tmp_path):
    try:
        result = cli("demo", env={"EVENTS_ORG_NAME": "Env Centre"})
        assert result.returncode == 0, result.stderr
        assert "Named the organisation" not in result.stdout
        assert (await identity.stored())["organisation_name"] == ""
    finally:
        identity.forget()
