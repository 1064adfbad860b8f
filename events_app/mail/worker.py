"""The mail worker: a thin loop that claims due outbox rows, builds each message and sends it.

The rules live elsewhere: claiming, backoff and stuck-row recovery in `outbox.py`, what a message
says in `messages.py`, SMTP error meaning in `transport.py`. Any number of workers may run against
PostgreSQL (claims skip each other's rows); on SQLite one per database is the sensible number.

`Worker.run(stop)` is used in the web process's lifespan; `run_forever()` by `events-app worker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from .. import db
from .. import settings as settings_module
from ..settings import Settings
from ..domain import schedule
from . import messages, outbox
from .transport import PermanentFailure, TemporaryFailure, Transport, make_transport

log = logging.getLogger(__name__)

# After this many seconds the loop's own failures (database down) are retried at the latest.
MAX_ERROR_PAUSE = 30.0


class Worker:
    """Sends queued outbox rows through one transport (one reused SMTP connection)."""

    def __init__(self, settings: Settings | None = None, transport: Transport | None = None) -> None:
        self.settings = settings or settings_module.get()
        self.transport = transport if transport is not None else make_transport(self.settings)

    async def run_once(self, limit: int = 50) -> int:
        """Claim up to `limit` due rows and settle each: sent, queued again with backoff, or
        failed. Returns how many rows were claimed (0: nothing was due)."""
        rows = await outbox.claim(limit, self.settings.outbox_claim_timeout_seconds)
        unreachable: str | None = None
        for row in rows:
            if unreachable is not None:
                # The server cannot be reached: the rest of the batch would only wait for the same
                # time-out, while its claim ages. Queue them again without trying.
                await self._retry(row, unreachable)
                continue
            try:
                unreachable = await self._handle(row)
            except Exception:  # the database failed while marking: the claim time-out recovers it
                log.exception("outbox row %s: could not record the outcome", row["id"])
        return len(rows)

    async def _handle(self, row: dict) -> str | None:
        """Build and send one row and record the outcome. Returns the error when the server
        could not be reached at all."""
        row_id = row["id"]
        try:
            message = await messages.build(row, self.settings)
        except messages.UnknownKind as exc:
            log.warning("outbox row %s: %s; retrying later", row_id, exc)
            await self._retry(row, str(exc))
            return None
        except messages.Undeliverable as exc:
            log.warning("outbox row %s (%s) not sent: %s", row_id, row["kind"], exc)
            await outbox.mark_failed(row_id, f"not sent: {exc}")
            return None
        except Exception as exc:  # a database hiccup or a template bug: retry with backoff
            log.exception("outbox row %s (%s): building the message failed", row_id, row["kind"])
            await self._retry(row, f"building the message failed: {type(exc).__name__}: {exc}")
            return None
        try:
            await self.transport.send(message, outbox_id=row_id)
        except TemporaryFailure as exc:
            log.warning("outbox row %s (%s) deferred: %s", row_id, row["kind"], exc)
            await self._retry(row, str(exc))
            return str(exc) if exc.connection else None
        except PermanentFailure as exc:
            log.warning("outbox row %s (%s) failed: %s", row_id, row["kind"], exc)
            await outbox.mark_failed(row_id, str(exc))
            return None
        except Exception as exc:
            log.exception("outbox row %s: unexpected error while sending", row_id)
            await self._retry(row, f"{type(exc).__name__}: {exc}")
            return None
        await outbox.mark_sent(row_id)
        # Row ids, not addresses, in the log: it outlives the personal data it would copy.
        log.info("outbox row %s (%s) sent", row_id, row["kind"])
        return None

    async def _retry(self, row: dict, error: str) -> None:
        await outbox.mark_retry(row["id"], row["attempts"], error, self.settings.outbox_max_attempts)

    async def run(self, stop: asyncio.Event) -> None:
        """Send until `stop` is set; every `schedule_interval_seconds` first queue the reminders
        and follow-ups that fell due (domain/schedule.py). Sleeps `worker_poll_seconds` when nothing was due; an error
        of its own (database unreachable) is logged and retried with a growing pause, never
        fatal. Closes the transport on the way out."""
        errors = 0
        try:
            next_schedule = 0.0
            loop = asyncio.get_running_loop()
            while not stop.is_set():
                if loop.time() >= next_schedule:
                    next_schedule = loop.time() + self.settings.schedule_interval_seconds
                    try:
                        await schedule.enqueue_due()
                    except Exception:
                        log.exception("mail worker: queuing reminders and follow-ups failed")
                try:
                    handled = await self.run_once()
                    errors = 0
                except Exception:
                    errors += 1
                    log.exception("mail worker: claiming failed (%d in a row)", errors)
                    handled = 0
                if handled:
                    continue
                pause = self.settings.worker_poll_seconds
                if errors:
                    pause = min(pause * 2**errors, MAX_ERROR_PAUSE)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=pause)
        finally:
            with contextlib.suppress(Exception):
                await self.transport.close()


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
