"""Piccolo's configuration: the engine from our settings and our one app."""

from piccolo.conf.apps import AppRegistry

from . import db

DB = db.engine()

APP_REGISTRY = AppRegistry(apps=["events_app.piccolo_app"])
