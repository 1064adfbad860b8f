"""One claimed row's fate: build its message, put it on the wire, hand it over, record the outcome.

What a message says is decided in `messages.py` (transactional) and `bulk.py` (issues,
announcements); what an SMTP answer means in `transport.py`. This module maps both onto the outbox
(domain/outbox.py): sent, queued again with backoff, skipped (a bulk recipient left) or failed, and
a permanent refusal of the address itself suppresses it for bulk mail.

Every message leaves as bytes (`Delivery.wire`): CRLF line ends, headers folded by mail/headers.py,
the envelope sender the row's VERP bounce address (mail/verp.py, so a bounce names its row), and,
when DKIM is configured, signed once just before it is handed over (mail/dkim.py).
"""

from __future__ import annotations

import binascii
import logging
from collections.abc import Awaitable
from email.errors import MessageError
from email.message import EmailMessage
from typing import NamedTuple

from ..domain import audience, outbox
from ..settings import Settings
from . import dkim, headers, messages, transactional, verp
from .bulk import KINDS as BULK_KINDS
from .bulk import RawMessage
from .bulk_builder import Builder
from .pause import PausePolicy
from .transport import PermanentFailure, TemporaryFailure, Transport

log = logging.getLogger(__name__)


class Outcome(NamedTuple):
    """What the caller of `Delivery.send` still has to do with the row."""

    bulk_sent: bool = False  # a bulk row handed over: record it as sent with its batch
    unreachable: str | None = None  # the server could not be reached at all: why


DONE = Outcome()  # the outcome is recorded


class Delivery:
    """Sends single rows for a worker: its settings, bulk builder, DKIM signer and pause policy."""

    def __init__(self, settings: Settings, pause: PausePolicy) -> None:
        self.settings = settings
        self.pause = pause
        self.bulk = Builder(settings)
        self.signer = dkim.signer(settings)
        # The registrations, events and waitlist places of the claimed rows (`prepare`).
        self.batch: transactional.Batch | None = None

    async def prepare(self, rows: list[dict]) -> None:
        """Read what the transactional rows of a claimed batch need in a few queries, so that
        building each one asks the database nothing (mail/transactional.py). Adds to what earlier
        batches of the same run read; `forget()` drops it. Optional: without it each row reads
        its own registration in one query."""
        loaded = await transactional.Batch.load(rows)
        if self.batch is None:
            self.batch = loaded
        else:
            self.batch.registrations.update(loaded.registrations)
            self.batch.positions.update(loaded.positions)

    def forget(self) -> None:
        """Drop what `prepare` read (call it where the worker forgets the bulk builder's rows)."""
        self.batch = None

    async def build(self, row: dict) -> RawMessage:
        """The bytes to hand over for one row. Records nothing: what a failure means is decided
        by `send`, which may get this as a task started earlier (mail/lanes.py builds a lane's
        next message while the current one is on the wire)."""
        if row["kind"] in BULK_KINDS:
            built = await self.bulk.build(row)
        else:
            built = await messages.build_raw(row, self.settings, self.batch)
        return self.wire(row, built)

    async def send(self, row: dict, transport: Transport, built: Awaitable[RawMessage] | None = None) -> Outcome:
        """Build (or await `built`, this row's `build` started earlier) and send one row and
        record the outcome, except for a bulk row handed over: the caller records those once per
        batch (`record_sent`)."""
        row_id = row["id"]
        try:
            message = await (built if built is not None else self.build(row))
        except messages.UnknownKind as exc:
            log.warning("outbox row %s: %s; retrying later", row_id, exc)
            await self.retry(row, str(exc))
            return DONE
        except messages.Superseded as exc:
            if row.get("mailing") is not None:
                await outbox.mark_skipped(row_id, f"not sent: {exc}")
            else:
                await outbox.mark_failed(row_id, f"not sent: {exc}")
            return DONE
        except messages.Undeliverable as exc:
            log.warning("outbox row %s (%s) not sent: %s", row_id, row["kind"], exc)
            await outbox.mark_failed(row_id, f"not sent: {exc}")
            return DONE
        except (ValueError, MessageError) as exc:
            # A value no header or encoder takes: the same on every attempt, so fail once.
            reason = f"not sent: the message cannot be built: {one_line(exc)}"
            log.warning("outbox row %s (%s) %s", row_id, row["kind"], reason)
            await outbox.mark_failed(row_id, reason)
            return DONE
        except Exception as exc:  # a database hiccup or a template bug: retry with backoff
            _log_unexpected(row, "building the message failed")
            await self.retry(row, f"building the message failed: {one_line(exc)}")
            return DONE
        try:
            await transport.send_raw(message.sender, message.recipient, message.data, outbox_id=row_id)
        except TemporaryFailure as exc:
            log.warning("outbox row %s (%s) deferred: %s", row_id, row["kind"], exc)
            await self.retry(row, str(exc))
            if row.get("mailing") is not None:
                await self.pause.failed(str(exc))
            return Outcome(unreachable=str(exc)) if exc.connection else DONE
        except PermanentFailure as exc:
            log.warning("outbox row %s (%s) failed: %s", row_id, row["kind"], exc)
            await outbox.mark_failed(row_id, str(exc))
            if exc.recipient:
                await audience.suppress(row["recipient"], str(exc))
            return DONE
        except Exception as exc:
            _log_unexpected(row, "unexpected error while sending")
            await self.retry(row, one_line(exc))
            return DONE
        if row.get("mailing") is not None:
            self.pause.sent()
            return Outcome(bulk_sent=True)
        await outbox.mark_sent(row_id)
        # Row ids, not addresses, in the log: it outlives the personal data it would copy.
        log.info("outbox row %s (%s) sent", row_id, row["kind"])
        return DONE

    def wire(self, row: dict, message: RawMessage | EmailMessage) -> RawMessage:
        """The bytes to hand over for `message` (a bulk RawMessage or an EmailMessage), with the
        envelope sender of this row and, when configured, a DKIM signature."""
        if not isinstance(message, RawMessage):
            _requote(message)
            to = message["To"].addresses[0].addr_spec
            message = RawMessage(verp.bounce_address(row["id"]), to, message.as_bytes(policy=headers.MAIL_POLICY))
        if self.signer is not None:
            message = RawMessage(message.sender, message.recipient, self.signer.sign(message.data))
        return message

    async def retry(self, row: dict, error: str) -> None:
        """Queue the row again with backoff (failed once its attempts are used up)."""
        await outbox.mark_retry(
            row["id"], row["attempts"], error, self.settings.outbox_max_attempts, self.settings.retry_base_seconds
        )

    @staticmethod
    async def record_sent(ids: list[int]) -> None:
        """Record bulk rows as sent, in one statement; on failure they stay `sending` and the
        claim time-out sends them again."""
        try:
            await outbox.mark_sent_many(ids)
        except Exception:
            log.exception("could not record %d bulk messages as sent", len(ids))
            return
        if ids:
            log.info("%d messages recorded as sent", len(ids))


def _log_unexpected(row: dict, what: str) -> None:
    """The traceback on a row's first attempt only: a row retried eight times must not leave eight
    tracebacks (the reason stays in the row's last_error)."""
    if row["attempts"] <= 1:
        log.exception("outbox row %s (%s): %s", row["id"], row["kind"], what)
    else:
        log.warning("outbox row %s (%s): %s again (attempt %s)", row["id"], row["kind"], what, row["attempts"])


def _requote(message: EmailMessage) -> None:
    """Quoted-printable parts re-encoded by binascii, whose lines keep within RFC 2045's 76
    characters (Python 3.11's email body encoder writes soft-broken lines of 77 and 78)."""
    for part in message.walk():
        if not part.is_multipart() and part.get("Content-Transfer-Encoding", "").lower() == "quoted-printable":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):  # always, for a part that is not multipart
                part.set_payload(binascii.b2a_qp(payload, istext=True).decode("ascii"))


def one_line(exc: Exception) -> str:
    """An exception as the one line staff read in the outbox (no control characters)."""
    return headers.single_line(f"{type(exc).__name__}: {exc}", 500)
