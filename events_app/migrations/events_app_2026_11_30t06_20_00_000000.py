"""Give every existing row its stored identifier, so that no GET ever has to write one.

Registrations and events keep the UIDs their invites and calendar files already carried
(`reg-<id>@<host>`, `event-<id>@<host>`): calendars hold entries under them, and a new UID would
put a second copy beside each. Only rows made from now on get random ones (domain code). Issues
get a random UUID (their Atom id changes once, from the slug address to `urn:uuid:`).
"""

import uuid
from urllib.parse import urlsplit

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-11-30T06:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "stored identifiers for rows made before they existed"


async def backfill() -> None:
    """Fill the empty identifiers (idempotent: rows that have one are left alone)."""
    from events_app import settings

    cfg = settings.get()
    host = (urlsplit(cfg.base_url).hostname or "localhost").replace("'", "")
    await Table.raw(f"UPDATE registration SET calendar_uid = 'reg-' || id || '@{host}' WHERE calendar_uid = ''")
    await Table.raw(f"UPDATE event SET calendar_uid = 'event-' || id || '@{host}' WHERE calendar_uid = ''")
    # A random UUID each, as domain/issues.py gives new issues (a few rows: one statement each).
    for row in await Table.raw("SELECT id FROM issue WHERE uid = ''"):
        await Table.raw("UPDATE issue SET uid = {} WHERE id = {} AND uid = ''", str(uuid.uuid4()), row["id"])


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="events_app", description=DESCRIPTION)

    async def nothing():
        pass

    manager.add_raw(backfill)
    manager.add_raw_backwards(nothing)
    return manager
