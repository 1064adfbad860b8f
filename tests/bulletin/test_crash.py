"""A release survives `kill -9`: worker processes are killed at random points of a 20,000-
recipient release (once while its ledger is being written, then at random numbers of messages
sent) and started again; in the end everyone has the issue, and the only duplicates
are messages that were in flight (claimed, not yet recorded as sent) at a kill.

On PostgreSQL two worker processes share the release at every stage (claims skip each other's
rows), which also shows that two workers never send one message twice.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

from events_app import db
from events_app.domain import issues

from .helpers import new_issue, subscribers

RECIPIENTS = 20_000
KILLS = 5


def start_worker(smtp_url: str, log_to=None, claim_timeout: int = 10) -> subprocess.Popen:
    env = {
        **os.environ,
        "EVENTS_SMTP_URL": smtp_url,
        "EVENTS_LOG_LEVEL": "info",
        "EVENTS_WORKER_POLL_SECONDS": "0.05",
        # A killed worker's claimed rows go back to the queue after this long.
        "EVENTS_OUTBOX_CLAIM_TIMEOUT_SECONDS": str(claim_timeout),
    }
    out = open(log_to, "ab") if log_to else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "events_app.cli", "worker"], env=env,
                            stdout=out, stderr=subprocess.STDOUT)


def db_now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


async def count(sql: str, *args) -> int:
    return (await db.fetch(sql, *args))[0]["n"]


async def test_kill_9_at_random_points_loses_no_one(tmp_path, smtp_server):  # noqa: F811
    addresses = await subscribers(tmp_path, RECIPIENTS)
    issue = await new_issue()
    await issues.release(issue["id"])
    processes = 2 if db.is_postgres() else 1
    rng = random.Random(os.environ.get("CRASH_SEED", "20191015"))

    in_flight_at_kills = []
    started = db_now()
    logs = [tmp_path / f"worker-{n}.log" for n in range(processes)]
    workers = [start_worker(smtp_server.url, logs[n]) for n in range(processes)]
    try:
        # Kill points: once while the ledger is being written, then at random numbers of
        # messages sent (a machine under load starts workers slowly, so times would miss).
        points = [0] + sorted(rng.sample(range(500, RECIPIENTS - 2000), KILLS - 1))
        for point in points:
            started_waiting = time.monotonic()
            while True:
                sent = await count("SELECT count(*) AS n FROM outbox WHERE status = 'sent'")
                written = await count("SELECT count(*) AS n FROM outbox")
                if (point == 0 and written > 0) or (point and sent >= point):
                    break
                assert time.monotonic() - started_waiting < 300, f"stuck before kill point {point}"
                await asyncio.sleep(0.01 if point == 0 else 0.05)
            await asyncio.sleep(rng.uniform(0, 0.2))
            for w in workers:
                w.send_signal(signal.SIGKILL)
                w.wait()
            # What was in flight when they died: rows these processes claimed and had not yet
            # recorded as sent (rows left over from an earlier kill were counted at that kill).
            in_flight_at_kills.append(await count(
                "SELECT count(*) AS n FROM outbox WHERE status = 'sending' AND claimed_at >= {}", started))
            started = db_now()
            workers = [start_worker(smtp_server.url, logs[n]) for n in range(processes)]
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if (await issues.delivery(issue["id"]))["status"] == "done":
                break
            await asyncio.sleep(0.5)
    finally:
        for w in workers:
            w.terminate()
            w.wait(timeout=30)

    delivery = await issues.delivery(issue["id"])
    if delivery["status"] != "done":
        for path in logs:
            print(path, path.read_text(errors="replace")[-5000:])
    assert delivery["status"] == "done", delivery
    assert (delivery["sent"], delivery["total"]) == (RECIPIENTS, RECIPIENTS)
    got = Counter(a for r in smtp_server.received for a in r.rcpt_tos)
    assert set(got) == set(addresses), "somebody was skipped"
    duplicates = sum(got.values()) - RECIPIENTS
    # Each duplicate is one Message-ID seen twice: the same message, re-sent after a crash.
    ids = Counter(r.message["Message-ID"] for r in smtp_server.received)
    assert sum(ids.values()) - len(ids) == duplicates
    print(f"kills={KILLS} processes={processes} in flight at the kills={in_flight_at_kills} duplicates={duplicates}")
    assert sum(in_flight_at_kills[1:]) > 0, "no kill hit the release while it was sending"
    assert duplicates <= sum(in_flight_at_kills)
