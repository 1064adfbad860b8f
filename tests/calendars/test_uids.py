"""Calendar identity: UIDs random, stored and never reused across databases; a new registration
after a cancel is a new entry; an old row without a UID gets one once; SEQUENCE only grows."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from events_app import db, settings
from events_app.domain import events, registrations, seed
from events_app.mail import messages

from factories import published_event

from .readers import by_icalendar

IS_POSTGRES = not os.environ["EVENTS_DATABASE_URL"].startswith("sqlite")


def uids_of(data: bytes) -> list[str]:
    return [uid for uid, _, _ in by_icalendar(data)]


async def rendered_uids(kind: str = "registration_confirmed") -> list[str]:
    out = []
    for row in await db.fetch("SELECT * FROM outbox WHERE kind = {} ORDER BY id", kind):
        message = await messages.build(row, settings.get())
        for part in message.walk():
            if part.get_content_type() == "text/calendar":
                out += uids_of(part.get_payload(decode=True))
    return out


async def what_one_database_emits(client) -> set[str]:
    """A fresh database: two events, two registrations each; every UID its invites and public
    .ics carry (ids 1, 2, ... as any fresh database has them)."""
    found: set[str] = set()
    for n in range(2):
        event = await published_event(slug=f"careers-{n}", title=f"Careers {n}")
        for who in ("ada", "bob"):
            await registrations.register(await events.get(event["id"]), {"name": who, "email": f"{who}@example.org"})
        found |= set(uids_of((await client.get(f"/events/careers-{n}.ics")).content))
    found |= set(uids_of((await client.get("/calendar.ics")).content))
    invites = await rendered_uids()
    assert len(invites) == 4 and len(set(invites)) == 4
    return found | set(invites)


@asynccontextmanager
async def another_fresh_database():
    """Point the app at a second, fresh database (same base URL), then back."""
    url = os.environ["EVENTS_DATABASE_URL"]
    if IS_POSTGRES:
        import asyncpg

        name = f"events_uid_{uuid.uuid4().hex[:10]}"
        conn = await asyncpg.connect(url)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        parts = urlsplit(url)
        other = urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))
    else:
        other = f"sqlite:///{Path(settings.get().sqlite_path).with_name(f'other-{uuid.uuid4().hex[:8]}.sqlite3')}"
    await db.stop()
    db.reset()
    os.environ["EVENTS_DATABASE_URL"] = other
    settings.reset()
    try:
        # Migrated as an operator would (Piccolo's migration table stays bound to the first engine
        # in this process).
        done = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("events-app")), "migrate",
            env={**os.environ, "EVENTS_DATABASE_URL": other})
        assert await done.wait() == 0
        await db.start()
        await seed.topics()
        events.forget()
        yield
    finally:
        await db.stop()
        db.reset()
        os.environ["EVENTS_DATABASE_URL"] = url
        settings.reset()
        events.forget()
        await db.start()
        if IS_POSTGRES:
            conn = await asyncpg.connect(url)
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()


async def test_two_fresh_databases_behind_one_address_never_share_a_uid(client):
    first = await what_one_database_emits(client)
    async with another_fresh_database():
        assert not await db.fetch("SELECT id FROM event")
        second = await what_one_database_emits(client)
    assert len(first) == len(second) == 6
    assert not first & second, first & second
    host = urlsplit(settings.get().base_url).hostname
    assert all(uid.endswith("@" + host) for uid in first | second)


async def test_a_new_registration_after_a_cancel_is_a_new_entry(client):
    event = await published_event(slug="careers")
    ada = await registrations.register(await events.get(event["id"]), {"name": "Ada", "email": "ada@example.org"})
    row = (await db.fetch("SELECT * FROM registration WHERE id = {}", ada["id"]))[0]
    token = registrations.personal_token(row)
    before = uids_of((await client.get(f"/r/{token}.ics")).content)
    assert before == [row["calendar_uid"]] and len(row["calendar_uid"]) > 30
    await client.post(f"/r/{token}/cancel")
    again = await registrations.register(await events.get(event["id"]), {"name": "Ada", "email": "ada@example.org"})
    assert again["id"] == ada["id"]
    row2 = (await db.fetch("SELECT * FROM registration WHERE id = {}", ada["id"]))[0]
    assert row2["calendar_uid"] not in ("", row["calendar_uid"])
    assert row2["sequence"] > row["sequence"]
    # the first registration's CANCEL names the first entry; the new confirmation the new one
    assert await rendered_uids("registration_cancelled") == [row["calendar_uid"]]
    assert (await rendered_uids())[-1] == row2["calendar_uid"]
    assert uids_of((await client.get(f"/r/{token}.ics")).content) == [row2["calendar_uid"]]


async def test_an_old_row_without_a_uid_gets_one_once(client):
    event = await published_event(slug="careers")
    ada = await registrations.register(await events.get(event["id"]), {"name": "Ada", "email": "ada@example.org"})
    await db.fetch("UPDATE registration SET calendar_uid = ''")
    await db.fetch("UPDATE event SET calendar_uid = ''")
    row = (await db.fetch("SELECT * FROM registration WHERE id = {}", ada["id"]))[0]
    token = registrations.personal_token(row)
    answers = await asyncio.gather(*(client.get(f"/r/{token}.ics") for _ in range(5)))
    seen = {tuple(uids_of(a.content)) for a in answers} | {tuple(await rendered_uids())}
    stored = (await db.fetch("SELECT calendar_uid FROM registration"))[0]["calendar_uid"]
    assert seen == {(stored,)} and stored
    public = {tuple(uids_of((await client.get("/events/careers.ics")).content)) for _ in range(3)}
    stored = (await db.fetch("SELECT calendar_uid FROM event"))[0]["calendar_uid"]
    assert public == {(stored,)} and stored
