"""A release through a mail server having a bad hour: temporary refusals (421, 451) are retried
with backoff until everything arrives; permanent ones (550) fail that address, mark it for bulk
mail, and leave the rest alone; "retry failed" sends only the failed; a run of temporary
failures pauses the release until it resumes."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter

from events_app import db
from events_app.domain import issues, mailings
from events_app.mail.worker import Worker

from .helpers import new_issue, subscribers


async def settle(worker: Worker, issue_id: int, rounds: int = 2000) -> dict:
    """Tick and send, waiting out backoffs, until nothing of the release is queued or in flight."""
    for _ in range(rounds):
        await mailings.tick()
        if not await worker.run_once(100):
            delivery = await issues.delivery(issue_id)
            if delivery["expanded"] and delivery["queued"] == delivery["sending"] == 0:
                await mailings.tick()
                return await issues.delivery(issue_id)
            await asyncio.sleep(0.02)
    raise AssertionError("the release did not settle")


def received(sink) -> Counter:
    return Counter(a for r in sink.received for a in r.rcpt_tos)


def fast(settings, **changes):
    """Backoff in milliseconds, so that retries happen within the test."""
    return Worker(dataclasses.replace(settings, retry_base_seconds=0.01, **changes))


async def test_421_and_451_for_a_while_then_everything_arrives(tmp_path, smtp_server, smtp_settings):  # noqa: F811
    addresses = await subscribers(tmp_path, 300)
    issue = await new_issue()
    await issues.release(issue["id"])
    smtp_server.answer_everyone("451 4.3.0 Mail server temporarily rejected message", 100)
    worker = fast(smtp_settings, bulk_pause_after=10_000)
    await mailings.tick()
    await worker.run_once(100)  # the first hundred all deferred
    assert (await issues.delivery(issue["id"]))["sent"] == 0
    rows = await db.fetch("SELECT status, attempts, last_error FROM outbox WHERE mailing IS NOT NULL AND attempts > 0")
    assert rows and all(r["status"] == "queued" and "451" in r["last_error"] for r in rows)
    smtp_server.answer_everyone("421 4.7.0 Too many connections, try again later", 150)

    delivery = await settle(worker, issue["id"])
    await worker.close()

    assert smtp_server.troubled == 100 + 150  # the first 100 got 451, then 150 got 421
    assert received(smtp_server) == Counter({a: 1 for a in addresses})
    assert (delivery["sent"], delivery["failed"], delivery["status"]) == (300, 0, "done")
    retried = await db.fetch("SELECT count(*) AS n FROM outbox WHERE mailing IS NOT NULL AND attempts > 1")
    assert retried[0]["n"] >= 200


async def test_550_fails_and_marks_those_addresses_and_the_rest_arrive(tmp_path, client, auth, smtp_server,  # noqa: F811
                                                                        smtp_settings):  # noqa: F811
    addresses = await subscribers(tmp_path, 50)
    refused = addresses[10:15]
    for a in refused:
        smtp_server.reply_to(a, "550 5.1.1 The email account that you tried to reach does not exist")
    issue = await new_issue()
    await issues.release(issue["id"])
    worker = fast(smtp_settings)

    delivery = await settle(worker, issue["id"])

    assert received(smtp_server) == Counter({a: 1 for a in addresses if a not in refused})
    assert (delivery["sent"], delivery["failed"], delivery["status"]) == (45, 5, "done")
    bounced = await db.fetch("SELECT email, bounce_reason FROM subscriber WHERE bounced_at IS NOT NULL ORDER BY id")
    assert [b["email"] for b in bounced] == refused
    assert all("550" in b["bounce_reason"] for b in bounced)
    # They get no more bulk mail: the next issue's audience leaves them out...
    nxt = await new_issue(title="November 2019", issue_date="2019-11-15")
    assert (await client.get(f"/api/v1/issues/{nxt['id']}/recipients", headers=auth)).json() == {"recipients": 45}
    # ...and "retry failed" does not try them again, unless staff say the refusal was ours.
    answer = await client.post(f"/api/v1/issues/{issue['id']}/retry-failed", headers=auth)
    assert answer.json() == {"queued": 0}
    smtp_server.replies.clear()
    answer = await client.post(f"/api/v1/issues/{issue['id']}/retry-failed", headers=auth,
                               json={"include_bounced": True})
    assert answer.json() == {"queued": 5}
    delivery = await settle(worker, issue["id"])
    await worker.close()
    assert received(smtp_server) == Counter({a: 1 for a in addresses})
    assert (delivery["sent"], delivery["failed"]) == (50, 0)


async def test_retry_failed_sends_only_the_failed(tmp_path, client, auth, smtp_server, smtp_settings):  # noqa: F811
    addresses = await subscribers(tmp_path, 30)
    stuck = addresses[:3]
    for a in stuck:
        smtp_server.reply_to(a, "452 4.2.2 Mailbox full")
    issue = await new_issue()
    await issues.release(issue["id"])
    worker = fast(smtp_settings, outbox_max_attempts=2)
    delivery = await settle(worker, issue["id"])
    assert (delivery["sent"], delivery["failed"]) == (27, 3)
    assert not await db.fetch("SELECT id FROM subscriber WHERE bounced_at IS NOT NULL")  # 4xx marks no one

    smtp_server.replies.clear()
    answer = await client.post(f"/api/v1/issues/{issue['id']}/retry-failed", headers=auth)
    assert answer.json() == {"queued": 3}
    delivery = await settle(worker, issue["id"])
    await worker.close()
    assert received(smtp_server) == Counter({a: 1 for a in addresses})
    assert (delivery["sent"], delivery["failed"], delivery["status"]) == (30, 0, "done")


async def test_a_run_of_failures_pauses_the_release_until_it_resumes(tmp_path, client, auth, smtp_server,  # noqa: F811
                                                                    smtp_settings):  # noqa: F811
    addresses = await subscribers(tmp_path, 40)
    issue = await new_issue()
    await issues.release(issue["id"])
    smtp_server.answer_everyone("421 4.7.28 Our system has detected an unusual rate of mail", 10_000)
    worker = fast(smtp_settings, bulk_pause_after=10, bulk_pause_minutes=30, smtp_connections=1)
    await mailings.tick()
    for _ in range(5):
        await worker.run_once(4)
    got = (await client.get(f"/api/v1/issues/{issue['id']}", headers=auth)).json()["delivery"]
    assert got["status"] == "paused" and "10 temporary failures in a row" in got["pause_reason"]
    assert got["paused_until"] is not None
    tried = smtp_server.troubled
    assert tried == 10  # once paused, nothing more is claimed
    await asyncio.sleep(0.05)
    assert await worker.run_once(50) == 0

    smtp_server.answer_everyone("250 OK", 0)
    answer = await client.post(f"/api/v1/issues/{issue['id']}/resume", headers=auth)
    assert answer.status_code == 200 and answer.json()["status"] == "sending"
    delivery = await settle(worker, issue["id"])
    await worker.close()
    assert received(smtp_server) == Counter({a: 1 for a in addresses})
    assert delivery["sent"] == 40 and delivery["status"] == "done"


async def test_the_rate_limit_spaces_messages_out(tmp_path, smtp_server, smtp_settings):  # noqa: F811
    import time

    await subscribers(tmp_path, 10)
    issue = await new_issue()
    await issues.release(issue["id"])
    worker = fast(smtp_settings, smtp_rate=20)  # 20 per second over both connections
    await mailings.tick()
    start = time.monotonic()
    assert await worker.run_once(50) == 10
    took = time.monotonic() - start
    await worker.close()
    assert len(smtp_server.received) == 10
    # Ten messages at 20 per second take at least 9 intervals of 50 ms (a lower bound only).
    assert took >= 0.45, took


async def test_a_row_that_waited_past_half_the_claim_time_out_is_handed_back_unsent(tmp_path, smtp_settings):  # noqa: F811
    """Another worker may take a row once its claim times out; so a slow worker hands back what
    it could not send in time rather than risk sending it twice."""
    from events_app.mail.transport import MemoryTransport

    class Slow(MemoryTransport):
        async def send_raw(self, *args, **kwargs):
            await asyncio.sleep(0.15)
            await super().send_raw(*args, **kwargs)

    await subscribers(tmp_path, 3)
    issue = await new_issue()
    await issues.release(issue["id"])
    await mailings.tick()
    transport = Slow()
    worker = Worker(dataclasses.replace(smtp_settings, outbox_claim_timeout_seconds=0.2), transport=transport)
    assert await worker.run_once(10) == 3
    assert len(transport.messages) == 1  # the second was due to be sent after 0.15 s > 0.1 s
    rows = await db.fetch("SELECT status, attempts FROM outbox ORDER BY id")
    assert [(r["status"], r["attempts"]) for r in rows] == [("sent", 1), ("queued", 0), ("queued", 0)]
