"""Two worker processes drain one release together (on PostgreSQL their claims skip each other's
locked rows; on SQLite they take turns): every recipient gets exactly one message, and both
processes sent part of it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from events_app import db
from events_app.domain import issues

from .helpers import new_issue, subscribers
from .test_crash import start_worker

RECIPIENTS = 5_000


async def test_two_worker_processes_send_nothing_twice(tmp_path, smtp_server):  # noqa: F811
    addresses = await subscribers(tmp_path, RECIPIENTS)
    issue = await new_issue()
    await issues.release(issue["id"])
    workers = [start_worker(smtp_server.url, tmp_path / f"worker-{n}.log", claim_timeout=300) for n in range(2)]
    try:
        deadline = time.monotonic() + 300
        while (await issues.delivery(issue["id"]))["status"] != "done":
            assert time.monotonic() < deadline, await issues.delivery(issue["id"])
            assert all(w.poll() is None for w in workers), "a worker died"
            await asyncio.sleep(0.25)
    finally:
        for w in workers:
            w.terminate()
            w.wait(timeout=30)

    got = Counter(a for r in smtp_server.received for a in r.rcpt_tos)
    assert got == Counter({a: 1 for a in addresses})
    ids = Counter(r.message["Message-ID"] for r in smtp_server.received)
    assert len(ids) == RECIPIENTS and max(ids.values()) == 1
    # Each process opens at most EVENTS_SMTP_CONNECTIONS (2) connections: more than two distinct
    # client connections means both processes sent part of the release.
    assert smtp_server.connections() > 2
    rows = await db.fetch("SELECT status, count(*) AS n FROM outbox GROUP BY status")
    assert {r["status"]: r["n"] for r in rows} == {"sent": RECIPIENTS}
