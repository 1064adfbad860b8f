"""How PostgreSQL plans the group claim (domain/seats.py GroupClaims, GROUP_PG_SQL).

On a new database the registration table has no planner statistics until autovacuum's first
ANALYZE, up to a minute after the first rows: the length of a rush. Meanwhile PostgreSQL costs
finding an address through the event's (event, created_at) or (event, status) index, filtering on
the address, the same as through (event, email), and took the first: every group read every
registration of its event. Measured on a fresh database, a group of 32 took 3 ms at the start of a
rush and 19 ms 10,000 rows later, and `bench/registration_pg.py` answered 1,052 registrations/s.
GroupClaims now has the table analysed (db.ensure_statistics) while the planner knows nothing
of it (at most once a second), and every cached plan is made again from the statistics.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from conftest import IS_POSTGRES
from events_app import db, settings
from events_app.clock import now
from events_app.domain import seats
from factories import published_event

pg_only = pytest.mark.skipif(not IS_POSTGRES, reason="PostgreSQL's planner (the PostgreSQL suite runs it)")


@pytest.fixture
def clock(monkeypatch):
    """db.ensure_statistics's clock, set by the test, and its memory emptied (per process)."""
    now = {"t": 1000.0}
    monkeypatch.setattr(db, "_clock", lambda: now["t"])
    monkeypatch.setattr(db, "_statistics_known", set())
    monkeypatch.setattr(db, "_statistics_next_check", {})
    return now


async def test_has_statistics_follows_analyze():
    if not IS_POSTGRES:
        assert await db.has_statistics("registration", "event")  # SQLite's planner keeps none
        return
    await db.fetch("CREATE TABLE plan_probe (event integer)")
    try:
        await db.fetch("INSERT INTO plan_probe SELECT g % 3 FROM generate_series(1, 100) g")
        assert not await db.has_statistics("plan_probe", "event")
        await db.fetch("ANALYZE plan_probe")
        assert await db.has_statistics("plan_probe", "event")
        assert not await db.has_statistics("plan_probe", "no_such_column")
    finally:
        await db.fetch("DROP TABLE plan_probe")


@pg_only
async def test_a_group_on_a_table_without_statistics_has_it_analysed(clock):
    """Real statistics, dropped (as on a new database), come back with the groups: the first
    group's ANALYZE finds the table empty (no statistics), the next second's finds its row."""
    event = await published_event(capacity=100)
    await db.fetch("DELETE FROM pg_statistic WHERE starelid = 'registration'::regclass")
    assert not await db.has_statistics("registration", "event")
    group = seats.GroupClaims()
    for who in ("a", "b"):
        row = await group.claim(event["id"], event["version"], "P", f"{who}@example.org", "{}", False, now())
        assert isinstance(row, dict) and row["status"] == "registered"
        clock["t"] += 1.5
    assert await db.has_statistics("registration", "event")


@pg_only
async def test_statistics_are_asked_for_at_most_once_a_second_and_not_once_known(monkeypatch, clock):
    known = {"value": False}
    asked: list[tuple[str, str]] = []
    analysed: list[str] = []

    async def has_statistics(table, column):
        asked.append((table, column))
        return known["value"]

    async def analyze(table):
        analysed.append(table)

    monkeypatch.setattr(db, "has_statistics", has_statistics)
    monkeypatch.setattr(db, "analyze", analyze)
    event = await published_event(capacity=100)
    group = seats.GroupClaims()

    async def one(who):
        row = await group.claim(event["id"], event["version"], "P", f"{who}@example.org", "{}", False, now())
        assert isinstance(row, dict) and row["status"] == "registered"

    await one("a")
    await one("b")  # the same second: not asked again
    assert analysed == ["registration"] and len(asked) == 2  # before and after the ANALYZE
    clock["t"] += 1.5
    known["value"] = True  # autovacuum, or another process, got there first
    await one("c")
    clock["t"] += 10
    await one("d")
    assert analysed == ["registration"] and len(asked) == 3, "once known, nobody asks again"


@pg_only
async def test_a_failing_statistics_check_never_fails_the_group(monkeypatch, caplog, clock):
    async def broken(table, column):
        raise RuntimeError("permission denied for pg_stats")

    monkeypatch.setattr(db, "has_statistics", broken)
    event = await published_event(capacity=1)
    group = seats.GroupClaims()
    rows = [
        await group.claim(event["id"], event["version"], "P", f"{who}@example.org", "{}", False, now())
        for who in ("a", "b")
    ]
    assert [r["status"] for r in rows] == ["registered", "waitlisted"]
    assert "could not have the registration table analysed" in caplog.text


# -- the fault itself, in PostgreSQL's own terms ----------------------------------------------------


def _registration_rows_read(plan: dict) -> int:
    """Rows of the registration table that a plan's scans read (kept and filtered out)."""
    total = 0
    if plan.get("Relation Name") == "registration" and "Scan" in plan["Node Type"]:
        per_loop = plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)
        total += per_loop * plan.get("Actual Loops", 1)
    for child in plan.get("Plans", []):
        total += _registration_rows_read(child)
    return total


def _literal(values: list) -> str:
    return "ARRAY[" + ", ".join(values) + "]"


def _group_arguments(event_id: int, emails: list[str]) -> str:
    """GROUP_PG_SQL's arguments as SQL literals (EXPLAIN EXECUTE takes expressions)."""
    moment = f"'{datetime.now(UTC).isoformat()}'::timestamptz"
    n = len(emails)
    return ", ".join(
        [
            _literal([f"'{e}'" for e in emails]),
            _literal(["'P'"] * n),
            _literal(["'{}'"] * n),
            _literal(["'salt'"] * n),
            _literal(["false"] * n),
            _literal([moment] * n),
            _literal([f"'uid-{e}'" for e in emails]),
            *[str(event_id)] * 4,
            "1",
            moment,
            moment,
        ]
    )


@pg_only
async def test_a_plan_made_on_an_empty_table_reads_the_whole_event_until_the_table_is_analysed():
    """A fresh copy of the three tables (no statistics, nearly empty), in a transaction that is
    rolled back: a group of 3 reads all 2,000 registrations of its event, on a generic plan (the
    one PostgreSQL keeps from the sixth run) and on a plan made for the values alike; after
    ANALYZE, the same prepared statement reads only the group's own addresses."""
    import asyncpg

    types = "text[], text[], text[], text[], boolean[], timestamptz[], text[], int, int, int, int, int, timestamptz, timestamptz"
    conn = await asyncpg.connect(**db.postgres_config(settings.get().database_url))
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute("CREATE SCHEMA plan_probe")
        for table in ("event", "registration", "outbox"):
            await conn.execute(f"CREATE TABLE plan_probe.{table} (LIKE public.{table} INCLUDING ALL)")
        await conn.execute("SET LOCAL search_path = plan_probe")
        event_id = await conn.fetchval(
            "INSERT INTO event (id, slug, title, capacity, status) VALUES (1, 'x', 'x', NULL, 'published') RETURNING id"
        )
        await conn.execute(f"PREPARE grp ({types}) AS {db._compile(seats.GROUP_PG_SQL, True)}")
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute(f"EXECUTE grp ({_group_arguments(event_id, ['a@x', 'b@x', 'c@x'])})")
        await conn.execute(
            "INSERT INTO registration (event, email, name, answers, status, token_salt, sequence, subscribe, "
            "created_at, updated_at, confirmation_sent_at, calendar_uid) SELECT $1, 'r' || g || '@x', 'n', "
            "'{}', 'registered', 's', 0, false, now(), now(), now(), 'u' || g FROM generate_series(1, 2000) g",
            event_id,
        )
        arrivals = iter(range(100))

        async def rows_read(mode: str) -> int:
            await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
            emails = [f"g{next(arrivals)}@x" for _ in range(3)]
            explained = await conn.fetchval(
                f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE grp ({_group_arguments(event_id, emails)})"
            )
            return _registration_rows_read(json.loads(explained)[0]["Plan"])

        assert await rows_read("force_generic_plan") >= 2000, "the fault"
        assert await rows_read("force_custom_plan") >= 2000, "planning for the values is no cure"
        await conn.execute("ANALYZE registration")
        assert await rows_read("force_generic_plan") <= 10
        assert await rows_read("auto") <= 10
    finally:
        await transaction.rollback()  # the copies, the rows and the settings go with it
        await conn.close()
