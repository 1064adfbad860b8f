"""A change made by another process is seen by the very next request, on SQLite and PostgreSQL,
though the event page's key is no longer read from the row on every request (domain/events.py
`page_key`: on SQLite the rows are kept while the database's data_version and this connection's
total_changes stay; on PostgreSQL overlapping reads are made one)."""

from __future__ import annotations

import asyncio
import sqlite3

import httpx
import pytest
from factories import published_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server import running_server

from events_app import db
from events_app import settings as app_settings
from events_app.domain import events


async def _raw_write(sql_sqlite: str, sql_pg: str, *args) -> None:
    """Commit `sql` through a connection of its own, as a third process would (no app code)."""
    cfg = app_settings.get()
    if cfg.is_sqlite:
        conn = sqlite3.connect(cfg.sqlite_path, timeout=10)
        try:
            conn.execute(sql_sqlite, args)
            conn.commit()
        finally:
            conn.close()
    else:
        import asyncpg

        conn = await asyncpg.connect(cfg.database_url)
        try:
            await conn.execute(sql_pg, *args)
        finally:
            await conn.close()


async def _add_taken(slug: str, n: int) -> None:
    await _raw_write(
        "UPDATE event SET taken = taken + ? WHERE slug = ?",
        "UPDATE event SET taken = taken + $1 WHERE slug = $2",
        n,
        slug,
    )


async def test_changes_in_either_process_show_in_the_other_at_once(client, auth):
    """Two servers on one database, each with its own connection or pool: every change, made in
    either (title through the API, seats through a registration) or behind both (a raw
    connection), is on the very next page of both, with a new ETag; nothing in between."""
    event = await published_event(slug="careers", title="Title 0", capacity=40)
    with running_server() as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as other:
            here, there = await client.get("/events/careers"), await other.get("/events/careers")
            assert here.headers["etag"] == there.headers["etag"]
            seen = {here.headers["etag"]}
            for step in range(1, 7):
                who = client if step % 2 else other
                kind = step % 3
                if kind == 0:
                    answer = await who.patch(
                        f"/api/v1/events/{event['id']}", json={"title": f"Title {step}"}, headers=auth
                    )
                    assert answer.status_code == 200
                    expect = f"Title {step}"
                elif kind == 1:
                    answer = await who.post(
                        f"/api/v1/events/{event['id']}/registrations",
                        json={"name": "Ada", "email": f"ada{step}@example.org"},
                    )
                    assert answer.status_code == 201
                    expect = None
                else:
                    await _add_taken("careers", 2)
                    expect = None
                left = 40 - (await events.get(event["id"]))["taken"]
                for name, browser in (("this process", client), ("the other process", other)):
                    page = await browser.get("/events/careers", headers={"If-None-Match": " , ".join(seen)})
                    assert page.status_code == 200, f"step {step}: {name} answered 304 after a change"
                    assert f"{left} seats left" in page.text, f"step {step}: {name} shows old seats"
                    if expect:
                        assert expect in page.text
                    tag = page.headers["etag"]
                    assert tag not in seen
                # Both processes name the new content alike, and answer 304 to it.
                assert (await client.get("/events/careers")).headers["etag"] == tag
                assert (await other.get("/events/careers", headers={"If-None-Match": tag})).status_code == 304
                seen.add(tag)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.sampled_from(["read", "raw", "mine", "title"]), min_size=1, max_size=8))
async def test_the_key_is_never_older_than_the_last_commit(steps):
    """Any order of reads and changes (from a raw connection of its own, or from this process):
    each page_key equals the row as committed, never a kept one from before."""
    events.forget()
    await db.fetch("DELETE FROM event WHERE slug = 'keyed'")
    event = await published_event(slug="keyed", capacity=None)
    taken, version = 0, event["version"]
    for step in steps:
        if step == "raw":
            await _add_taken("keyed", 1)
            taken += 1
        elif step == "mine":
            await db.fetch("UPDATE event SET taken = taken + 1 WHERE slug = 'keyed'")
            taken += 1
        elif step == "title":
            await _raw_write(
                "UPDATE event SET version = version + 1 WHERE slug = 'keyed'",
                "UPDATE event SET version = version + 1 WHERE slug = 'keyed'",
            )
            version += 1
        key = await events.page_key("keyed")
        assert key is not None and (key["taken"], key["version"]) == (taken, version), steps


async def test_unchanged_keys_cost_no_row_read_and_overlapping_reads_are_one(monkeypatch):
    """SQLite: while nothing is committed, the key is not read again. PostgreSQL: concurrent
    requests share reads, and one that starts after a commit still sees it."""
    await published_event(slug="one")
    await published_event(slug="two")
    reads: list[tuple] = []
    real = db.fetch

    async def counting(sql, *args):
        if sql.startswith("SELECT slug, id"):
            reads.append(args)
        return await real(sql, *args)

    monkeypatch.setattr(db, "fetch", counting)
    first = await events.page_key("one")
    assert first is not None
    many = await asyncio.gather(*(events.page_key(slug) for slug in ["one", "two"] * 20))
    assert [k["id"] for k in many[:2]] == [first["id"], (await events.page_key("two"))["id"]]
    if db.is_postgres():
        assert len(reads) < 10, f"{len(reads)} reads for 41 requests"
    else:
        assert len(reads) == 2, "a key read again though nothing was committed"
    await _add_taken("one", 3)
    after = await asyncio.gather(*(events.page_key("one") for _ in range(10)))
    assert {k["taken"] for k in after} == {first["taken"] + 3}


@pytest.mark.skipif(not app_settings.get().is_sqlite, reason="SQLite's own connection")
async def test_a_write_on_this_connection_inside_a_transaction_is_not_seen_before_commit():
    """The kept keys are not consulted while a unit of work is open on the app's connection."""
    await published_event(slug="inside")
    before = await events.page_key("inside")
    async with db.transaction():
        await db.fetch("UPDATE event SET taken = taken + 5 WHERE slug = 'inside'")
        inside = await events.page_key("inside")
        assert inside["taken"] == before["taken"] + 5  # the transaction's own view, as before
    after = await events.page_key("inside")
    assert after["taken"] == before["taken"] + 5
