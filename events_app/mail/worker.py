"""The mail worker: a thin loop that claims due outbox rows, builds each message and sends it.

The rules live elsewhere: claiming, backoff and stuck-row recovery in `outbox.py`, what a message
says in `messages.py`, SMTP error meaning in `transport.py`. Any number of workers may run against
PostgreSQL (claims skip each other's rows); on SQLite one per database is the sensible number.

Every message leaves as bytes (`_wire`): CRLF line ends, headers folded by mail/headers.py, the
envelope sender the row's VERP bounce address (mail/verp.py, so a bounce names its row), and,
when DKIM is configured, signed once just before it is handed over (mail/dkim.py).

`Worker.run(stop)` is used in the web process's lifespan; `run_forever()` by `events-app worker`.
"""

from __future__ import annotations

import asyncio
import binascii
import collections
import contextlib
import logging
import signal
import zlib
from email.errors import MessageError

from .. import db
from .. import settings as settings_module
from ..domain import mailings, outbox, schedule
from ..settings import Settings
from . import bulk, dkim, headers, messages, verp
from .transport import PermanentFailure, TemporaryFailure, Transport, make_transport

log = logging.getLogger(__name__)

# After this many seconds the loop's own failures (database down) are retried at the latest.
MAX_ERROR_PAUSE = 30.0
BATCH_SIZE = 100
# Batches claimed while the previous one is still being sent, before the loop looks again at
# reminders and mailings.
REFILLS = 20
# How often a worker starts due mailings and writes ledger rows when nothing else asks.
MAILING_TICK_SECONDS = 1.0


class _LaneQueues:
    """The claimed rows, one queue per connection. All rows to one address go to the same
    connection in claim order, so a person's messages arrive in the order they were queued (a
    confirmation before the reminder queued after it), while different people's go in parallel."""

    def __init__(self, lanes: int) -> None:
        self.lanes = [collections.deque() for _ in range(lanes)]

    def extend(self, rows: list[dict]) -> None:
        for row in rows:
            self.lanes[zlib.crc32((row["recipient"] or "").lower().encode()) % len(self.lanes)].append(row)

    def __len__(self) -> int:
        return sum(len(q) for q in self.lanes)


class _Batch:
    """What the lanes of one run share: rows sent but not yet recorded, whether the server is
    unreachable, and the claiming of the next batch while they send."""

    def __init__(self, limit: int, refills: int) -> None:
        self.limit = limit
        self.refills = refills
        self.refilling: asyncio.Task | None = None
        self.claimed = 0
        self.sent_bulk: list[int] = []
        self.unreachable: str | None = None


class Throttle:
    """At most `rate` messages per second over all of a worker's connections (0: no limit)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        moment = asyncio.get_running_loop().time()
        slot = max(moment, self.next)
        self.next = slot + self.interval
        if slot > moment:
            await asyncio.sleep(slot - moment)


class Worker:
    """Sends queued outbox rows over `smtp_connections` parallel connections (each reused from
    message to message), at most `smtp_rate` messages per second. Bulk rows (issues,
    announcements) are built by mail/bulk.py and recorded as sent once per batch; a run of
    temporary failures pauses bulk mail (domain/mailings.py) while transactional mail goes on."""

    def __init__(self, settings: Settings | None = None, transport: Transport | None = None) -> None:
        self.settings = settings or settings_module.get()
        self.transport = transport if transport is not None else make_transport(self.settings)
        lanes = [self.transport]
        if hasattr(self.transport, "clone"):
            lanes += [self.transport.clone() for _ in range(self.settings.smtp_connections - 1)]
        self.lanes = lanes
        self.throttle = Throttle(self.settings.smtp_rate)
        self.bulk = bulk.Builder(self.settings)
        self.signer = dkim.signer(self.settings)
        self.failures_in_a_row = 0  # temporary failures of bulk rows, for the automatic pause
        self.paused: set[int] = set()  # mailings this worker paused during the current batch
        # Rows per claim: big enough that the pause between batches (claim, marks) is small next
        # to sending them, small enough that a throttled batch is sent well within the claim
        # time-out (after which another worker would send its rows again).
        self.batch_size = BATCH_SIZE
        if self.settings.smtp_rate > 0:
            fits = int(self.settings.smtp_rate * self.settings.outbox_claim_timeout_seconds / 2)
            self.batch_size = max(1, min(BATCH_SIZE, fits))

    async def run_once(self, limit: int = 50, refills: int = 0) -> int:
        """Claim up to `limit` due rows and settle each: sent, queued again with backoff, skipped
        or failed. With `refills`, claim up to that many more batches while the lanes are still
        sending, so that connections do not idle between batches. Returns how many rows were
        claimed (0: nothing was due)."""
        self.paused = set()
        self.bulk.forget()
        rows = await self._claim(limit)
        if not rows:
            return 0
        queue = _LaneQueues(len(self.lanes))
        queue.extend(rows)
        batch = _Batch(limit, refills)
        batch.claimed = len(rows)
        while queue:  # a refill may land in the queue of a lane that had already finished
            await asyncio.gather(*(self._lane(n, transport, queue, batch) for n, transport in enumerate(self.lanes)))
        await self._record_sent(batch)
        return batch.claimed

    async def _claim(self, limit: int) -> list[dict]:
        rows = await outbox.claim(limit, self.settings.outbox_claim_timeout_seconds)
        # Rows must be sent well within the claim time-out, after which another worker may take
        # them: a row still waiting here after half of it is handed back unsent.
        expires = asyncio.get_running_loop().time() + self.settings.outbox_claim_timeout_seconds / 2
        for row in rows:
            row["_send_by"] = expires
        try:
            await self.bulk.prepare(rows)
        except Exception:
            log.exception("preparing bulk messages failed; their rows wait for the claim time-out")
            rows = [r for r in rows if r.get("mailing") is None]
        return rows

    async def _refill(self, queue: _LaneQueues, batch: _Batch) -> None:
        batch.refills -= 1
        try:
            rows = await self._claim(batch.limit)
        except Exception:
            log.exception("mail worker: claiming the next batch failed")
            rows = []
        if not rows:
            batch.refills = 0
        batch.claimed += len(rows)
        queue.extend(rows)

    async def _record_sent(self, batch: _Batch) -> None:
        ids, batch.sent_bulk = batch.sent_bulk, []
        try:
            await outbox.mark_sent_many(ids)
        except Exception:  # they stay `sending`; the claim time-out sends them again
            log.exception("could not record %d bulk messages as sent", len(ids))
        if ids:
            log.info("%d bulk messages sent", len(ids))

    async def _lane(self, lane: int, transport: Transport, queue: _LaneQueues, batch: _Batch) -> None:
        """One connection's share of the batch: take rows from its own queue until none are left."""
        mine = queue.lanes[lane]
        while True:
            # Claim the next batch while this lane still has a couple of rows: a lane must not
            # idle because the rows of this batch happened to fall to the other lanes.
            if len(mine) <= 2 and batch.refills > 0 and batch.refilling is None:
                batch.refilling = asyncio.create_task(self._refill(queue, batch))
            if not mine:
                if batch.refilling is None:
                    return
                await batch.refilling
                batch.refilling = None
                continue
            if batch.refilling is not None and batch.refilling.done():
                batch.refilling = None
            row = mine.popleft()
            if row.get("mailing") is not None and row["mailing"] in self.paused:
                # Paused a moment ago by this batch's failures: hand the row back untried.
                await self._settle(outbox.give_back(row))
                continue
            if asyncio.get_running_loop().time() > row["_send_by"]:
                batch.refills = 0  # sending is slower than claiming: claim less
                await self._settle(outbox.give_back(row))
                continue
            if batch.unreachable is not None:
                # The server cannot be reached: the rest of the batch would only wait for the same
                # time-out, while its claim ages. Queue them again without trying.
                batch.refills = 0
                await self._settle(self._retry(row, batch.unreachable))
                continue
            try:
                await self.throttle.wait()
                error = await self._handle(row, transport, batch)
                if error is not None and batch.unreachable is None:
                    batch.unreachable = error
            except Exception:  # the database failed while marking: the claim time-out recovers it
                log.exception("outbox row %s: could not record the outcome", row["id"])
            if len(batch.sent_bulk) >= batch.limit:
                await self._record_sent(batch)

    async def _settle(self, marking) -> None:
        try:
            await marking
        except Exception:
            log.exception("could not record an outbox row's outcome")

    async def _handle(self, row: dict, transport: Transport, batch: _Batch) -> str | None:
        """Build and send one row and record the outcome. Returns the error when the server
        could not be reached at all."""
        row_id = row["id"]
        is_bulk = row["kind"] in bulk.KINDS
        try:
            built = await (self.bulk.build(row) if is_bulk else messages.build(row, self.settings))
            message = self._wire(row, built)  # bytes, envelope sender, signature
        except messages.UnknownKind as exc:
            log.warning("outbox row %s: %s; retrying later", row_id, exc)
            await self._retry(row, str(exc))
            return None
        except messages.Superseded as exc:
            if row.get("mailing") is not None:
                await outbox.mark_skipped(row_id, f"not sent: {exc}")
            else:
                await outbox.mark_failed(row_id, f"not sent: {exc}")
            return None
        except messages.Undeliverable as exc:
            log.warning("outbox row %s (%s) not sent: %s", row_id, row["kind"], exc)
            await outbox.mark_failed(row_id, f"not sent: {exc}")
            return None
        except (ValueError, MessageError) as exc:
            # A value no header or encoder takes: the same on every attempt, so fail once.
            reason = f"not sent: the message cannot be built: {_one_line(exc)}"
            log.warning("outbox row %s (%s) %s", row_id, row["kind"], reason)
            await outbox.mark_failed(row_id, reason)
            return None
        except Exception as exc:  # a database hiccup or a template bug: retry with backoff
            self._log_unexpected(row, "building the message failed")
            await self._retry(row, f"building the message failed: {_one_line(exc)}")
            return None
        try:
            await transport.send_raw(message.sender, message.recipient, message.data, outbox_id=row_id)
        except TemporaryFailure as exc:
            log.warning("outbox row %s (%s) deferred: %s", row_id, row["kind"], exc)
            await self._retry(row, str(exc))
            if row.get("mailing") is not None:
                await self._count_failure(str(exc))
            return str(exc) if exc.connection else None
        except PermanentFailure as exc:
            log.warning("outbox row %s (%s) failed: %s", row_id, row["kind"], exc)
            await outbox.mark_failed(row_id, str(exc))
            if exc.recipient:
                await outbox.suppress(row["recipient"], str(exc))
            return None
        except Exception as exc:
            self._log_unexpected(row, "unexpected error while sending")
            await self._retry(row, _one_line(exc))
            return None
        if row.get("mailing") is not None:
            self.failures_in_a_row = 0
            batch.sent_bulk.append(row_id)
            return None
        await outbox.mark_sent(row_id)
        # Row ids, not addresses, in the log: it outlives the personal data it would copy.
        log.info("outbox row %s (%s) sent", row_id, row["kind"])
        return None

    def _wire(self, row: dict, message) -> bulk.RawMessage:
        """The bytes to hand over for `message` (a bulk RawMessage or an EmailMessage), with the
        envelope sender of this row and, when configured, a DKIM signature."""
        if not isinstance(message, bulk.RawMessage):
            _requote(message)
            to = message["To"].addresses[0].addr_spec
            message = bulk.RawMessage(verp.bounce_address(row["id"]), to, message.as_bytes(policy=headers.MAIL_POLICY))
        if self.signer is not None:
            message = bulk.RawMessage(message.sender, message.recipient, self.signer.sign(message.data))
        return message

    @staticmethod
    def _log_unexpected(row: dict, what: str) -> None:
        """The traceback on a row's first attempt only: a row retried eight times must not
        leave eight tracebacks (the reason stays in the row's last_error)."""
        if row["attempts"] <= 1:
            log.exception("outbox row %s (%s): %s", row["id"], row["kind"], what)
        else:
            log.warning("outbox row %s (%s): %s again (attempt %s)", row["id"], row["kind"], what, row["attempts"])

    async def _count_failure(self, error: str) -> None:
        """A run of temporary failures means the server is struggling (or throttling us): pause
        bulk mail for a while rather than hammer it and burn every row's attempts."""
        self.failures_in_a_row += 1
        if self.failures_in_a_row >= self.settings.bulk_pause_after:
            self.failures_in_a_row = 0
            paused = await mailings.pause_all_sending(
                self.settings.bulk_pause_minutes,
                f"paused automatically after {self.settings.bulk_pause_after} temporary failures in a row "
                f"(last: {error[:200]})",
            )
            self.paused.update(paused)
            if paused:
                log.warning("bulk mail paused for %s minutes: mailings %s", self.settings.bulk_pause_minutes, paused)

    async def _retry(self, row: dict, error: str) -> None:
        await outbox.mark_retry(
            row["id"], row["attempts"], error, self.settings.outbox_max_attempts, self.settings.retry_base_seconds
        )

    async def _tick(self) -> int:
        try:
            return await mailings.tick()
        except Exception:
            log.exception("mail worker: mailing bookkeeping failed")
            return 0

    async def close(self) -> None:
        for transport in self.lanes:
            with contextlib.suppress(Exception):
                await transport.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Send until `stop` is set; every `schedule_interval_seconds` first queue the reminders
        and follow-ups that fell due (domain/schedule.py). Sleeps `worker_poll_seconds` when nothing was due; an error
        of its own (database unreachable) is logged and retried with a growing pause, never
        fatal. Closes the transport on the way out."""
        errors = 0
        try:
            next_schedule = 0.0
            last_tick = float("-inf")
            written = 0
            loop = asyncio.get_running_loop()
            while not stop.is_set():
                if loop.time() >= next_schedule:
                    next_schedule = loop.time() + self.settings.schedule_interval_seconds
                    try:
                        await schedule.enqueue_due()
                    except Exception:
                        log.exception("mail worker: queuing reminders and follow-ups failed")
                # While a release is being expanded, one batch of ledger rows per round.
                if written or loop.time() - last_tick >= MAILING_TICK_SECONDS:
                    written, last_tick = await self._tick(), loop.time()
                try:
                    handled = await self.run_once(self.batch_size, refills=REFILLS)
                    errors = 0
                except Exception:
                    errors += 1
                    log.exception("mail worker: claiming failed (%d in a row)", errors)
                    handled = 0
                if handled or written:
                    continue
                # Nothing to send: finish mailings whose last rows just went, start due ones.
                if loop.time() > last_tick:
                    written, last_tick = await self._tick(), loop.time()
                    if written:
                        continue
                pause = self.settings.worker_poll_seconds
                if errors:
                    pause = min(pause * 2**errors, MAX_ERROR_PAUSE)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=pause)
        finally:
            await self.close()


def _requote(message) -> None:
    """Quoted-printable parts re-encoded by binascii, whose lines keep within RFC 2045's 76
    characters (Python 3.11's email body encoder writes soft-broken lines of 77 and 78)."""
    for part in message.walk():
        if not part.is_multipart() and part.get("Content-Transfer-Encoding", "").lower() == "quoted-printable":
            part.set_payload(binascii.b2a_qp(part.get_payload(decode=True), istext=True).decode("ascii"))


def _one_line(exc: Exception) -> str:
    """An exception as the one line staff read in the outbox (no control characters)."""
    return headers.single_line(f"{type(exc).__name__}: {exc}", 500)


async def run_forever() -> None:
    """`events-app worker`: open the database, send until SIGTERM or SIGINT, then finish the
    message in hand, close the SMTP connection and the database pool."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    await db.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on every platform
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    worker = Worker()
    log.info("mail worker started (%s)", type(worker.transport).__name__)
    try:
        await worker.run(stop)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await db.stop()
        log.info("mail worker stopped")
