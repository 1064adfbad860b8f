"""Shared by the tests that follow mail through time (tests/domain/test_schedule.py,
tests/domain/test_invite_lifecycle.py): workers sending to the loopback SMTP server, a clock the
test moves, and tallies of what each person received.

Import the fixtures into a test module to use them outside tests/mail:
    from mail.sending import smtp_server, smtp_settings, worker, two_workers  # noqa: F401
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from datetime import datetime

import pytest

from events_app import settings
from events_app.domain import registrations
from events_app.mail.worker import Worker
from smtp_server import SMTPSink, smtp_server  # noqa: F401  (the fixture)


@pytest.fixture
def smtp_settings(smtp_server):  # noqa: F811
    return dataclasses.replace(settings.get(), smtp_url=smtp_server.url)


@pytest.fixture
async def worker(smtp_settings):
    w = Worker(smtp_settings)
    yield w
    await w.transport.close()


@pytest.fixture
async def two_workers(smtp_settings):
    """Two workers, each with its own SMTP connection, as two worker processes would have."""
    pair = (Worker(smtp_settings), Worker(smtp_settings))
    yield pair
    for w in pair:
        await w.transport.close()


class Clock:
    """The time the test says it is. Registering, cancelling and promoting (which stamp
    `registrations.now()`) and `schedule.enqueue_due(clock.now)` all see it; the outbox keeps
    real time, so whatever is queued is due for the workers at once."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, start: datetime) -> None:
        self.now = start
        monkeypatch.setattr(registrations, "now", lambda: self.now)

    def set(self, moment: datetime) -> datetime:
        self.now = moment
        return moment


@pytest.fixture
def clock(monkeypatch):
    """A Clock; call `clock.set(moment)` before acting."""
    return Clock(monkeypatch, registrations.now())


async def drain(*workers: Worker, limit: int = 50) -> list[int]:
    """Let the workers send until nothing is due, all at once. Returns how many rows each
    claimed."""

    async def run(w: Worker) -> int:
        total = 0
        while claimed := await w.run_once(limit):
            total += claimed
        return total

    return list(await asyncio.gather(*(run(w) for w in workers)))


def tally(sink: SMTPSink, subject_starts: tuple[str, ...] = ()) -> Counter:
    """(recipient, subject) -> how many such messages arrived, optionally only subjects that
    start with one of `subject_starts`."""
    counts: Counter = Counter()
    with sink.lock:
        received = list(sink.received)
    for item in received:
        subject = str(item.message["Subject"])
        if subject_starts and not subject.startswith(subject_starts):
            continue
        for recipient in item.rcpt_tos:
            counts[(recipient, subject)] += 1
    return counts


def subjects(sink: SMTPSink, address: str) -> list[str]:
    """The subjects `address` received, in the order they arrived."""
    return [str(m["Subject"]) for m in sink.to(address)]
