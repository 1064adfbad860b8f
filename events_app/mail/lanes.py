"""Lanes: one claimed batch spread over a worker's SMTP connections.

Owns the order promise and the pace of a batch. All rows to one address go to the same connection
(lane) in claim order, so a person's messages arrive in the order they were queued (a confirmation
before the reminder queued after it), while different people's go in parallel. While a lane still
has its share of half a batch, the next batch is claimed, so that connections do not idle between
batches.

A lane hands a row back untried when its mailing was paused a moment ago (mail/pause.py) or when
it waited past its `_send_by` time (half the claim time-out: sending is slower than claiming, so
no more refills); once the server proved unreachable, the rest of the batch is queued again
without trying (each would only wait for the same time-out while its claim ages). Rows sent, bulk
and transactional alike, are recorded once per `limit` rows and at the end (domain/outbox.py
`mark_sent_many`; `deferring_sent` collects the transactional ones that delivery.py marks one by
one): one statement per batch instead of a commit per message, run beside the sending (the run
waits for it before it ends). When the worker is told to stop, each lane finishes the message in
hand and the rows not yet tried go back to the queue.

A lane starts building its next row's message (`Delivery.build`, as a task) before it hands over
the current one, so the build runs while the lane waits for the server's answers instead of
lengthening each message's round; a row that goes back untried drops the message built for it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import zlib
from collections.abc import Awaitable, Callable

from ..domain import outbox
from .delivery import Delivery
from .pause import PausePolicy
from .throttle import Throttle
from .transport import Transport

log = logging.getLogger(__name__)


class LaneQueues:
    """The claimed rows, one queue per connection, chosen by the recipient's address."""

    def __init__(self, lanes: int) -> None:
        self.lanes: list[collections.deque[dict]] = [collections.deque() for _ in range(lanes)]

    def extend(self, rows: list[dict]) -> None:
        for row in rows:
            self.lanes[zlib.crc32((row["recipient"] or "").lower().encode()) % len(self.lanes)].append(row)

    def __len__(self) -> int:
        return sum(len(q) for q in self.lanes)


class BatchRun:
    """One run of `Worker.run_once`: the rows claimed, then up to `refills` more batches of up to
    `limit` rows claimed with `claim` while the lanes send, each row sent by `delivery`."""

    def __init__(
        self,
        transports: list[Transport],
        claim: Callable[[int], Awaitable[list[dict]]],
        delivery: Delivery,
        throttle: Throttle,
        pause: PausePolicy,
        limit: int,
        refills: int,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.transports = transports
        self.claim = claim
        self.delivery = delivery
        self.throttle = throttle
        self.pause = pause
        self.limit = limit
        self.refills = refills
        self.stop = stop
        self.queue = LaneQueues(len(transports))
        self.refilling: asyncio.Task | None = None
        self.claimed = 0
        self.sent: list[int] = []  # rows handed over, not yet recorded
        # Statements recording sent rows, running while the lanes go on sending.
        self.recording: set[asyncio.Task] = set()
        # A lane asks for the next batch while it still has this many rows: about half a batch
        # in all, so that the claim (a few statements, each a round trip that waits its turn for
        # a core on a busy machine) can finish before the lanes run dry. With 2 (the old figure) a
        # lane ran dry whenever a claim took longer than sending two messages.
        self.ahead = max(2, limit // (2 * max(1, len(transports))))
        self.unreachable: str | None = None  # why the server could not be reached, once it could not

    async def run(self, rows: list[dict]) -> int:
        """Send `rows` (and what refills bring) to the end; returns how many rows were claimed."""
        self.queue.extend(rows)
        self.claimed = len(rows)
        try:
            # The lanes' tasks inherit the context: their transactional rows are noted in self.sent.
            with outbox.deferring_sent(self.sent):
                while True:
                    await asyncio.gather(*(self._lane(n, transport) for n, transport in enumerate(self.transports)))
                    if self.refilling is not None:  # rows it claims are this run's: wait for them
                        await self.refilling
                        self.refilling = None
                    if not self.queue:  # else a refill landed in the queue of a lane that had finished
                        break
        finally:
            while self.recording:
                await asyncio.gather(*list(self.recording))
            await self._record_sent()
        return self.claimed

    async def _refill(self) -> None:
        self.refills -= 1
        try:
            rows = await self.claim(self.limit)
        except Exception:
            log.exception("mail worker: claiming the next batch failed")
            rows = []
        if not rows:
            self.refills = 0
        self.claimed += len(rows)
        self.queue.extend(rows)

    async def _record_sent(self) -> None:
        # The same list object stays in the lanes' context: take its contents, keep it.
        ids = self.sent[:]
        del self.sent[:]
        await self.delivery.record_sent(ids)

    def _untried(self, row: dict) -> Awaitable[None] | None:
        """How `row` goes back without being tried, or None to send it."""
        if self.stop is not None and self.stop.is_set():
            # Stopping: the message in hand was finished; the rest goes back untried.
            self.refills = 0
            return outbox.give_back(row)
        if self.pause.holds(row):
            # Paused a moment ago by this batch's failures: hand the row back untried.
            return outbox.give_back(row)
        if asyncio.get_running_loop().time() > row["_send_by"]:
            self.refills = 0  # sending is slower than claiming: claim less
            return outbox.give_back(row)
        if self.unreachable is not None:
            self.refills = 0
            return self.delivery.retry(row, self.unreachable)
        return None

    async def _lane(self, lane: int, transport: Transport) -> None:
        """One connection's share of the batch: take rows from its own queue until none are left."""
        mine = self.queue.lanes[lane]
        # The message of the row at the head of `mine`, built while the one before is on the wire:
        # the build then fills the time the lane waits for the server's answers instead of adding
        # to it. Only this lane takes from `mine`, so that row is the next one it takes.
        next_built: asyncio.Task | None = None
        while True:
            # Claim the next batch while this lane still has `ahead` rows: a lane must not
            # idle because the rows of this batch happened to fall to the other lanes.
            if len(mine) <= self.ahead and self.refills > 0 and self.refilling is None:
                self.refilling = asyncio.create_task(self._refill())
            if not mine:
                refilling = self.refilling
                if refilling is None:
                    return
                await refilling
                # Another lane may have started the next refill meanwhile: that one stays known,
                # or its rows would be claimed after the run ended and wait out the claim time-out.
                if self.refilling is refilling:
                    self.refilling = None
                continue
            if self.refilling is not None and self.refilling.done():
                self.refilling = None
            row = mine.popleft()
            built, next_built = next_built, None
            untried = self._untried(row)
            if untried is not None:
                if built is not None:
                    _discard(built)
                await _settle(untried)
                continue
            try:
                await self.throttle.wait()
                if mine:
                    next_built = asyncio.create_task(self.delivery.build(mine[0]))
                outcome = await self.delivery.send(row, transport, built)
                if outcome.bulk_sent:
                    self.sent.append(row["id"])
                if outcome.unreachable is not None and self.unreachable is None:
                    self.unreachable = outcome.unreachable
            except Exception:  # the database failed while marking: the claim time-out recovers it
                log.exception("outbox row %s: could not record the outcome", row["id"])
            if len(self.sent) >= self.limit:
                # Recorded beside the sending (the ids are taken at once): the lane does not wait
                # for the statement; the run waits for it before it ends.
                recording = asyncio.create_task(self._record_sent())
                self.recording.add(recording)
                recording.add_done_callback(self.recording.discard)


def _discard(task: asyncio.Task) -> None:
    """Drop a message built ahead for a row that goes back untried (its error, if any, too)."""
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


async def _settle(marking: Awaitable[None]) -> None:
    try:
        await marking
    except Exception:
        log.exception("could not record an outbox row's outcome")
