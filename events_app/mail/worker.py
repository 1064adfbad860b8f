"""The mail worker: the loop that claims due outbox rows and has them sent.

The loop only decides when: queue the reminders and follow-ups that fell due (domain/schedule.py),
do the mailings' bookkeeping (domain/mailings.py `tick`), claim a batch and send it, sleep when
nothing was due, back off when its own database calls fail. The rest lives in a module each:
claiming, backoff and stuck-row recovery in domain/outbox.py; a batch spread over the SMTP
connections in `lanes.py`; the rate limit and batch size in `throttle.py`; the automatic pause of
bulk mail in `pause.py`; one row's message, bytes and outcome in `delivery.py` (what it says in
`messages.py` and `bulk.py`, what an SMTP answer means in `transport.py`).

Any number of workers may run against PostgreSQL (claims skip each other's rows); on SQLite one per
database is the sensible number. `run_forever()` is `events-app worker`; `run_beside(stop)` is how
`events-app serve` runs its worker (the web process's lifespan): by default as a child
`events-app worker` process, so that the worker has its own core, event loop and database
connection. On its own loop inside the server (`EVENTS_SERVE_WORKER=task`, `Worker.run`), every
step of a message (each SMTP command, each statement) waited behind the turn of the loop that
answered up to 64 requests: during a rush of 10,000 registrations (bench/rush.py) on SQLite the
confirmations went out at about 200/s while the rush was answered at 2,100/s. A child process
is also what SQLite's WAL is made for (one writer at a time, readers beside it; short write
transactions and a busy time-out on both sides), and a stop of the server stops it the same way
as SIGTERM stops `events-app worker`: the message in hand is finished, the rest handed back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys

from .. import db
from .. import settings as settings_module
from ..domain import mailings, outbox, schedule
from ..settings import Settings
from . import render
from .delivery import Delivery
from .lanes import BatchRun
from .pause import PausePolicy
from .throttle import Throttle, batch_size
from .transport import Transport, make_transport

log = logging.getLogger(__name__)

# After this many seconds the loop's own failures (database down) are retried at the latest.
MAX_ERROR_PAUSE = 30.0
# Batches claimed while the previous one is still being sent, before the loop looks again at
# reminders and mailings.
REFILLS = 20
# How often a worker starts due mailings and writes ledger rows when nothing else asks.
MAILING_TICK_SECONDS = 1.0


class Worker:
    """Sends queued outbox rows over `smtp_connections` parallel connections (each reused from
    message to message), at most `smtp_rate` messages per second. Bulk rows (issues,
    announcements) are recorded as sent once per batch; a run of temporary failures pauses bulk
    mail while transactional mail goes on."""

    def __init__(self, settings: Settings | None = None, transport: Transport | None = None) -> None:
        self.settings = settings or settings_module.get()
        self.transport = transport if transport is not None else make_transport(self.settings)
        # One transport per connection; a transport that cannot be cloned is the only lane.
        self.lanes: list[Transport] = [self.transport]
        clone = getattr(self.transport, "clone", None)
        if clone is not None:
            self.lanes += [clone() for _ in range(self.settings.smtp_connections - 1)]
        self.throttle = Throttle(self.settings.smtp_rate)
        self.pause = PausePolicy(self.settings)
        self.delivery = Delivery(self.settings, self.pause)
        self.batch_size = batch_size(self.settings)
        # Set by `run`: a run of sends stops after the message in hand when it is set.
        self.stop: asyncio.Event | None = None

    async def run_once(self, limit: int = 50, refills: int = 0) -> int:
        """Claim up to `limit` due rows and settle each: sent, queued again with backoff, skipped
        or failed. With `refills`, claim up to that many more batches while the lanes are still
        sending, so that connections do not idle between batches. Returns how many rows were
        claimed (0: nothing was due)."""
        self.pause.new_batch()
        self.delivery.bulk.forget()
        self.delivery.forget()
        rows = await self._claim(limit, recover=True)
        if not rows:
            return 0
        run = BatchRun(self.lanes, self._claim, self.delivery, self.throttle, self.pause, limit, refills, self.stop)
        return await run.run(rows)

    async def _claim(self, limit: int, recover: bool = False) -> list[dict]:
        """Claim due rows and load what their bulk messages need; each row carries `_send_by`.
        Rows stuck in `sending` are released by the first claim of a run (`recover`), not by each
        refill: one statement fewer between batches."""
        rows = await outbox.claim(limit, self.settings.outbox_claim_timeout_seconds, recover)
        if rows:
            try:  # the organisation's identity as staff last saved it, for this batch's emails
                await render.refresh()
            except Exception:
                log.exception("mail worker: reading the organisation's identity failed; using the last one read")
        # Rows must be sent well within the claim time-out, after which another worker may take
        # them: a row still waiting here after half of it is handed back unsent.
        expires = asyncio.get_running_loop().time() + self.settings.outbox_claim_timeout_seconds / 2
        for row in rows:
            row["_send_by"] = expires
        try:
            await self.delivery.bulk.prepare(rows)
        except Exception:
            log.exception("preparing bulk messages failed; their rows wait for the claim time-out")
            rows = [r for r in rows if r.get("mailing") is None]
        try:  # the batch's registrations in a few queries, not one (or more) per message
            await self.delivery.prepare(rows)
        except Exception:
            log.exception("reading the batch's registrations failed; each message reads its own")
        return rows

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
        and follow-ups that fell due (domain/schedule.py). Sleeps `worker_poll_seconds` when
        nothing was due; an error of its own (database unreachable) is logged and retried with a
        growing pause, never fatal. Closes the transport on the way out."""
        errors = 0
        self.stop = stop
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


# How often a worker started by `serve` checks that its server is still there.
PARENT_CHECK_SECONDS = 1.0
# How long `serve` waits for its worker process to finish the messages in hand before killing it.
STOP_GRACE_SECONDS = 20.0
# Pause before a worker process that exited on its own is started again (doubling, up to 60 s).
RESTART_PAUSE_SECONDS = 1.0


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Set `stop` once the process that started this worker is gone (killed without a chance to
    stop it): the worker must not outlive its server."""
    while not stop.is_set():
        if os.getppid() != parent_pid:
            log.warning("mail worker: the server that started it (pid %d) is gone; stopping", parent_pid)
            stop.set()
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=PARENT_CHECK_SECONDS)


async def run_forever(parent_pid: int | None = None) -> None:
    """`events-app worker`: open the database, send until SIGTERM or SIGINT, then finish the
    message in hand, close the SMTP connection and the database pool. With `parent_pid` (a
    worker started by `serve`) also stop when that process is gone."""
    if not logging.getLogger().handlers:
        # EVENTS_LOG_LEVEL as for `serve` (it was ignored: a line per message at any level).
        level = settings_module.get().log_level_or("info").upper()
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
    watch = asyncio.create_task(_watch_parent(parent_pid, stop)) if parent_pid is not None else None
    try:
        await worker.run(stop)
    finally:
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        for sig in installed:
            loop.remove_signal_handler(sig)
        await db.stop()
        log.info("mail worker stopped")


async def run_beside(stop: asyncio.Event, settings: Settings) -> None:
    """The mail worker of `events-app serve`, until `stop` is set: a child `events-app worker`
    process (`serve_worker` "process", the default), started again with a growing pause should
    it exit on its own, and stopped with SIGTERM (given STOP_GRACE_SECONDS to finish the
    messages in hand, then killed); or, with "task", a Worker on this event loop."""
    if settings.serve_worker == "task":
        await Worker(settings).run(stop)
        return
    pause = RESTART_PAUSE_SECONDS
    while not stop.is_set():
        # Its own session: a Ctrl-C at the terminal reaches the server, which then stops the
        # worker, rather than both at once (the server would take that exit for a crash).
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "events_app.cli",
            "worker",
            "--parent-pid",
            str(os.getpid()),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        exited = asyncio.ensure_future(proc.wait())
        stopping = asyncio.ensure_future(stop.wait())
        started = asyncio.get_running_loop().time()
        await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not exited.done():
            stopping.cancel()
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(exited), timeout=STOP_GRACE_SECONDS)
            except TimeoutError:
                log.error("mail worker process %d did not stop in %g s; killing it", proc.pid, STOP_GRACE_SECONDS)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await exited
            return
        stopping.cancel()
        if stop.is_set():
            return
        if asyncio.get_running_loop().time() - started > 60:
            pause = RESTART_PAUSE_SECONDS
        log.error("mail worker process exited (status %s); starting another in %g s", proc.returncode, pause)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=pause)
        pause = min(pause * 2, 60.0)
