"""events-app: free events with registration, calendar invites, and a bulletin."""

import os

# Piccolo's migration commands find the engine and app registry through this module.
os.environ.setdefault("PICCOLO_CONF", "events_app.piccolo_conf")

__version__ = "0.1.0"
