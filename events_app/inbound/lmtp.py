"""`events-app inbound`: one message from standard input, or an LMTP server (aiosmtpd's LMTP class)
for an MTA to deliver to. Both read with `parse.read` and act with `act.handle`.

LMTP answers after DATA with one reply per accepted recipient (RFC 2033): 250 once the message
was acted on or ignored; 451 on a temporary failure (the database away, or anything unexpected),
so the MTA keeps the message and tries again; the message key makes the retry act once. The one
message is handled once for all its recipients (each of them is an envelope recipient it may name).

Standard input exits 0 when the message was acted on or ignored, 75 (EX_TEMPFAIL, which Postfix's
pipe and sendmail take as "try again later") when it could not be handled now.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from aiosmtpd.lmtp import LMTP

from .. import db
from . import parse

log = logging.getLogger(__name__)

EX_TEMPFAIL = 75
MAX_BYTES = 32 * 1024 * 1024  # larger messages are none of ours (aiosmtpd's own default limit)


_started = False


async def _database() -> None:
    """Open the database (the PostgreSQL pool) once it answers: a listener started while the
    database is away answers 451 until it is back, then works without a restart."""
    global _started
    if not _started:
        await db.start()
        _started = True


async def deliver(raw: bytes, recipients: list[str]) -> str:
    """Read and act on one message; returns the outcome. Raises on a temporary failure."""
    from . import act

    await _database()
    item = parse.read(raw, recipients)
    acted, outcome = await act.handle(item)
    return outcome if acted else f"duplicate: {outcome}"


async def from_stdin(recipients: list[str]) -> int:
    """Handle the message on standard input; the exit status (see the module docstring)."""
    raw = sys.stdin.buffer.read(MAX_BYTES + 1)
    if not raw.strip():
        raise ValueError("no message on standard input")
    if len(raw) > MAX_BYTES:
        raw = raw[:MAX_BYTES]  # still keyed and recorded; what we act on is in the headers and first parts
    try:
        outcome = await deliver(raw, recipients)
    except Exception as exc:  # one line: the MTA keeps the message and shows this in its log
        reason = " ".join(str(exc).split())[:300]
        print(f"events-app inbound: not handled now, try again later: {type(exc).__name__}: {reason}", file=sys.stderr)
        return EX_TEMPFAIL
    finally:
        if _started:
            await db.stop()
    print(outcome)
    return 0


class Handler:
    """aiosmtpd handler: accept every recipient, act once per message after DATA."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        count = max(1, len(envelope.rcpt_tos))
        try:
            outcome = await deliver(envelope.original_content or b"", list(envelope.rcpt_tos))
        except Exception:
            log.exception("inbound message not handled; the MTA will try again")
            reply = "451 4.3.0 Temporary failure, try again later"
        else:
            log.info("inbound: %s", outcome)
            reply = "250 2.0.0 OK"
        # LMTP: one reply per recipient, in order (RFC 2033 section 4.2).
        return "\r\n".join([reply] * count)


async def serve(host: str, port: int) -> None:
    """Run the LMTP server until SIGINT or SIGTERM."""
    try:
        await _database()
    except Exception as exc:  # answered with 451 until it is back
        log.warning("the database is not reachable yet (%s); answering 451 meanwhile", type(exc).__name__)
    loop = asyncio.get_running_loop()
    handler = Handler()
    server = await loop.create_server(
        lambda: LMTP(
            handler, hostname=None, ident="events-app inbound", decode_data=False, data_size_limit=MAX_BYTES, loop=loop
        ),
        host=host,
        port=port,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"events-app inbound: LMTP on {host}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        if _started:
            await db.stop()
