"""The Piccolo app: our tables and their migrations (generated against PostgreSQL)."""

import os

from piccolo.conf.apps import AppConfig

from .tables import ALL_TABLES

APP_CONFIG = AppConfig(
    app_name="events_app",
    migrations_folder_path=os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations"),
    table_classes=ALL_TABLES,
    migration_dependencies=[],
    commands=[],
)
