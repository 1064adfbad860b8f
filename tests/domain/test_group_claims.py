"""Group claims: registrations for one event that arrive together take their seats in one
statement on PostgreSQL (domain/seats.py GroupClaims, GROUP_PG_SQL), in arrival order, each with
its own answer; capacity stays exact, also with two app instances (two pools) on one database.

The tests through `registrations.register` run on both engines (on SQLite the same arrivals go
through the group commit of the general path, and must answer alike); the tests of GroupClaims
itself are PostgreSQL's and run in the PostgreSQL suite (they fail, never skip, there).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from conftest import IS_POSTGRES
from events_app import db, settings
from events_app.clock import now
from events_app.domain import registrations, seats
from factories import published_event

pg_only = pytest.mark.skipif(not IS_POSTGRES, reason="PostgreSQL's group statement (the PostgreSQL suite runs it)")


def person(i: int | str) -> dict:
    return {"name": f"Person {i}", "email": f"p{i}@example.org"}


async def rows_of(event_id: int) -> list[dict]:
    return await db.fetch("SELECT id, email, status FROM registration WHERE event = {} ORDER BY id", event_id)


async def confirmations(event_id: int) -> Counter:
    rows = await db.fetch(
        "SELECT o.recipient FROM outbox o JOIN registration r "
        "ON o.payload = '{\"registration_id\":' || r.id || '}' AND o.recipient = r.email "
        "WHERE o.kind = 'registration_confirmed' AND r.event = {}",
        event_id,
    )
    return Counter(r["recipient"] for r in rows)


async def taken(event_id: int) -> int:
    return (await db.fetch("SELECT taken FROM event WHERE id = {}", event_id))[0]["taken"]


def assert_exact(rows: list[dict], capacity: int, seats_taken: int) -> None:
    registered = [r for r in rows if r["status"] == "registered"]
    assert len(registered) == min(capacity, len(rows)) == seats_taken, "every seat once, no more"
    # Arrival order: every seat went to someone who claimed before anyone waitlisted.
    waitlisted = [r["id"] for r in rows if r["status"] == "waitlisted"]
    assert not waitlisted or max(r["id"] for r in registered) < min(waitlisted)


# -- both engines: through registrations.register ------------------------------------------------


async def test_many_at_once_for_few_seats_take_them_exactly_in_arrival_order():
    event = await published_event(capacity=7)
    people = [person(i) for i in range(60)]
    answers = await asyncio.gather(*(registrations.register(event, p) for p in people))

    rows = await rows_of(event["id"])
    assert_exact(rows, 7, await taken(event["id"]))
    # Arrival order within the group: row ids follow the order the requests came in.
    assert [r["email"] for r in rows] == [p["email"] for p in people]
    assert [a["status"] for a in answers] == ["registered"] * 7 + ["waitlisted"] * 53
    # Each caller's answer is its own row, and the waitlist places are 1..N, each given once.
    stored = {r["email"]: r for r in rows}
    for answer in answers:
        assert (answer["id"], answer["status"]) == (stored[answer["email"]]["id"], stored[answer["email"]]["status"])
    assert [a["waitlist_position"] for a in answers[7:]] == list(range(1, 54))
    assert await confirmations(event["id"]) == Counter(p["email"] for p in people), "one confirmation each"


async def test_repeats_inside_one_group_are_answered_as_repeats():
    """The same address twice (or three times) among arrivals, and an address registered before:
    one row and one confirmation each; every repeat answers with the first's registration, and
    the public answer of a repeat is what a new address would get, as without groups."""
    event = await published_event(capacity=3)
    early = await registrations.register(event, person("early"))
    arrivals = [person("a"), person("b"), person("a"), person("early"), person("c"), person("a"), person("d")]
    answers = await asyncio.gather(*(registrations.register(event, p) for p in arrivals))

    rows = await rows_of(event["id"])
    assert [r["email"] for r in rows] == [f"p{x}@example.org" for x in ("early", "a", "b", "c", "d")]
    assert [r["status"] for r in rows] == ["registered", "registered", "registered", "waitlisted", "waitlisted"]
    assert answers[0] == answers[2] == answers[5], "the repeats get the first arrival's registration"
    assert answers[3] == early
    assert await confirmations(event["id"]) == Counter(r["email"] for r in rows), "no second confirmation"
    assert await taken(event["id"]) == 3

    # Told the public way, a repeat answers as a new address would now.
    public = [await registrations.register_public(event, p) for p in (person("a"), person("e"))]
    assert [(p["status"], p["waitlist_position"], p["id"]) for p in public] == [("waitlisted", 3, None)] * 2


HYPOTHESIS = hsettings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))


@HYPOTHESIS
@given(
    capacity=st.one_of(st.none(), st.integers(0, 5)),
    before=st.lists(st.integers(0, 9), max_size=4, unique=True),
    cancel=st.lists(st.booleans(), min_size=4, max_size=4),
    arrivals=st.lists(st.integers(0, 9), min_size=1, max_size=25),
)
async def test_arrivals_together_end_as_the_same_arrivals_one_by_one(capacity, before, cancel, arrivals):
    """Whatever happened before (registrations, some cancelled) and whoever comes (repeats
    included): the same arrivals at once end as the same arrivals one by one in arrival order:
    the same rows in the same order with the same statuses, the same stored answers (each its
    own row), the same seats taken. One exception on PostgreSQL: someone coming back after
    cancelling is not part of a group (their old row is changed, the general way, after the
    group), so when the arrivals hold a comeback only the totals must agree."""
    together = await published_event(capacity=capacity)
    one_by_one = await published_event(capacity=capacity)
    for event in (together, one_by_one):
        for i, who in enumerate(before):
            row = await registrations.register(event, person(who))
            if cancel[i]:
                token = registrations.personal_token(
                    (await db.fetch("SELECT id, token_salt FROM registration WHERE id = {}", row["id"]))[0]
                )
                await registrations.cancel(token)
    at_once = await asyncio.gather(*(registrations.register(together, person(i)) for i in arrivals))
    serial = [await registrations.register(one_by_one, person(i)) for i in arrivals]

    a, b = await rows_of(together["id"]), await rows_of(one_by_one["id"])
    ids = {r["email"]: r["id"] for r in a}
    assert all(x["id"] == ids[x["email"]] for x in at_once), "each answer is its own row"
    assert await taken(together["id"]) == await taken(one_by_one["id"])
    assert await taken(together["id"]) == sum(r["status"] == "registered" for r in a)
    if capacity is not None:
        assert await taken(together["id"]) <= capacity
    assert await confirmations(together["id"]) == await confirmations(one_by_one["id"])
    comeback = any(cancel[i] and who in arrivals for i, who in enumerate(before))
    if IS_POSTGRES and comeback:
        assert Counter(r["status"] for r in a) == Counter(r["status"] for r in b)
        return

    def shown(answers):
        return [(x["email"], x["status"], x["waitlist_position"]) for x in answers]

    assert shown(at_once) == shown(serial)
    assert [(r["email"], r["status"]) for r in a] == [(r["email"], r["status"]) for r in b]


# -- PostgreSQL: GroupClaims itself ---------------------------------------------------------------


def fetch_on(pool):
    """One statement on `pool`, as db.fetch runs it: a second app instance's database access."""

    async def fetch(sql, *args):
        return [dict(r) for r in await pool.fetch(db._compile(sql, True), *args)]

    return fetch


@pytest.fixture
async def pools():
    """Two asyncpg pools on the suite's database: two app instances."""
    import asyncpg

    config = db.postgres_config(settings.get().database_url)
    made = [await asyncpg.create_pool(**config, min_size=1, max_size=4) for _ in range(2)]
    try:
        yield made
    finally:
        for pool in made:
            await pool.close()


async def claim(group: seats.GroupClaims, event: dict, who):
    p = person(who)
    return await group.claim(event["id"], event["version"], p["name"], p["email"], "{}", False, now())


def assert_answers_are_rows(answers: list, rows: list[dict]) -> None:
    by_id = {r["id"]: r for r in rows}
    assert all(isinstance(a, dict) for a in answers), answers
    for a in answers:
        assert (by_id[a["id"]]["email"], by_id[a["id"]]["status"]) == (a["email"], a["status"])
    places = sorted(a["place"] for a in answers if a["status"] == "waitlisted")
    assert places == list(range(1, len(places) + 1)), "waitlist places 1..N, each once"


@pg_only
async def test_arrivals_together_are_one_statement_in_arrival_order():
    event = await published_event(capacity=10)
    group = seats.GroupClaims()
    answers = await asyncio.gather(*(claim(group, event, i) for i in range(50)))
    assert group.statements == 1, "fifty arrivals at once: one statement, one commit"
    rows = await rows_of(event["id"])
    assert [r["email"] for r in rows] == [person(i)["email"] for i in range(50)]
    assert [a["status"] for a in answers] == ["registered"] * 10 + ["waitlisted"] * 40
    assert [a["place"] for a in answers[10:]] == list(range(1, 41))
    assert_answers_are_rows(answers, rows)
    # Arrivals while a statement is in flight form the next group.
    first = asyncio.ensure_future(claim(group, event, "x"))
    await asyncio.sleep(0)  # the statement for "x" is on its way
    more = await asyncio.gather(*(claim(group, event, f"y{i}") for i in range(20)))
    await first
    assert group.statements == 3
    assert [a["place"] for a in more] == list(range(42, 62))


@pg_only
@pytest.mark.parametrize("protected", [True, False], ids=["row-lock", "control-without-lock"])
async def test_groups_of_two_instances_waiting_together_are_serialised_by_the_row_lock(pools, protected):
    """Two instances' groups start while a third transaction holds the event row, so both read
    the event before either may claim. With the row lock (FOR UPDATE) the second group claims
    from what the first committed; the control, the same statement without the lock, decides on
    what it read and oversells."""
    capacity = 6
    event = await published_event(capacity=capacity)
    sql = seats.GROUP_PG_SQL if protected else seats.GROUP_PG_SQL.replace(" FOR UPDATE", "")
    assert (sql == seats.GROUP_PG_SQL) == protected
    first, second = (seats.GroupClaims(fetch_on(pool), sql=sql) for pool in pools)
    blocker = await pools[0].acquire()
    try:
        holding = blocker.transaction()
        await holding.start()
        await blocker.execute("UPDATE event SET taken = taken WHERE id = $1", event["id"])
        runs = [
            asyncio.ensure_future(asyncio.gather(*(claim(group, event, f"{name}{i}") for i in range(10))))
            for name, group in (("a", first), ("b", second))
        ]
        for _ in range(500):  # until both statements wait for the row
            waiting = await pools[1].fetchval(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE 'WITH item AS%'"
            )
            if waiting == 2:
                break
            await asyncio.sleep(0.01)
        assert waiting == 2
        await holding.commit()
    finally:
        await pools[0].release(blocker)
    answers = [a for run in runs for a in await run]
    rows = await rows_of(event["id"])
    registered = [r for r in rows if r["status"] == "registered"]
    if protected:
        assert len(registered) == capacity == await taken(event["id"])
        assert_answers_are_rows(answers, rows)
        assert_exact(rows, capacity, capacity)
    else:
        assert len(registered) > capacity, "without the row lock both groups take the same seats"


@pg_only
async def test_two_instances_registering_at_once_stay_exact(pools):
    """Two app instances (two pools, two GroupClaims) registering for one event at once."""
    event = await published_event(capacity=25)
    instances = [seats.GroupClaims(fetch_on(pool)) for pool in pools]
    answers = await asyncio.gather(*(claim(instances[i % 2], event, i) for i in range(300)))
    rows = await rows_of(event["id"])
    assert len(rows) == 300
    assert_exact(rows, 25, await taken(event["id"]))
    assert_answers_are_rows(answers, rows)
    assert sum(g.statements for g in instances) < 300 / 2, "they went in groups"


@pg_only
async def test_a_bad_arrival_fails_alone():
    """The group's statement fails (a name the column cannot hold: the public doors refuse it
    before, staff tools might not): each arrival then takes its seat on its own, and only the
    bad one fails."""
    event = await published_event(capacity=10)
    moment = now()
    names = ["Ada", "x" * 300, "Bo", "Cy", "Di"]
    results = await asyncio.gather(
        *(seats._register_fast_pg(event, n, f"{i}@example.org", {}, False, moment) for i, n in enumerate(names)),
        return_exceptions=True,
    )
    assert isinstance(results[1], Exception) and not db.is_outage(results[1])
    good = [r for i, r in enumerate(results) if i != 1]
    assert [r["status"] for r in good] == ["registered"] * 4
    assert sorted(r["email"] for r in await rows_of(event["id"])) == [f"{i}@example.org" for i in (0, 2, 3, 4)]
    assert await taken(event["id"]) == 4


@pg_only
async def test_inside_a_transaction_the_registration_is_part_of_it():
    event = await published_event(capacity=3)
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await registrations.register(event, person("a"))
            raise RuntimeError("changed our mind")
    assert await rows_of(event["id"]) == [] and await taken(event["id"]) == 0


async def test_two_servers_on_one_database_stay_exact():
    """Two `events-app serve` processes on the suite's database, a rush split between them:
    exactly the seats, waitlist places 1..N each given once, each answer its own row's."""
    import httpx
    from server import running_server

    seats_n, attempts = 15, 160
    event = await published_event(capacity=seats_n)
    with running_server() as one, running_server() as two:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(limits=limits, timeout=60) as http:
            path = f"/api/v1/events/{event['id']}/registrations"
            answers = await asyncio.gather(
                *(http.post((one, two)[i % 2] + path, json=person(i)) for i in range(attempts))
            )
    assert [a.status_code for a in answers] == [201] * attempts
    bodies = {a.json()["email"]: a.json() for a in answers}
    rows = await rows_of(event["id"])
    assert len(rows) == attempts
    assert_exact(rows, seats_n, await taken(event["id"]))
    waitlisted = [r for r in rows if r["status"] == "waitlisted"]
    assert [bodies[r["email"]]["waitlist_position"] for r in waitlisted] == list(range(1, len(waitlisted) + 1))
    assert all(bodies[r["email"]]["status"] == r["status"] for r in rows)
    assert await confirmations(event["id"]) == Counter(r["email"] for r in rows)
