"""Issue 11, per-client limits on every public door: registration (form and API, a budget per
client and a cap per client per event), subscribe (a registration with `subscribe` included),
"email me my link" and sign-in, each its own bucket; 429 with Retry-After and a clear body; the
counters in this process or shared through Redis (the real one on 127.0.0.1:6379).

The suite runs with EVENTS_RATE_LIMITS=off (tests/conftest.py); these tests build apps with the
limits on. Each test speaks from its own made-up client address, and the Redis tests use a
namespace of their own, so runs sharing the Redis server do not meet.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import time
import uuid

import httpx
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from events_app import db, settings
from events_app.domain import staff
from factories import published_event

REDIS_URL = os.environ.get("EVENTS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _ip() -> str:
    return f"10.{random.randint(0, 255)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def _client(app, ip: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 5000)), base_url="http://testserver")


@pytest.fixture
def limits_on():
    """Apps created inside the test have the limits on, counted in this process."""
    saved = settings._current
    settings._current = dataclasses.replace(settings.get(), rate_limits=True, redis_url=None)
    try:
        yield
    finally:
        settings._current = saved


@pytest.fixture
async def redis_limits(monkeypatch):
    """Apps created inside the test count in the real Redis, under a namespace of their own."""
    import redis.asyncio as redis

    from events_app.web import limits

    namespace = f"events-test:{uuid.uuid4().hex}"
    monkeypatch.setattr(limits, "NAMESPACE", namespace)
    saved = settings._current
    settings._current = dataclasses.replace(settings.get(), rate_limits=True, redis_url=REDIS_URL)
    try:
        yield namespace
    finally:
        settings._current = saved
        conn = redis.Redis.from_url(REDIS_URL)
        keys = [k async for k in conn.scan_iter(match=f"{namespace}:*")]
        if keys:
            await conn.delete(*keys)
        await conn.aclose()


def _app():
    from events_app.app import create_app

    return create_app()


async def _register_form(http: httpx.AsyncClient, event: dict, n: int, **extra) -> httpx.Response:
    return await http.post(f"/events/{event['slug']}/register",
                           data={"name": f"Person {n}", "email": f"person{n}@example.org", **extra})


async def _register_api(http: httpx.AsyncClient, event: dict, n: int, **extra) -> httpx.Response:
    return await http.post(f"/api/v1/events/{event['id']}/registrations",
                           json={"name": f"Person {n}", "email": f"person{n}@example.org", **extra})


async def _taken(event: dict) -> int:
    return (await db.fetch("SELECT taken FROM event WHERE id = {}", event["id"]))[0]["taken"]


# Registration ---------------------------------------------------------------------------------

async def test_one_client_cannot_fill_a_free_event_through_the_form_and_the_api(limits_on):
    """A script from one address takes at most the per-event cap of seats, whichever door it
    uses; the rest of the seats stay for other people, who are not slowed down."""
    event = await published_event(capacity=300)
    app = _app()
    statuses, n = [], 0
    async with _client(app, _ip()) as script, _client(app, _ip()) as person:
        while n < 200:
            send = _register_form if n % 2 else _register_api
            answer = await send(script, event, n)
            statuses.append(answer.status_code)
            n += 1
            if answer.status_code == 429:
                break
        accepted = len([s for s in statuses if s in (200, 201, 303)])  # 303: the form's thank-you redirect
        assert statuses[-1] == 429, f"{accepted} registrations from one address, none refused"
        from events_app.web import limits

        assert accepted == limits.REGISTER_EVENT.requests
        assert await _taken(event) == accepted
        outbox = await db.fetch("SELECT COUNT(*) AS n FROM outbox WHERE kind = 'registration_confirmed'")
        assert outbox[0]["n"] == accepted  # no email for a refused attempt
        assert int(answer.headers["retry-after"]) > 0
        # The API answers JSON, the form a page, each saying what to do.
        api = await _register_api(script, event, 1000)
        assert api.status_code == 429 and api.json()["status_code"] == 429 and "try again" in api.json()["detail"]
        page = await _register_form(script, event, 1001)
        assert page.status_code == 429 and "text/html" in page.headers["content-type"] and "try again" in page.text
        assert "retry-after" in page.headers
        # Somebody else registers at once.
        assert (await _register_form(person, event, 5000)).status_code == 303
    assert await _taken(event) == accepted + 1


async def test_a_class_behind_one_address_fits_the_budget(limits_on):
    """Forty people behind one NAT address register for one event within a minute."""
    event = await published_event(capacity=100)
    async with _client(_app(), _ip()) as classroom:
        answers = [await _register_form(classroom, event, n) for n in range(40)]
    assert {a.status_code for a in answers} == {303}  # each to its thank-you page
    assert await _taken(event) == 40


async def test_one_client_has_a_budget_across_events(limits_on):
    from events_app.web import limits

    per_event = limits.REGISTER_EVENT.requests
    events = [await published_event(capacity=300, title=f"Talk {i}") for i in range(3)]
    async with _client(_app(), _ip()) as script:
        n, seen = 0, []
        for event in events:
            for _ in range(per_event):
                seen.append((await _register_api(script, event, n)).status_code)
                n += 1
    assert seen.count(201) == limits.REGISTER.requests and seen[-1] == 429


async def test_a_registration_with_subscribe_counts_against_the_subscribe_limit(limits_on):
    """Ticking "send me the bulletin" is a subscribe request: once the client's subscribe budget
    is spent, a registration that asks for it is refused (no seat, no subscriber), and the same
    registration without it still goes through."""
    event = await published_event(capacity=100)
    async with _client(_app(), _ip()) as script:
        for n in range(60):
            answer = await script.post("/api/v1/subscribers", json={"email": f"target{n}@example.org"})
            if answer.status_code == 429:
                break
        assert answer.status_code == 429
        subscribers = len(await db.fetch("SELECT id FROM subscriber"))
        api = await _register_api(script, event, 1, subscribe=True)
        form = await _register_form(script, event, 2, subscribe="yes")
        assert api.status_code == form.status_code == 429
        assert "bulletin" in api.json()["detail"]
        assert await _taken(event) == 0 and len(await db.fetch("SELECT id FROM subscriber")) == subscribers
        assert (await _register_api(script, event, 1, subscribe=False)).status_code == 201
        assert (await _register_form(script, event, 2)).status_code == 303
    assert await _taken(event) == 2


async def test_registrations_with_subscribe_spend_the_subscribe_budget(limits_on):
    """The other way round: registrations ticking the box use up the subscribe budget."""
    from events_app.web import limits

    event = await published_event(capacity=100)
    async with _client(_app(), _ip()) as script:
        for n in range(limits.SUBSCRIBE.requests):
            assert (await _register_form(script, event, n, subscribe="yes")).status_code == 303
        assert (await script.post("/api/v1/subscribers", json={"email": "x@example.org"})).status_code == 429


# The other doors --------------------------------------------------------------------------------

async def test_each_door_has_its_own_bucket(limits_on):
    """Spending the subscribe budget does not lock the same client out of "email me my link" or
    sign-in; the link form then has its own limit; reading pages is never limited."""
    app = _app()
    async with _client(app, _ip()) as hammer:
        for n in range(30):
            if (await hammer.post("/api/v1/subscribers", json={"email": f"t{n}@example.org"})).status_code == 429:
                break
        assert (await hammer.post("/bulletin/subscribe", data={"email": "x@example.org", "topics": "bulletin"})).status_code == 429
        assert (await hammer.post("/s/link", data={"email": "me@example.org"})).status_code == 200
        statuses = [(await hammer.post("/s/link", data={"email": f"me{n}@example.org"})).status_code for n in range(15)]
        assert 429 in statuses
        assert set(statuses[statuses.index(429):]) == {429}
        assert (await hammer.get("/s/link")).status_code == 200
        assert (await hammer.get("/bulletin/subscribe")).status_code == 200
        login = await hammer.get("/staff/login")
        assert login.status_code == 200


async def test_sign_in_limit_is_checked_before_any_password_check(limits_on):
    """One client looping over addresses is refused after a few tries, before its attempts
    reach the password check (no failure is even counted); a colleague elsewhere signs in."""
    await staff.create("lead@example.org", "correct horse battery", "Lead")
    app = _app()
    async with _client(app, _ip()) as prober, _client(app, _ip()) as colleague:
        statuses = []
        for n in range(60):
            form = await prober.get("/staff/login")
            token = form.text.split('name="csrf_token" value="')[1].split('"')[0] if "csrf_token" in form.text else ""
            answer = await prober.post("/staff/login", data={"csrf_token": token, "email": f"probe{n}@example.org",
                                                              "password": "guess guess"})
            statuses.append(answer.status_code)
            if answer.status_code == 429:
                break
        assert statuses[-1] == 429, statuses
        counted = len(await db.fetch("SELECT key FROM login_attempt"))
        assert counted == statuses.count(401) < 30
        assert "try again" in answer.text and int(answer.headers["retry-after"]) > 0
        form = await colleague.get("/staff/login")
        token = form.text.split('name="csrf_token" value="')[1].split('"')[0]
        signed = await colleague.post("/staff/login", data={"csrf_token": token, "email": "lead@example.org",
                                                             "password": "correct horse battery"})
        assert signed.status_code == 303


async def test_a_client_knocking_on_long_after_refusal_is_held_back(limits_on):
    """The first refusals answer at once (a person reads the message); a script still looping
    after twice its budget gets each refusal only after a pause, so it cannot make the server
    answer thousands of refusals a second."""
    from events_app.web import limits

    async with _client(_app(), _ip()) as script:
        timings = []
        for n in range(2 * limits.LINK.requests + 2):
            started = time.perf_counter()
            answer = await script.post("/s/link", data={"email": f"a{n}@example.org"})
            timings.append((answer.status_code, time.perf_counter() - started))
    refused = [t for s, t in timings if s == 429]
    assert len(refused) == limits.LINK.requests + 2
    assert max(refused[: limits.LINK.requests]) < limits.TARPIT_SECONDS / 2
    assert min(refused[-2:]) >= limits.TARPIT_SECONDS * 0.9


async def test_limits_off_lifts_every_limit(client):
    assert settings.get().rate_limits is False  # conftest: EVENTS_RATE_LIMITS=off
    event = await published_event(capacity=100)
    for n in range(60):
        assert (await _register_api(client, event, n, subscribe=True)).status_code == 201
    for n in range(25):
        assert (await client.post("/s/link", data={"email": f"a{n}@example.org"})).status_code == 200


# The counters ------------------------------------------------------------------------------------

@hsettings(max_examples=200, deadline=None)
@given(gaps=st.lists(st.floats(min_value=0, max_value=40, allow_nan=False), min_size=1, max_size=60),
       limit=st.integers(min_value=1, max_value=6))
def test_in_process_counter_never_lets_more_through_and_lets_the_patient_in(gaps, limit):
    """Whatever the rhythm of one client's knocks: within any stretch of one window at most
    2 x limit are let through (two windows can touch it), and a knock made when Retry-After
    says is let through."""
    from events_app.web.limits import MemoryCounters

    window = 30
    now = [0.0]
    counters = MemoryCounters(clock=lambda: now[0])

    async def run() -> None:
        allowed: list[float] = []
        for gap in gaps:
            now[0] += gap
            count, left = await counters.hit("k", window)
            assert 0 < left <= window
            if count <= limit:
                allowed.append(now[0])
            else:
                now[0] += left
                again, _ = await counters.hit("k", window)
                assert again == 1, "Retry-After was honoured but the knock was refused"
                allowed.append(now[0])
        for i, start in enumerate(allowed):
            assert len([t for t in allowed[i:] if t < start + window]) <= 2 * limit

    asyncio.run(run())


async def test_redis_counter_is_claimed_atomically():
    """Fifty knocks at once on a limit of ten: exactly ten counts of 1..10 come back, the key
    expires with the window, and nothing else is left behind."""
    import redis.asyncio as redis

    from events_app.web.limits import RedisCounters

    namespace = f"events-test:{uuid.uuid4().hex}"
    counters = RedisCounters(REDIS_URL)
    key = f"{namespace}:subscribe:10.0.0.1"
    try:
        results = await asyncio.gather(*(counters.hit(key, 60) for _ in range(50)))
        assert sorted(c for c, _ in results) == list(range(1, 51))
        assert len([c for c, _ in results if c <= 10]) == 10
        assert all(0 < left <= 60 for _, left in results)
        conn = redis.Redis.from_url(REDIS_URL)
        try:
            assert 0 < await conn.ttl(key) <= 60
            assert [k async for k in conn.scan_iter(match=f"{namespace}:*")] == [key.encode()]
            await conn.delete(key)
        finally:
            await conn.aclose()
    finally:
        await counters.close()


async def test_two_app_instances_sharing_redis_share_the_budget(redis_limits):
    """Two servers (two apps) counting in one Redis: one client alternating between them gets
    the budget once, not twice."""
    from events_app.web import limits

    ip = _ip()
    first, second = _app(), _app()
    statuses = []
    async with _client(first, ip) as a, _client(second, ip) as b:
        for n in range(limits.SUBSCRIBE.requests + 4):
            http = a if n % 2 else b
            statuses.append((await http.post("/api/v1/subscribers", json={"email": f"r{n}@example.org"})).status_code)
    assert statuses == [202] * limits.SUBSCRIBE.requests + [429] * 4, statuses


async def test_registration_limit_counts_in_redis(redis_limits):
    from events_app.web import limits

    event = await published_event(capacity=200)
    ip = _ip()
    async with _client(_app(), ip) as a, _client(_app(), ip) as b:
        seen = [(await _register_api(a if n % 2 else b, event, n)).status_code
                for n in range(limits.REGISTER_EVENT.requests + 1)]
    assert seen == [201] * limits.REGISTER_EVENT.requests + [429]
    import redis.asyncio as redis

    conn = redis.Redis.from_url(REDIS_URL)
    try:
        keys = [k.decode() async for k in conn.scan_iter(match=f"{redis_limits}:*")]
    finally:
        await conn.aclose()
    assert any(":register-event:" in k for k in keys) and any(":register:" in k for k in keys)


async def test_control_two_apps_without_redis_each_count_alone(limits_on):
    """Control: with in-process counters the same client gets the budget from each app."""
    from events_app.web import limits

    ip = _ip()
    statuses = []
    async with _client(_app(), ip) as a, _client(_app(), ip) as b:
        for n in range(limits.SUBSCRIBE.requests + 4):
            http = a if n % 2 else b
            statuses.append((await http.post("/api/v1/subscribers", json={"email": f"r{n}@example.org"})).status_code)
    assert 429 not in statuses


async def test_ipv6_clients_are_counted_per_64_block(limits_on):
    """One host on IPv6 owns a whole /64: changing the last bits must not buy a new budget."""
    from events_app.web import limits

    app = _app()
    statuses = []
    for n in range(limits.LINK.requests + 1):
        async with _client(app, f"2001:db8:1:2::{n + 1:x}") as http:
            statuses.append((await http.post("/s/link", data={"email": f"a{n}@example.org"})).status_code)
    assert statuses == [200] * limits.LINK.requests + [429]
