"""Throttling: how fast one worker hands messages to the SMTP server, and how many rows it claims.

`Throttle` spaces messages so that at most `smtp_rate` per second leave over all of a worker's
connections (0: as fast as the server takes them). `batch_size()` is how many rows one claim
takes: big enough that the pause between batches (claim, marks) is small next to sending them,
small enough that a throttled batch is sent well within the claim time-out, after which another
worker would send its rows again.
"""

from __future__ import annotations

import asyncio

from ..settings import Settings

# Rows per claim when nothing slows sending down.
BATCH_SIZE = 100


class Throttle:
    """At most `rate` messages per second over all of a worker's connections (0: no limit)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = 0.0

    async def wait(self) -> None:
        """Return when the next message may leave (at once without a limit)."""
        if not self.interval:
            return
        moment = asyncio.get_running_loop().time()
        slot = max(moment, self.next)
        self.next = slot + self.interval
        if slot > moment:
            await asyncio.sleep(slot - moment)


def batch_size(settings: Settings) -> int:
    """Rows per claim: BATCH_SIZE, or fewer when `smtp_rate` could not send them within half the
    claim time-out."""
    if settings.smtp_rate > 0:
        fits = int(settings.smtp_rate * settings.outbox_claim_timeout_seconds / 2)
        return max(1, min(BATCH_SIZE, fits))
    return BATCH_SIZE
