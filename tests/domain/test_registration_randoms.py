"""A new registration's random values: its token salt and its calendar UID come from one read
of the system's random source on SQLite's fast path (tokens.new_salt_and_uuid), in the forms
tokens.new_salt and registration_links.new_calendar_uid give them."""

from __future__ import annotations

import re
import uuid

from factories import published_event

from events_app import db, settings, tokens
from events_app.domain import registrations


def test_the_salt_and_the_uuid_are_as_new_salt_and_uuid4_make_them():
    seen = set()
    for _ in range(2000):
        salt, hexed = tokens.new_salt_and_uuid()
        assert re.fullmatch(r"[0-9a-f]{32}", salt) and len(tokens.new_salt()) == len(salt)
        made = uuid.UUID(hex=hexed)
        assert made.hex == hexed and made.version == 4 and made.variant == uuid.RFC_4122
        seen |= {salt, hexed}
    assert len(seen) == 4000


async def test_a_new_registration_stores_a_salt_and_a_random_uid():
    event = await published_event(capacity=3)
    ids = [
        (await registrations.register(event, {"name": "Ada", "email": f"ada{i}@example.org"}))["id"] for i in range(3)
    ]
    rows = await db.fetch("SELECT token_salt, calendar_uid FROM registration ORDER BY id")
    assert len(rows) == len(ids) == 3
    host = settings.get().host
    for row in rows:
        assert re.fullmatch(r"[0-9a-f]{32}", row["token_salt"])
        hexed, at, rest = row["calendar_uid"].partition("@")
        assert at and rest == host[: 64 - 33] and uuid.UUID(hex=hexed).version == 4
        assert row["calendar_uid"] == f"{hexed}@{host}"[:64]
    assert len({r["token_salt"] for r in rows} | {r["calendar_uid"] for r in rows}) == 6
