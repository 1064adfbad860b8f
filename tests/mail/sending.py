"""Shared by the tests that follow mail through time (tests/domain/test_schedule.py,
tests/domain/test_invite_lifecycle.py): letting workers send until nothing is due, a clock the test
moves, and tallies of what each person received.

The fixtures (smtp_server, smtp_settings, worker, two_workers, clock) are in tests/conftest.py:
take them as arguments, never import them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime

import pytest

from events_app.domain import registrations
from events_app.mail.worker import Worker
from smtp_server import SMTPSink


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
