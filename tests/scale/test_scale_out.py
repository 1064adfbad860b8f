"""Must show: two `serve --no-worker` processes and two `worker` processes on one PostgreSQL
database, sharing Redis, behave like one: no oversell, exact waitlist places, no message sent
twice, and the form rate limit counted across both servers (with a control: without Redis each
server counts alone and lets through more than the limit).

PostgreSQL only: several processes on one SQLite file is not a deployment we offer (README).
`make test` runs the suite on both databases, so CI runs this on PostgreSQL every time.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections import Counter
from contextlib import ExitStack, contextmanager

import httpx
import pytest

from events_app import db
from factories import published_event
from server import running_server
from smtp_server import SMTPSink

pytestmark = pytest.mark.skipif(
    os.environ.get("EVENTS_DATABASE_URL", "").startswith("sqlite"),
    reason="scale-out is a PostgreSQL deployment; the suite's PostgreSQL run covers it",
)

ATTEMPTS = 400
SEATS = 40
REDIS_URL = os.environ.get("EVENTS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@contextmanager
def workers(count: int, env: dict):
    """`events-app worker` processes with the suite's database and `env`; stopped on exit."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "events_app.cli", "worker"], env={**os.environ, **env},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        for _ in range(count)
    ]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _client_ip() -> str:
    # Rate limits count per client address; uvicorn takes it from X-Forwarded-For sent from
    # loopback. A fresh address per run keeps counters of other runs sharing this Redis apart.
    return f"10.{random.randint(0, 255)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


async def _subscribe_burst(bases: list[str], tries: int) -> Counter:
    ip = _client_ip()
    answers = Counter()
    async with httpx.AsyncClient(timeout=30) as http:
        for i in range(tries):
            answer = await http.post(
                bases[i % len(bases)] + "/bulletin/subscribe",
                data={"email": f"reader{i}@example.org", "name": "Reader", "topics": "bulletin"},
                headers={"X-Forwarded-For": ip},
            )
            answers[answer.status_code] += 1
    return answers


async def _wait_until_sent(timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        rows = await db.fetch("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status")
        counts = {r["status"]: r["n"] for r in rows}
        if not counts.get("queued") and not counts.get("sending") or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.2)


async def test_two_servers_and_two_workers_behave_like_one():
    event = await published_event(capacity=SEATS)
    sink = SMTPSink().start()
    env = {
        "EVENTS_REDIS_URL": REDIS_URL, "EVENTS_RATE_LIMITS": "on", "EVENTS_SMTP_URL": sink.url,
        "EVENTS_WORKER_POLL_SECONDS": "0.1",
    }
    try:
        with ExitStack() as stack:
            bases = [stack.enter_context(running_server(env=env)) for _ in range(2)]
            procs = stack.enter_context(workers(2, env))
            # No keep-alive: under load a request can sit behind the serialised seat claims longer
            # than uvicorn keeps an idle connection (5 s), and a reused connection the server is
            # closing fails with ReadError.
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
            async with httpx.AsyncClient(limits=limits, timeout=120) as http:
                answers = await asyncio.gather(*(
                    http.post(f"{bases[i % 2]}/api/v1/events/{event['id']}/registrations",
                              json={"name": f"Person {i}", "email": f"person{i}@example.org"},
                              # 400 different people: each from an address of their own, as the
                              # per-client registration limit (web/limits.py) expects of a crowd.
                              headers={"X-Forwarded-For": f"10.200.{i // 250}.{i % 250 + 1}"})
                    for i in range(ATTEMPTS)
                ))
            subscribed = await _subscribe_burst(bases, 12)
            outbox = await _wait_until_sent(timeout=90)
            assert all(proc.poll() is None for proc in procs), "both workers kept running"
    finally:
        sink.stop()

    assert Counter(a.status_code for a in answers) == {201: ATTEMPTS}
    rows = await db.fetch("SELECT id, status FROM registration WHERE event = {} ORDER BY id", event["id"])
    registered = [r["id"] for r in rows if r["status"] == "registered"]
    waitlisted = [r["id"] for r in rows if r["status"] == "waitlisted"]
    taken = (await db.fetch("SELECT taken FROM event WHERE id = {}", event["id"]))[0]["taken"]
    assert len(registered) == taken == SEATS, "no oversell across two servers"
    assert len(waitlisted) == ATTEMPTS - SEATS
    # Answers carry no row id (issue 11); the address each person sent links answer and row.
    positions = {a.json()["email"]: a.json()["waitlist_position"] for a in answers}
    by_id = {r["id"]: r["email"] for r in await db.fetch("SELECT id, email FROM registration WHERE event = {}", event["id"])}
    assert [positions[by_id[i]] for i in waitlisted] == list(range(1, ATTEMPTS - SEATS + 1))

    # The form limit (10 a minute per client) holds across both servers: Redis counts for both.
    assert subscribed[429] == 2 and sum(subscribed.values()) - subscribed[429] == 10, subscribed

    # Every outbox row went out exactly once, whichever worker took it.
    assert set(outbox) == {"sent"}, outbox
    confirmations = await db.fetch("SELECT COUNT(*) AS n FROM outbox WHERE kind = 'registration_confirmed'")
    assert confirmations[0]["n"] == ATTEMPTS
    message_ids = Counter(m["Message-ID"] for m in sink.messages())
    assert not [mid for mid, n in message_ids.items() if n > 1], "no message sent twice"
    assert sum(message_ids.values()) == outbox["sent"]
    for i in range(ATTEMPTS):
        assert len(sink.to(f"person{i}@example.org")) == 1


async def test_control_without_redis_each_server_counts_alone():
    """The same burst with in-process counters: each server lets through its own 10, so the
    client gets more than the limit; the shared store is what makes the limit hold."""
    env = {"EVENTS_RATE_LIMITS": "on", "EVENTS_WORKER_POLL_SECONDS": "0.1"}
    with ExitStack() as stack:
        bases = [stack.enter_context(running_server(env={**env, "EVENTS_REDIS_URL": ""})) for _ in range(2)]
        subscribed = await _subscribe_burst(bases, 12)
    assert subscribed[429] == 0 and sum(subscribed.values()) == 12, subscribed
