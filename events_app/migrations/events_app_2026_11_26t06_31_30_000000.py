"""Indexes the tables need, written by hand: SQLite cannot ALTER TABLE ADD CONSTRAINT, so the
(event, email) uniqueness that keeps one seat per person is a unique index, which both engines
enforce the same way. Piccolo runs a migration's raw steps before its table steps, hence a
migration of its own."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-11-26T06:31:30:000000"
VERSION = "1.38.0"
DESCRIPTION = "registration and scheduled-send uniqueness, hot-path indexes"

INDEXES = [
    'CREATE UNIQUE INDEX IF NOT EXISTS registration_event_email ON registration ("event", email)',
    'CREATE INDEX IF NOT EXISTS registration_event_status ON registration ("event", status, id)',
    "CREATE INDEX IF NOT EXISTS outbox_claim ON outbox (status, next_attempt_at)",
    "CREATE UNIQUE INDEX IF NOT EXISTS scheduled_send_once ON scheduled_send (registration, kind, key)",
    # Recipients of a topic are read by topic then subscriber id (keyset pagination).
    "CREATE UNIQUE INDEX IF NOT EXISTS subscription_topic_subscriber ON subscription (topic, subscriber)",
    "CREATE INDEX IF NOT EXISTS subscription_subscriber ON subscription (subscriber)",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="events_app", description=DESCRIPTION)

    async def create():
        for statement in INDEXES:
            await Table.raw(statement)

    async def drop():
        for name in ("registration_event_email", "registration_event_status", "outbox_claim", "scheduled_send_once",
                     "subscription_topic_subscriber", "subscription_subscriber"):
            await Table.raw(f"DROP INDEX IF EXISTS {name}")

    manager.add_raw(create)
    manager.add_raw_backwards(drop)
    return manager
