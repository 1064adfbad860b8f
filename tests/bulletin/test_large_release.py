"""The ledger and the delivery figures of a large release, at test size.

Expansion writes the ledger in batches (on PostgreSQL 200,000 recipients per INSERT ... SELECT,
returning a count, never the rows, each row due at its own microsecond; on SQLite 1,000): whatever the batch size, the ledger ends
exactly the audience, one row per person, and a step that crashed half-way (its transaction
rolled back) or ran twice changes nothing. On PostgreSQL one worker at a time expands a mailing:
another's step returns at once. The polled delivery page's figures (mailings.delivery_live)
equal a direct count of the ledger, and while the mailing is sending they are one shared count,
renewed in the background once older than its max age.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from events_app import db
from events_app.clock import now
from events_app.domain import mailings

HYPOTHESIS = hsettings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
# Who a subscriber is at the release: in the audience, or left out for one reason.
KINDS = ("in", "in", "in", "pending", "paused", "bounced", "other_topic", "late")


async def _topic(slug: str) -> int:
    return (await db.fetch("SELECT id FROM topic WHERE slug = {}", slug))[0]["id"]


async def _people(kinds: list[str], moment) -> set[int]:
    """Subscribers of the given kinds (in id order); returns the ids that belong in the audience."""
    bulletin, events = await _topic("bulletin"), await _topic("events")
    before, later = moment - timedelta(days=1), moment + timedelta(days=1)
    audience = set()
    for n, kind in enumerate(kinds):
        rows = await db.fetch(
            "INSERT INTO subscriber (email, email_hash, name, status, token_salt, source, created_at, confirmed_at, "
            "paused_until, bounced_at) VALUES ({}, {}, {}, {}, {}, 'import', {}, {}, {}, {}) RETURNING id",
            f"reader{n}@example.org",
            f"{n:064d}",
            f"Reader {n}",
            "pending" if kind == "pending" else "confirmed",
            f"{n:032d}",
            before,
            None if kind == "pending" else before,
            later if kind == "paused" else None,
            before if kind == "bounced" else None,
        )
        sid = rows[0]["id"]
        topic = events if kind == "other_topic" else bulletin
        await db.fetch(
            "INSERT INTO subscription (subscriber, topic, created_at) VALUES ({}, {}, {})",
            sid,
            topic,
            later if kind == "late" else before,
        )
        if kind == "in":
            audience.add(sid)
    return audience


async def _ledger(mailing_id: int) -> list[int]:
    rows = await db.fetch("SELECT subscriber FROM outbox WHERE mailing = {} ORDER BY subscriber", mailing_id)
    return [r["subscriber"] for r in rows]


async def _clear() -> None:
    for table in ("outbox", "mailing", "subscription", "subscriber"):
        await db.fetch(f"DELETE FROM {table}")


async def _new_mailing(moment) -> dict:
    return await mailings.create("issue", [await _topic("bulletin")], release_at=moment)


class Crash(Exception):
    pass


@HYPOTHESIS
@given(
    kinds=st.lists(st.sampled_from(KINDS), max_size=40),
    batch=st.integers(min_value=1, max_value=12),
    crash_at=st.integers(min_value=0, max_value=8),
)
async def test_expansion_in_batches_is_exact_and_a_crashed_or_repeated_step_changes_nothing(kinds, batch, crash_at):
    await _clear()
    moment = now() - timedelta(seconds=5)
    audience = await _people(kinds, moment)
    mailing = await _new_mailing(moment)
    assert await mailings.recipient_count([await _topic("bulletin")], moment) == len(audience)
    steps = 0
    while (await mailings.get(mailing["id"]))["expanded_at"] is None:
        steps += 1
        assert steps <= len(audience) // batch + 3, "the expansion does not end"
        if steps == crash_at:  # a worker dies half-way through its step: the batch is rolled back
            before = await _ledger(mailing["id"])
            with pytest.raises(Crash):
                async with db.transaction():
                    await mailings.expand_step(mailing, batch)
                    raise Crash
            assert await _ledger(mailing["id"]) == before
        written = await mailings.expand_step(mailing, batch)
        assert 0 <= written <= batch
        # A second worker repeating the step a moment later (the cursor of before) adds no one twice.
        ledger = await _ledger(mailing["id"])
        assert len(ledger) == len(set(ledger))
    assert await _ledger(mailing["id"]) == sorted(audience)
    assert await mailings.expand_step(mailing, batch) == 0  # expanded: nothing more, ever
    assert await _ledger(mailing["id"]) == sorted(audience)
    counts = await mailings.delivery(mailing["id"])
    assert counts["queued"] == counts["total"] == len(audience) and counts["expanded"]


async def test_a_postgresql_step_writes_its_whole_batch_in_one_statement_and_returns_the_count():
    moment = now() - timedelta(seconds=5)
    audience = await _people(["in"] * 30 + ["paused"] * 5, moment)
    mailing = await _new_mailing(moment)
    assert await mailings.expand_step(mailing) == 30  # the engine's batch: everyone at once
    assert await _ledger(mailing["id"]) == sorted(audience)
    assert (await mailings.get(mailing["id"]))["expanded_at"] is not None  # a short batch ends it
    assert mailings.expand_batch() == (mailings.EXPAND_BATCH_PG if db.is_postgres() else mailings.EXPAND_BATCH)
    if db.is_postgres():
        # Due now, each at its own time in subscriber order: a claim reads about its own rows
        # from the index (status, mailing, next_attempt_at), not a whole batch tied at one time.
        rows = await db.fetch(
            "SELECT next_attempt_at FROM outbox WHERE mailing = {} ORDER BY subscriber", mailing["id"]
        )
        times = [r["next_attempt_at"] for r in rows]
        assert times == sorted(times) and len(set(times)) == len(times) and times[-1] <= now()


@pytest.mark.skipif(not db.is_postgres(), reason="advisory locks and parallel workers are PostgreSQL's")
async def test_on_postgresql_one_worker_at_a_time_expands_a_mailing():
    import asyncpg

    from events_app import settings

    moment = now() - timedelta(seconds=5)
    audience = await _people(["in"] * 25, moment)
    mailing = await _new_mailing(moment)
    other = await asyncpg.connect(settings.get().database_url)
    try:
        async with other.transaction():  # another worker is writing this mailing's ledger
            assert await other.fetchval("SELECT pg_try_advisory_xact_lock($1, $2)", mailings.LEDGER_LOCK, mailing["id"])
            assert await mailings.expand_step(mailing, 10) == 0  # returns at once, writes nothing
            assert await _ledger(mailing["id"]) == []
            assert (await mailings.get(mailing["id"]))["expanded_at"] is None  # not taken for finished
    finally:
        await other.close()
    # Many workers at once: each batch is written by one of them, the ledger is exact.
    while (await mailings.get(mailing["id"]))["expanded_at"] is None:
        await asyncio.gather(*(mailings.expand_step(mailing, 7) for _ in range(4)))
    assert await _ledger(mailing["id"]) == sorted(audience)


async def _set_states(mailing_id: int, states: list[str]) -> None:
    rows = await db.fetch("SELECT id FROM outbox WHERE mailing = {} ORDER BY id", mailing_id)
    for row, state in zip(rows, states, strict=False):
        await db.fetch("UPDATE outbox SET status = {} WHERE id = {}", state, row["id"])


STATE = st.sampled_from(mailings.STATES)


@HYPOTHESIS
@given(first=st.lists(STATE, max_size=25), then=st.lists(STATE, max_size=25))
async def test_the_polled_figures_equal_a_direct_count_and_are_one_shared_count_while_sending(first, then):
    # Sharing starts at LIVE_SHARED_FROM rows; here it is from the first row on (a small ledger
    # is otherwise counted on every poll, tests/staff/test_announce.py).
    shared_from, mailings.LIVE_SHARED_FROM = mailings.LIVE_SHARED_FROM, 0
    try:
        await _shared_figures(first, then)
    finally:
        mailings.LIVE_SHARED_FROM = shared_from


async def test_a_small_ledger_is_counted_on_every_poll():
    await _clear()
    mailings._recent.clear()
    moment = now() - timedelta(seconds=5)
    await _people(["in"] * 6, moment)
    mailing = await _new_mailing(moment)
    before = await mailings.delivery_live(mailing["id"], max_age=3600)
    await mailings.tick()
    await _set_states(mailing["id"], ["sent", "sent", "failed"])
    after = await mailings.delivery_live(mailing["id"], max_age=3600)
    assert before["total"] == 0
    assert {k: after[k] for k in mailings.STATES} == {
        k: v for k, v in (await mailings.delivery(mailing["id"])).items() if k in mailings.STATES
    }
    assert after["total"] == 6 and after["sent"] == 2 and after["failed"] == 1


async def _shared_figures(first, then):
    await _clear()
    mailings._recent.clear()
    moment = now() - timedelta(seconds=5)
    await _people(["in"] * 25, moment)
    mailing = await _new_mailing(moment)
    await mailings.tick()
    await _set_states(mailing["id"], first)
    live = await mailings.delivery_live(mailing["id"], max_age=3600)  # the first request counts
    direct = await mailings.delivery(mailing["id"])
    assert {k: live[k] for k in direct} == direct
    assert live["as_of"] is not None
    await _set_states(mailing["id"], then)
    direct = await mailings.delivery(mailing["id"])
    # Within its max age the shared count stands, with the time it was taken.
    again = await mailings.delivery_live(mailing["id"], max_age=3600)
    assert again["as_of"] == live["as_of"]
    assert {k: again[k] for k in mailings.STATES} == {k: live[k] for k in mailings.STATES}
    # Past it, the request still gets the figures at hand and one new count starts meanwhile.
    await mailings.delivery_live(mailing["id"], max_age=0)
    (entry,) = [e for k, e in mailings._recent.items() if k[0] == mailing["id"]]
    if entry.counting is not None:
        await entry.counting
    fresh = await mailings.delivery_live(mailing["id"], max_age=3600)
    assert {k: fresh[k] for k in direct} == direct
    # The mailing's own state is never from the shared count: a paused one is counted directly.
    await mailings.pause(mailing["id"])
    paused = await mailings.delivery_live(mailing["id"], max_age=3600)
    assert paused["status"] == "paused"
    assert {k: paused[k] for k in direct if k != "status" and k != "paused_until" and k != "pause_reason"} == {
        k: direct[k] for k in direct if k != "status" and k != "paused_until" and k != "pause_reason"
    }
    assert json.loads(mailing["topics"]) == [await _topic("bulletin")]
