"""The engine layer: one SQL text on both engines, atomic units, unique violations."""

from __future__ import annotations

import asyncio

import pytest

from events_app import db


async def _topics() -> set[str]:
    return {r["slug"] for r in await db.fetch("SELECT slug FROM topic")}


async def test_atomic_units_at_once_each_commit_or_roll_back_alone():
    async def add(slug: str, fail: bool):
        await db.fetch("INSERT INTO topic (slug, name, description) VALUES ({}, {}, '')", slug, slug)
        if fail:
            raise ValueError(f"{slug} changes its mind")
        return slug

    results = await asyncio.gather(
        *(db.atomic(lambda i=i: add(f"t{i}", fail=(i % 3 == 0))) for i in range(12)),
        return_exceptions=True,
    )
    failed = [r for r in results if isinstance(r, ValueError)]
    assert len(failed) == 4
    assert await _topics() == {"bulletin", "events", "careers"} | {f"t{i}" for i in range(12) if i % 3}


async def test_a_unique_violation_is_recognised_on_either_engine():
    with pytest.raises(Exception) as caught:
        await db.fetch("INSERT INTO topic (slug, name, description) VALUES ('events', 'again', '')")
    assert db.is_unique_violation(caught.value)
    assert not db.is_unique_violation(ValueError("UNIQUE constraint failed"))


async def test_a_transaction_is_all_or_nothing():
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await db.fetch("INSERT INTO topic (slug, name, description) VALUES ('gone', 'gone', '')")
            raise RuntimeError("stop")
    assert "gone" not in await _topics()


def test_placeholders_compile_for_each_engine():
    sql = "SELECT * FROM t WHERE a = {} AND b IN ({}, {})"
    assert db._compile(sql, False) == "SELECT * FROM t WHERE a = ? AND b IN (?, ?)"
    assert db._compile(sql, True) == "SELECT * FROM t WHERE a = $1 AND b IN ($2, $3)"


async def test_the_one_statement_registration_writes_what_the_general_path_writes():
    """On PostgreSQL a new registration with a free seat is one statement (registrations.
    FAST_PG_SQL); its outbox row must be the one outbox.enqueue writes, or the worker would
    read it differently. On SQLite the general path runs: the same assertions hold."""
    from events_app.domain import registrations
    from events_app.domain import outbox
    from factories import published_event

    event = await published_event(capacity=5)
    shown = await registrations.register(event, {"name": "Ada", "email": "ada@example.org"})
    assert shown["status"] == "registered" and shown["waitlist_position"] is None
    await outbox.enqueue("registration_confirmed", "ada@example.org", {"registration_id": shown["id"]})
    fast, reference = await db.fetch(
        "SELECT kind, recipient, payload, status, attempts, last_error, claimed_at, sent_at, mailing, "
        "subscriber, next_attempt_at = created_at AS due_at_once FROM outbox ORDER BY id"
    )
    assert fast == reference
    reg = (await db.fetch("SELECT * FROM registration WHERE id = {}", shown["id"]))[0]
    assert (reg["status"], reg["sequence"], reg["email"], len(reg["token_salt"])) == ("registered", 0, "ada@example.org", 32)
    assert (await db.fetch("SELECT taken FROM event WHERE id = {}", event["id"]))[0]["taken"] == 1


async def test_a_registration_is_judged_on_the_current_event_not_a_stale_copy(client):
    """Another process cancels or reopens the event behind this process's cached copy
    (events.current): the registration answers as the current event requires."""
    from factories import published_event

    event = await published_event(capacity=5)
    url = f"/api/v1/events/{event['id']}/registrations"
    assert (await client.post(url, json={"name": "Ada", "email": "ada@example.org"})).status_code == 201
    await db.fetch("UPDATE event SET status = 'cancelled', version = version + 1 WHERE id = {}", event["id"])
    refused = await client.post(url, json={"name": "Bo", "email": "bo@example.org"})
    assert refused.status_code == 409 and refused.json()["reason"] == "cancelled"
    await db.fetch("UPDATE event SET status = 'published', version = version + 1 WHERE id = {}", event["id"])
    assert (await client.post(url, json={"name": "Bo", "email": "bo@example.org"})).status_code == 201
    rows = await db.fetch("SELECT email FROM registration WHERE event = {} ORDER BY id", event["id"])
    assert [r["email"] for r in rows] == ["ada@example.org", "bo@example.org"]


async def test_rows_made_before_stored_identifiers_get_them_at_migration():
    """Existing registrations and events keep the UIDs their invites already carried; issues get
    a random uid; rows that have one keep it (so no GET ever has to write one)."""
    import importlib
    import uuid

    from factories import published_event

    from events_app.domain import issues, registrations

    backfill = importlib.import_module("events_app.migrations.events_app_2026_11_30t06_20_00_000000").backfill
    event = await published_event()
    reg = await registrations.register(event, {"name": "Ada", "email": "ada@example.org"})
    first = await issues.create({"title": "Old", "issue_date": "2019-10-15"}, None)
    second = await issues.create({"title": "Older", "issue_date": "2019-09-15"}, None)
    await db.fetch("UPDATE registration SET calendar_uid = ''")
    await db.fetch("UPDATE event SET calendar_uid = ''")
    await db.fetch("UPDATE issue SET uid = '' WHERE id IN ({}, {})", first["id"], second["id"])
    await backfill()
    await backfill()
    assert (await db.fetch("SELECT calendar_uid FROM registration WHERE id = {}", reg["id"]))[0]["calendar_uid"] == f"reg-{reg['id']}@testserver"
    assert (await db.fetch("SELECT calendar_uid FROM event WHERE id = {}", event["id"]))[0]["calendar_uid"] == f"event-{event['id']}@testserver"
    uids = [r["uid"] for r in await db.fetch("SELECT uid FROM issue ORDER BY id")]
    assert all(str(uuid.UUID(u)) == u for u in uids) and len(set(uids)) == 2
