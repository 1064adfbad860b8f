"""Test set-up shared by the whole suite.

The suite runs against whatever `EVENTS_DATABASE_URL` names (make test runs it once on SQLite and
once on a throwaway PostgreSQL database). A PostgreSQL URL that does not answer fails the run:
it never skips. Rows are deleted between tests (the app runs in the test's own event loop, so a
fixture transaction could not be rolled back across it anyway).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

_TMP = Path(tempfile.mkdtemp(prefix="events-test-"))
os.environ.setdefault("EVENTS_DATABASE_URL", f"sqlite:///{_TMP / 'test.sqlite3'}")
os.environ["EVENTS_VAR_DIR"] = str(_TMP / "var")
os.environ["EVENTS_SECRET_KEY"] = "test-secret-key-of-enough-length"
os.environ["EVENTS_BASE_URL"] = "http://testserver"
os.environ["EVENTS_MAIL_FROM"] = "Implementation Centre <events@example.org>"
os.environ.pop("EVENTS_SMTP_URL", None)
os.environ.setdefault("EVENTS_RATE_LIMITS", "off")

sys.path.insert(0, str(Path(__file__).parent))

from events_app import db, settings  # noqa: E402
from events_app.tables import ALL_TABLES  # noqa: E402

IS_POSTGRES = not os.environ["EVENTS_DATABASE_URL"].startswith("sqlite")


def pytest_report_header(config):
    return f"events-app database: {os.environ['EVENTS_DATABASE_URL']}"


@pytest.fixture(scope="session", autouse=True)
async def database():
    """Migrate the test database once; fail loudly if it cannot be reached."""
    from events_app.cli import migrate

    try:
        await db.start()
        await migrate(quiet=True)
    except Exception as exc:  # a PostgreSQL run must not turn into skips
        pytest.exit(f"test database {os.environ['EVENTS_DATABASE_URL']} is not usable: {exc}", returncode=3)
    yield
    await db.stop()


@pytest.fixture(autouse=True)
async def clean_tables(database):
    """Every test starts from empty tables plus the seeded topics."""
    from events_app.domain import events, seed

    for table in reversed(ALL_TABLES):
        await db.fetch(f"DELETE FROM {table._meta.tablename}")
    events.forget()  # ids are reused once the rows are gone
    await seed.topics()
    yield


@pytest.fixture
def config():
    return settings.get()


@pytest.fixture
async def app():
    from events_app.app import create_app

    # The session fixture already opened the database; the app's lifespan (pool, worker) is
    # exercised by the tests that start a real server process.
    return create_app(run_worker=False)


@pytest.fixture
async def client(app):
    """An HTTP client talking to the app in this event loop."""
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def staff_token():
    from events_app.domain import staff

    await staff.create("staff@example.org", "correct horse battery", "Staff")
    return await staff.new_token("staff@example.org", "tests")


@pytest.fixture
def auth(staff_token):
    return {"Authorization": f"Bearer {staff_token}"}
