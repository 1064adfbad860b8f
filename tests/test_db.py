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
