"""Units of work sharing a commit (db.atomic; on SQLite events_app/sqlite_engine.py runs the
units of one turn of the loop in one transaction, without savepoints, and runs the batch again
with one savepoint per unit when a unit failed): whatever fails, each unit commits or rolls back
alone, a failed unit's partial writes are gone, and a unit run twice counts once."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events_app import db


class ChangedMind(Exception):
    pass


# One unit: how many rows it writes, whether it bumps the shared counter, and how it ends:
# "ok", "raise" (a Python exception after its writes) or "sql" (a statement that fails, a unique
# violation, after its writes).
UNIT = st.tuples(st.integers(0, 3), st.booleans(), st.sampled_from(["ok", "ok", "raise", "sql"]))


async def _reset() -> None:
    await db.fetch("DELETE FROM topic WHERE slug LIKE 'u%'")
    await db.fetch("UPDATE topic SET description = '' WHERE slug = 'events'")


def _unit(i: int, writes: int, bump: bool, end: str, runs: dict[int, int]):
    async def work() -> list[str]:
        runs[i] = runs.get(i, 0) + 1
        slugs = [f"u{i}-{k}" for k in range(writes)]
        for slug in slugs:
            await db.fetch("INSERT INTO topic (slug, name, description) VALUES ({}, {}, '')", slug, slug)
        if bump:
            await db.fetch("UPDATE topic SET description = description || 'x' WHERE slug = 'events'")
        if end == "raise":
            raise ChangedMind(i)
        if end == "sql":
            await db.fetch("INSERT INTO topic (slug, name, description) VALUES ('events', 'again', '')")
        return slugs

    return work


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(units=st.lists(UNIT, min_size=1, max_size=12))
async def test_each_unit_commits_or_rolls_back_alone(units):
    await _reset()
    runs: dict[int, int] = {}
    results = await asyncio.gather(
        *(db.atomic(_unit(i, *unit, runs)) for i, unit in enumerate(units)), return_exceptions=True
    )
    kept: set[str] = set()
    bumps = 0
    for i, ((writes, bump, end), result) in enumerate(zip(units, results, strict=True)):
        if end == "ok":
            assert result == [f"u{i}-{k}" for k in range(writes)]
            kept |= set(result)
            bumps += bump
        elif end == "raise":
            assert isinstance(result, ChangedMind)
        else:
            assert db.is_unique_violation(result)
        # A failed unit runs once; another runs at most twice (its first run undone).
        assert 1 <= runs[i] <= (1 if end != "ok" else 2)
    rows = await db.fetch("SELECT slug FROM topic WHERE slug LIKE 'u%'")
    assert {r["slug"] for r in rows} == kept
    counter = await db.fetch("SELECT description FROM topic WHERE slug = 'events'")
    assert counter[0]["description"] == "x" * bumps


async def test_a_failure_runs_the_units_before_it_again_and_not_itself():
    if db.is_postgres():
        pytest.skip("PostgreSQL runs each unit in its own transaction")
    await _reset()
    runs: dict[int, int] = {}
    plan = [(1, True, "ok"), (2, True, "raise"), (1, True, "ok"), (0, False, "sql"), (1, False, "ok")]
    results = await asyncio.gather(*(db.atomic(_unit(i, *u, runs)) for i, u in enumerate(plan)), return_exceptions=True)
    assert results[0] == ["u0-0"] and results[2] == ["u2-0"] and results[4] == ["u4-0"]
    assert isinstance(results[1], ChangedMind) and db.is_unique_violation(results[3])
    # Unit 0 ran before the first failure (undone, then again); the failed ones ran once; the
    # others once, in the second transaction.
    assert runs == {0: 2, 1: 1, 2: 1, 3: 1, 4: 1}
    rows = await db.fetch("SELECT slug FROM topic WHERE slug LIKE 'u%' ORDER BY slug")
    assert [r["slug"] for r in rows] == ["u0-0", "u2-0", "u4-0"]
    counter = await db.fetch("SELECT description FROM topic WHERE slug = 'events'")
    assert counter[0]["description"] == "xx"


async def test_a_batch_without_failures_runs_each_unit_once():
    await _reset()
    runs: dict[int, int] = {}
    results = await asyncio.gather(*(db.atomic(_unit(i, 1, True, "ok", runs)) for i in range(20)))
    assert results == [[f"u{i}-0"] for i in range(20)]
    assert runs == {i: 1 for i in range(20)}
    counter = await db.fetch("SELECT description FROM topic WHERE slug = 'events'")
    assert counter[0]["description"] == "x" * 20
