"""Statements that only need to know what they changed: on SQLite a one-row INSERT ... RETURNING
id runs without its RETURNING clause (SQLite fills a temporary table for one, about a third of
the statement's cost) and answers the rowid, when the table's id is its rowid; db.changes counts
the rows an UPDATE changed. The answers are the ones RETURNING gives, on either engine."""

from __future__ import annotations

import pytest

from events_app import db
from events_app.sqlite_engine import insert_plan
from events_app.tables import ALL_TABLES

INSERT = "INSERT INTO topic (slug, name, description) VALUES ({}, {}, '') RETURNING id"
INSERT_OR_NOT = (
    "INSERT INTO topic (slug, name, description) VALUES ({}, {}, '') ON CONFLICT (slug) DO NOTHING RETURNING id"
)


async def test_a_one_row_insert_answers_its_new_id():
    first = await db.fetch(INSERT, "first", "First")
    second = await db.fetch(INSERT, "second", "Second")
    stored = await db.fetch("SELECT id, slug FROM topic WHERE slug IN ('first', 'second') ORDER BY id")
    assert first == [{"id": stored[0]["id"]}] and second == [{"id": stored[1]["id"]}]
    assert type(first[0]["id"]) is int


async def test_an_insert_that_did_nothing_answers_no_row():
    made = await db.fetch(INSERT_OR_NOT, "once", "Once")
    assert len(made) == 1
    assert await db.fetch(INSERT_OR_NOT, "once", "Again") == []
    assert await db.fetch(INSERT_OR_NOT, "twice", "Twice") != made
    async with db.transaction():  # inside a transaction too
        assert await db.fetch(INSERT_OR_NOT, "twice", "Again") == []
        inside = await db.fetch(INSERT_OR_NOT, "thrice", "Thrice")
    assert inside == [{"id": (await db.fetch("SELECT id FROM topic WHERE slug = 'thrice'"))[0]["id"]}]


async def test_changes_counts_the_rows_changed():
    await db.fetch(INSERT, "a", "A")
    await db.fetch(INSERT, "b", "B")
    assert await db.changes("UPDATE topic SET description = 'x' WHERE slug IN ({}, {})", "a", "b") == 2
    assert await db.changes("UPDATE topic SET description = 'x' WHERE slug = {}", "nobody") == 0
    async with db.transaction():
        assert await db.changes("DELETE FROM topic WHERE slug = {}", "a") == 1


@pytest.mark.parametrize(
    "sql, table",
    [
        ("INSERT INTO t (a, b) VALUES (?, 'x') RETURNING id", "t"),
        ("INSERT INTO t (a) VALUES (?) ON CONFLICT (a) DO NOTHING RETURNING id", "t"),
        ("INSERT INTO t (a) VALUES (?), (?) RETURNING id", None),  # two rows
        ("INSERT INTO t (a) VALUES (?) ON CONFLICT (a) DO UPDATE SET a = excluded.a RETURNING id", None),
        ("INSERT INTO t (a) SELECT a FROM u RETURNING id", None),
        ("INSERT INTO t (a) VALUES (?) RETURNING id, a", None),
        ("INSERT INTO t (a) VALUES (?) RETURNING *", None),
        ("INSERT INTO t (a) VALUES (lower(?)) RETURNING id", None),  # not sure of its shape: as it is
        ("UPDATE t SET a = ? RETURNING id", None),
    ],
)
def test_only_a_one_row_insert_returning_its_id_runs_without_returning(sql, table):
    plan = insert_plan(sql)
    assert (plan.table if plan else None) == table
    if plan:
        assert plan.bare == sql[: -len(" RETURNING id")]


def _sqlite_connection():
    if db.is_postgres():
        pytest.skip("SQLite's rowid")
    return db.engine().loop_connection()


async def test_every_table_of_ours_has_its_id_as_rowid():
    conn = _sqlite_connection()
    for table in ALL_TABLES:
        assert conn.id_is_rowid(table._meta.tablename), table._meta.tablename


async def test_a_table_whose_id_is_not_its_rowid_keeps_returning():
    conn = _sqlite_connection()
    tables = {  # an INSERT's rowid is not the id it wrote in any of these
        "odd_text": "CREATE TABLE odd_text (id TEXT PRIMARY KEY, x TEXT)",
        "odd_desc": "CREATE TABLE odd_desc (id INTEGER PRIMARY KEY DESC, x TEXT)",
        "odd_norowid": "CREATE TABLE odd_norowid (id INTEGER PRIMARY KEY, x TEXT) WITHOUT ROWID",
    }
    try:
        for name, ddl in tables.items():
            conn.raw.execute(ddl)
            assert not conn.id_is_rowid(name)
            wanted = "k1" if name == "odd_text" else 7
            rows = await db.fetch(f"INSERT INTO {name} (id, x) VALUES ({{}}, 'v') RETURNING id", wanted)
            assert rows == [{"id": wanted}]
    finally:
        for name in tables:
            conn.raw.execute(f"DROP TABLE IF EXISTS {name}")
        conn.rowid_ids.clear()
