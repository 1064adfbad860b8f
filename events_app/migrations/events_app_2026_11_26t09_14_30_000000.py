"""Indexes for bulk mail and the staff workspace, written by hand (see the first index migration
for why they are not constraints): the bulk-mail ledger key (mailing, subscriber) is unique, so
that however often or by however many workers a release is expanded, nobody gets two rows."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-11-26T09:14:30:000000"
VERSION = "1.38.0"
DESCRIPTION = "bulk-mail ledger uniqueness; audit and session indexes"

INDEXES = {
    "outbox_mailing_subscriber": "CREATE UNIQUE INDEX IF NOT EXISTS outbox_mailing_subscriber "
    "ON outbox (mailing, subscriber)",
    # Claims take transactional rows (mailing IS NULL) first, then each mailing's, in due order;
    # delivery counts read (status, mailing) ranges. It replaces outbox_claim (status, due).
    "outbox_due": "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, mailing, next_attempt_at)",
    "audit_entry_created": "CREATE INDEX IF NOT EXISTS audit_entry_created ON audit_entry (created_at)",
    "staff_session_staff": "CREATE INDEX IF NOT EXISTS staff_session_staff ON staff_session (staff)",
    "registration_created": "CREATE INDEX IF NOT EXISTS registration_created ON registration (\"event\", created_at)",
}


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="events_app", description=DESCRIPTION)

    async def create():
        for statement in INDEXES.values():
            await Table.raw(statement)
        await Table.raw("DROP INDEX IF EXISTS outbox_claim")

    async def drop():
        await Table.raw("CREATE INDEX IF NOT EXISTS outbox_claim ON outbox (status, next_attempt_at)")
        for name in INDEXES:
            await Table.raw(f"DROP INDEX IF EXISTS {name}")

    manager.add_raw(create)
    manager.add_raw_backwards(drop)
    return manager
