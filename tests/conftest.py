"""Test set-up shared by the whole suite, and every fixture used in more than one folder.

Fixtures live in conftest.py files only (here, or in the conftest.py of the one folder that uses
them): a test module never imports a fixture (`ruff check tests --select F401,F811` stays clean).
Helpers that are plain functions live in modules next to the tests (factories.py, mail/sending.py,
mail/helpers.py, staff/conftest.py ...).

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
    from events_app.domain import identity, images

    identity.forget()  # the organisation of the last test is not this one's
    images.forget()
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


# -- staff ------------------------------------------------------------------------------------

STAFF_EMAIL = "lead@example.org"
STAFF_PASSWORD = "correct horse battery"


@pytest.fixture
async def member():
    """A staff member (STAFF_EMAIL, STAFF_PASSWORD); staff/conftest.py signs a client in as them."""
    from events_app.domain import staff

    return await staff.create(STAFF_EMAIL, STAFF_PASSWORD, "Team Lead")


# -- mail: a loopback SMTP server and workers sending to it -------------------------------------


@pytest.fixture
def smtp_server():
    """A started SMTPSink (tests/smtp_server.py) per test, stopped afterwards."""
    from smtp_server import SMTPSink

    sink = SMTPSink().start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def smtp_settings(smtp_server):
    """The settings with mail going to `smtp_server`."""
    import dataclasses

    return dataclasses.replace(settings.get(), smtp_url=smtp_server.url)


@pytest.fixture
async def worker(smtp_settings):
    """A mail worker sending to `smtp_server`."""
    from events_app.mail.worker import Worker

    w = Worker(smtp_settings)
    yield w
    await w.transport.close()


@pytest.fixture
async def two_workers(smtp_settings):
    """Two workers, each with its own SMTP connection, as two worker processes would have."""
    from events_app.mail.worker import Worker

    pair = (Worker(smtp_settings), Worker(smtp_settings))
    yield pair
    for w in pair:
        await w.transport.close()


@pytest.fixture
def clock(monkeypatch):
    """A mail.sending.Clock: the time the test says it is; call `clock.set(moment)` before acting."""
    from mail.sending import Clock

    from events_app.domain import registrations

    return Clock(monkeypatch, registrations.now())


# -- browser ------------------------------------------------------------------------------------


@pytest.fixture
def chromium_path():
    """Debian's Chromium, which the browser journeys (tests/browser) drive with Playwright."""
    import shutil

    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        pytest.fail("Debian's chromium is required for the browser journeys: apt-get install chromium")
    return path
